"""What a model does, as a strategy the served model holds: how an image becomes its input and how its outputs
become answers. The manifest names the task; a new task is a module here registered in ``TASKS``, plus its
serving module registered in ``amaas.api.tasks`` and its export side (training, data, metrics) registered in
``amaas_export.tasks``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from amaas.artifact.imaging import Decoded, Limits
from amaas.artifact.manifest import Manifest
from amaas.artifact.tasks.classification import CLASSIFICATION
from amaas.artifact.tasks.detection import DETECTION
from amaas.artifact.tasks.segmentation import SEGMENTATION
from amaas.errors import ManifestError

Size = tuple[int, int]


class Task(Protocol):
    """One task: what ``Model`` asks of it.

    ``check`` validates the manifest's outputs and ``task_config`` (raising ``ManifestError``) whenever a
    manifest is built. ``pixels`` decodes one image at the model's geometry and keeps its upright original
    size. ``decode`` gets each image's original (width, height) in ``sizes`` (dense answers are mapped back
    to it) and the options its API offers (classification: ``k``) as keywords; ``to_json`` is one image's
    answer as the JSON object /v1 and batch results carry (classification ``{"predictions": [...]}``).
    ``metric`` names the held-out metric (a fraction, recorded by the export under ``metrics.<stage>``)
    that the export's gates compare.
    """

    name: str
    metric: str

    def check(self, manifest: Manifest) -> None: ...

    def pixels(self, data: bytes, manifest: Manifest, limits: Limits) -> Decoded: ...

    def decode(
        self, outputs: Sequence[np.ndarray], manifest: Manifest, sizes: Sequence[Size], **options: Any
    ) -> list[Any]: ...

    def to_json(self, answer: Any, manifest: Manifest) -> dict[str, Any]: ...


TASKS: dict[str, Task] = {
    CLASSIFICATION.name: CLASSIFICATION,
    SEGMENTATION.name: SEGMENTATION,
    DETECTION.name: DETECTION,
}


def task_for(name: str) -> Task:
    """The strategy for the manifest's ``task``.

    Raises:
        ManifestError: A task this runtime does not serve.
    """
    if name not in TASKS:
        raise ManifestError(f"manifest task {name!r} is not one this runtime serves ({', '.join(sorted(TASKS))})")
    return TASKS[name]
