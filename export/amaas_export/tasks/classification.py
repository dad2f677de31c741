"""Classification as the export makes it: torchvision classifiers, ``cifar-cnn`` or a user's module; labelled
images; logits ``[N, classes]`` compared with torch by their largest difference; scored by top-1."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from amaas.artifact.golden import GoldenSample
from amaas.artifact.manifest import Preprocessing, TensorSpec
from amaas.artifact.model import Model
from amaas.artifact.tasks.classification import top1
from amaas_export import data as datasets
from amaas_export.config import Training
from amaas_export.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from amaas_export.models import Pretrained

EVAL_BATCH = 256


class ClassificationExport:
    name = "classification"
    resize_mode = "crop"
    output_names: tuple[str, ...] = ("logits",)
    parity_metric = "parity_max_abs_diff"

    def check_architecture(self, arch: str) -> None:
        from amaas_export.models import check_architecture

        check_architecture(arch)

    def pretrained_info(self, arch: str, weights: str) -> Pretrained:
        from amaas_export.models import pretrained_info

        return pretrained_info(arch, weights)

    def build_model(self, arch: str, num_classes: int, pretrained: Pretrained | None) -> nn.Module:
        from amaas_export.models import build_model

        return build_model(arch, num_classes, pretrained=pretrained)

    def load_data(self, spec: str, geometry: Preprocessing, *, seed: int) -> datasets.Dataset:
        return datasets.load(spec, geometry, seed=seed)

    def export_graph(self, model: nn.Module, example: torch.Tensor, path: Path, output_names: tuple[str, ...]) -> int:
        from amaas_export.onnx_export import export_fp32

        export_fp32(model, example, path, output_names)
        return -1

    def check_outputs(self, outputs: Sequence[np.ndarray], images: int, labels: tuple[str, ...]) -> None:
        shape = tuple(outputs[0].shape) if len(outputs) == 1 else f"{len(outputs)} outputs"
        if shape != (images, len(labels)):
            raise ConfigError(
                f"the model returns shape {shape} for {images} images; expected ({images}, {len(labels)}) logits"
            )

    def train(
        self,
        model: nn.Module,
        dataset: datasets.Dataset,
        prep: Preprocessing,
        training: Training,
        report: Callable[[str], None],
    ) -> None:
        from amaas_export.train import train

        train(
            model,
            dataset.train,
            dataset.test,
            prep,
            epochs=training.epochs,
            batch_size=training.batch_size,
            learning_rate=training.learning_rate,
            seed=training.seed,
            report=lambda epoch: report(f"  {epoch}"),
        )

    def parity(self, path: Path, model: nn.Module, batch: np.ndarray, tolerance: float) -> float:
        from amaas_export.onnx_export import check_parity

        return check_parity(path, model, batch, tolerance)

    def output_specs(
        self, labels: tuple[str, ...], side: int, names: tuple[str, ...], task_config: Mapping[str, Any]
    ) -> tuple[TensorSpec, ...]:
        return (TensorSpec(names[0], (-1, len(labels)), "float32"),)

    def finish_graph(self, path: Path, out: Path, task_config: Mapping[str, Any]) -> dict[str, Any] | None:
        return None

    def task_config(self, model: nn.Module | None, side: int, declared: Mapping[str, Any]) -> dict[str, Any]:
        if declared:
            raise ConfigError("--task-config does not apply to classification")
        return {}

    def evaluate(self, model: Model, test: datasets.ImageSet) -> dict[str, float]:
        outputs = [model.predict_pixels(test.pixels[i : i + EVAL_BATCH])[0] for i in range(0, len(test), EVAL_BATCH)]
        return {"top1": top1(np.concatenate(outputs), test.labels)}

    def golden(self, out_dir: Path, model: Model, held_out: datasets.ImageSet) -> list[GoldenSample]:
        from amaas_export.golden import golden_samples

        return golden_samples(out_dir, model, held_out)

    def preview(self, model: Model, test: datasets.ImageSet, path: Path) -> bool:
        return False


TASK = ClassificationExport()
