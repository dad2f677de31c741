"""What every stage shares: an ONNX model file with its held-out scores, and the prepared data."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amaas.artifact.manifest import Manifest, Preprocessing, TensorSpec
from amaas.artifact.model import Model
from amaas_export.data import Dataset
from amaas_export.tasks import ExportTask, stage_manifest

if TYPE_CHECKING:
    from torch import nn

Log = Callable[[str], None]


@dataclass(frozen=True)
class Prepared:
    """The dataset at the model's input geometry, the preprocessing every stage and the server use, and the
    task that exports it.

    Attributes:
        output_names, task_config: The graph's outputs and the task's manifest section, known once the float
            model exists (``source.float_model``); every later stage shares them.
    """

    dataset: Dataset
    prep: Preprocessing
    task: ExportTask
    output_names: tuple[str, ...] = ()
    task_config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        """The held-out metric the gates compare (classification ``top1``, segmentation ``miou``)."""
        return _metric(self.task.name)

    def stage_manifest(self, spec: TensorSpec) -> Manifest:
        """An in-memory manifest for a stage's file, so it is evaluated through the serving ``Model``."""
        names = self.output_names or self.task.output_names
        return stage_manifest(self.task, self.prep, self.dataset.labels, spec, names, self.task_config)

    def evaluate(self, path: Path, spec: TensorSpec) -> dict[str, float]:
        """Held-out metrics of a model file, fed through the same ``Model`` the server runs."""
        import os

        model = Model.for_file(path, self.stage_manifest(spec), threads=os.cpu_count() or 1)
        return self.task.evaluate(model, self.dataset.test)

    def stage(self, name: str, path: Path, spec: TensorSpec, model: nn.Module | None = None) -> Stage:
        """A model file as a stage, scored on the held-out images."""
        metrics = self.evaluate(path, spec)
        return Stage(name, path, metrics[self.metric], spec, model, metrics)


def _metric(task: str) -> str:
    from amaas.artifact.tasks import task_for

    return task_for(task).metric


@dataclass(frozen=True)
class Stage:
    """A model file at one step of the pipeline, with its held-out scores (and the torch model behind it,
    while there is one to prune).

    Attributes:
        score: The task's gated metric (``metrics[metric]``), a fraction.
        metrics: Every held-out metric of the task.
    """

    name: str
    path: Path
    score: float
    spec: TensorSpec
    model: nn.Module | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)


def graph_output_names(path: Path) -> tuple[str, ...]:
    """The output names of an ONNX file, in order, read from its graph alone."""
    import onnx

    return tuple(str(output.name) for output in onnx.load(str(path), load_external_data=False).graph.output)
