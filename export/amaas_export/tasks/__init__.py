"""Each task as the export makes it: which architectures it builds, which data it reads, how it trains, what its
ONNX graph outputs, how ONNX is checked against torch and how a stage is scored. The stages hold one
``ExportTask`` (``Prepared.task``) and ask it; a new task is a module here registered in ``EXPORT_TASKS``,
beside its serving side (``amaas.artifact.tasks``, ``amaas.api.tasks``).

torch and torchvision are imported by the task modules' functions, never at import time of this package:
the config and the CLI import it to validate ``--task``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from amaas.artifact.golden import GoldenSample
from amaas.artifact.manifest import Manifest, Preprocessing, TensorSpec
from amaas.artifact.model import Model
from amaas_export.config import Training
from amaas_export.data import Dataset, ImageSet
from amaas_export.errors import ConfigError
from amaas_export.tasks import classification, detection, segmentation

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from amaas_export.models import Pretrained


class ExportTask(Protocol):
    """What the export asks of a task.

    Attributes:
        name: The artifact task (``amaas.artifact.tasks``) the manifest names.
        resize_mode: How images meet the model (``Preprocessing.resize_mode``): ``crop`` or ``stretch``.
        output_names: The ONNX graph's output names, in order; the first is the manifest's ``output``.
        parity_metric: The ``metrics`` key of the torch vs ONNX figure ``parity`` returns.
    """

    name: str
    resize_mode: str
    output_names: tuple[str, ...]
    parity_metric: str

    def check_architecture(self, arch: str) -> None:
        """Fails fast, before any data is read, on an architecture this task cannot build (``ConfigError``)."""

    def pretrained_info(self, arch: str, weights: str) -> Pretrained:
        """torchvision weights metadata (labels, preprocessing defaults) for a weights enum name, offline."""

    def build_model(self, arch: str, num_classes: int, pretrained: Pretrained | None) -> nn.Module:
        """The torch model, export-ready: ``forward(images)`` returns the graph's outputs (one tensor or a
        tuple in ``output_names`` order), nothing else (no dicts, no losses)."""

    def load_data(self, spec: str, geometry: Preprocessing, *, seed: int) -> Dataset:
        """The ``--data`` source at the model's geometry; ``ImageSet.labels`` holds the task's targets."""

    def export_graph(self, model: nn.Module, example: torch.Tensor, path: Path, output_names: tuple[str, ...]) -> int:
        """Writes ``model`` as one FP32 ONNX file; returns its input's batch dimension: -1 (dynamic, the
        dynamo exporter's ``onnx_export.export_fp32``) or the fixed size a graph could only be exported for."""

    def check_outputs(self, outputs: Sequence[np.ndarray], images: int, labels: tuple[str, ...]) -> None:
        """Refuses (``ConfigError``) a model whose outputs (torch's or ONNX Runtime's, as numpy arrays, in
        ``output_names`` order) for a batch of ``images`` images are not the task's."""

    def train(
        self,
        model: nn.Module,
        dataset: Dataset,
        prep: Preprocessing,
        training: Training,
        report: Callable[[str], None],
    ) -> None:
        """Trains ``model`` in place on ``dataset.train``."""

    def parity(self, path: Path, model: nn.Module, batch: np.ndarray, tolerance: float) -> float:
        """Compares the ONNX file with torch on ``batch`` on the task's own outputs; returns the figure the
        manifest records as ``parity``; raises ``GateError`` past ``tolerance``."""

    def output_specs(
        self, labels: tuple[str, ...], side: int, names: tuple[str, ...], task_config: Mapping[str, Any]
    ) -> tuple[TensorSpec, ...]:
        """The manifest's ``output`` and ``extra_outputs`` for graph outputs ``names``."""

    def finish_graph(self, path: Path, out: Path, task_config: Mapping[str, Any]) -> dict[str, Any] | None:
        """Writes to ``out`` the served graph with the task's post-processing that belongs in it appended, and
        returns the ``task_config`` that describes it; ``None`` (nothing written) when the graph ships as is."""

    def task_config(self, model: nn.Module | None, side: int, declared: Mapping[str, Any]) -> dict[str, Any]:
        """The manifest's ``task_config`` (empty for classification), from the torch model (``None`` for
        ``--from-onnx``) and what the user declared (``--task-config``), checked by the artifact task."""

    def evaluate(self, model: Model, test: ImageSet) -> dict[str, float]:
        """Held-out metrics of a stage through the serving ``Model``; includes ``model.task.metric``."""

    def golden(self, out_dir: Path, model: Model, held_out: ImageSet) -> list[GoldenSample]:
        """Writes the golden samples (``amaas.artifact.golden``) into the artifact ``out_dir``: a few held-out
        images with the served ``model``'s answers, which the pre-traffic check (``amaas.rollout``) compares."""

    def preview(self, model: Model, test: ImageSet, path: Path) -> bool:
        """Draws the served model's answers on a few held-out images into ``path``; False when the task has
        no picture to show."""


EXPORT_TASKS: Mapping[str, ExportTask] = {
    classification.TASK.name: classification.TASK,
    segmentation.TASK.name: segmentation.TASK,
    detection.TASK.name: detection.TASK,
}


# How people write each gated metric, in logs, gate messages and the model card.
METRIC_TITLES = {"top1": "top-1", "miou": "mIoU", "map50": "mAP@0.5", "map50_95": "mAP@[.5:.95]"}


def metric_title(metric: str) -> str:
    return METRIC_TITLES.get(metric, metric)


def export_task(name: str) -> ExportTask:
    if name not in EXPORT_TASKS:
        raise ConfigError(f"--task {name} cannot be exported yet ({', '.join(sorted(EXPORT_TASKS))} can)")
    return EXPORT_TASKS[name]


def stage_manifest(
    task: ExportTask,
    prep: Preprocessing,
    labels: tuple[str, ...],
    spec: TensorSpec,
    output_names: tuple[str, ...],
    task_config: Mapping[str, Any],
) -> Manifest:
    """An in-memory manifest for a stage's file, so it is evaluated through the serving ``Model``."""
    outputs = task.output_specs(labels, prep.crop, output_names, task_config)
    return Manifest(
        name="stage",
        version="stage",
        architecture="stage",
        labels=labels,
        input=spec,
        output=outputs[0],
        extra_outputs=outputs[1:],
        preprocessing=prep,
        task=task.name,
        task_config=task_config,
    )
