"""What every stage shares: an ONNX model file with its held-out accuracy, and the prepared data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from amaas.artifact.manifest import Manifest, Preprocessing, TensorSpec
from amaas.artifact.model import Model
from amaas.artifact.tasks import task_for
from amaas_export.data import Dataset

if TYPE_CHECKING:
    from torch import nn

Log = Callable[[str], None]
EVAL_BATCH = 256


@dataclass(frozen=True)
class Prepared:
    """The dataset at the model's input geometry, and the preprocessing every stage and the server use."""

    dataset: Dataset
    prep: Preprocessing

    def stage_manifest(self, spec: TensorSpec, task: str = "classification") -> Manifest:
        """An in-memory manifest for a stage's file, so it is evaluated through the serving ``Model``."""
        labels = self.dataset.labels
        return Manifest(
            name="stage",
            version="stage",
            architecture="stage",
            labels=labels,
            input=spec,
            output=TensorSpec("output", (-1, len(labels)), "float32"),
            preprocessing=self.prep,
            task=task,
        )

    def evaluate(self, path: Path, spec: TensorSpec) -> float:
        """Held-out top-1 of a model file, fed through the same ``Model`` the server runs."""
        import os

        import numpy as np

        manifest = self.stage_manifest(spec)
        model = Model.for_file(path, manifest, threads=os.cpu_count() or 1)
        test = self.dataset.test
        outputs = [model.predict_pixels(test.pixels[i : i + EVAL_BATCH])[0] for i in range(0, len(test), EVAL_BATCH)]
        return task_for(manifest.task).score([np.concatenate(outputs)], test.labels)["top1"]


@dataclass(frozen=True)
class Stage:
    """A model file at one step of the pipeline, with its held-out accuracy (and the torch model behind it,
    while there is one to prune)."""

    name: str
    path: Path
    top1: float
    spec: TensorSpec
    model: nn.Module | None = None
