"""What a model does, as a strategy the served model holds: how an image becomes its input, how its outputs
become answers, how answers are scored. The manifest names the task; a new task is a module here registered in
``TASKS``, plus its serving module registered in ``amaas.api.tasks``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from amaas.artifact.imaging import Limits
from amaas.artifact.manifest import Manifest
from amaas.artifact.tasks.classification import CLASSIFICATION
from amaas.errors import ManifestError


class Task(Protocol):
    """One task: what ``Model`` asks of it. ``decode`` takes the options its API offers (classification:
    ``k``) as keywords."""

    name: str

    def pixels(self, data: bytes, manifest: Manifest, limits: Limits) -> np.ndarray: ...

    def decode(self, outputs: Sequence[np.ndarray], manifest: Manifest, **options: Any) -> list[Any]: ...

    def score(self, outputs: Sequence[np.ndarray], truth: np.ndarray) -> dict[str, float]: ...


TASKS: dict[str, Task] = {CLASSIFICATION.name: CLASSIFICATION}


def task_for(name: str) -> Task:
    """The strategy for the manifest's ``task``.

    Raises:
        ManifestError: A task this runtime does not serve.
    """
    if name not in TASKS:
        raise ManifestError(f"manifest task {name!r} is not one this runtime serves ({', '.join(sorted(TASKS))})")
    return TASKS[name]
