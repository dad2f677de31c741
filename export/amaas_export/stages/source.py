"""Stage 2: the float model: trained, loaded from weights or imported from ONNX, exported to one ONNX file and
checked against torch (parity), with its held-out accuracy."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amaas.artifact.manifest import TensorSpec
from amaas.artifact.preprocessing import model_input
from amaas_export.config import ExportConfig
from amaas_export.errors import ConfigError, first_line
from amaas_export.sources import SourcePlan
from amaas_export.stages.common import Log, Prepared, Stage
from amaas_export.tasks import metric_title

if TYPE_CHECKING:
    from torch import nn

PARITY_IMAGES = 64


@dataclass(frozen=True)
class FloatModel:
    """Attributes:
    stage: The FP32 ONNX file (``fp32``).
    parity: The task's torch vs ONNX Runtime figure (classification: largest |logit difference|; ``None``
        for an imported ONNX file).
    train_seconds: Time spent training (0 when nothing was trained).
    prepared: The prepared data with the graph's output names and the task's manifest section, for every
        later stage.
    """

    stage: Stage
    parity: float | None
    train_seconds: float
    prepared: Prepared


def float_model(config: ExportConfig, plan: SourcePlan, prepared: Prepared, work: Path, log: Log) -> FloatModel:
    declared = _declared_task_config(config)
    if plan.onnx is not None:
        prepared = replace(
            prepared,
            output_names=plan.onnx.outputs,
            task_config=prepared.task.task_config(None, prepared.prep.crop, declared),
        )
        stage = prepared.stage("fp32", plan.onnx.path, plan.onnx.input)
        log(f"fp32: {plan.onnx.path.name} from --from-onnx, held-out {_scores(stage)}")
        return FloatModel(stage, parity=None, train_seconds=0.0, prepared=prepared)
    model, seconds = _trained(config, plan, prepared, log)
    prepared = replace(
        prepared,
        # a task whose architectures end in different outputs (detection: SSD heads, or a whole detector's
        # boxes) names them on the built model
        output_names=getattr(model, "output_names", prepared.task.output_names),
        task_config=prepared.task.task_config(model, prepared.prep.crop, declared),
    )
    stage, parity = export_stage(config, prepared, "fp32", model, work, log)
    return FloatModel(stage, parity, seconds, prepared)


def _declared_task_config(config: ExportConfig) -> Mapping[str, Any]:
    if config.task_config is None:
        return {}
    try:
        declared = json.loads(config.task_config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--task-config {config.task_config} is not a readable JSON file: {exc}") from exc
    if not isinstance(declared, dict):
        raise ConfigError(f"--task-config {config.task_config} must hold a JSON object")
    return declared


def _scores(stage: Stage) -> str:
    return "  ".join(f"{metric_title(name)} {value:.4f}" for name, value in stage.metrics.items())


def float_spec(prepared: Prepared) -> TensorSpec:
    from amaas_export.onnx_export import INPUT_NAME

    return TensorSpec(INPUT_NAME, (-1, 3, prepared.prep.crop, prepared.prep.crop), "float32", "NCHW")


def _trained(config: ExportConfig, plan: SourcePlan, prepared: Prepared, log: Log) -> tuple[nn.Module, float]:
    import torch

    from amaas_export import models

    dataset = prepared.dataset
    torch.manual_seed(config.seed)
    labels = dataset.labels
    pretrained = plan.pretrained if isinstance(plan.pretrained, models.Pretrained) else None
    model = prepared.task.build_model(config.arch, len(labels), pretrained)
    new_head = pretrained is not None and labels != pretrained.categories
    if pretrained is not None:
        log(f"weights: {pretrained.name}" + (f", new {len(labels)}-class head" if new_head else ""))
    elif config.weights is not None:
        models.load_weights(model, Path(config.weights))
        log(f"weights: loaded {config.weights}")
    if new_head and not config.train_epochs:
        raise ConfigError(f"the new {len(labels)}-class head is untrained: pass --epochs to fine-tune it")
    if config.freeze_backbone:
        trainable = models.freeze_backbone(model)
        log(f"freeze: backbone frozen, {trainable} trainable parameters in the head")
    _check_outputs(config, model, prepared)

    started = time.perf_counter()
    if config.train_epochs:
        log(f"train: {config.arch}, {config.train_epochs} epochs, batch {config.batch_size}")
        prepared.task.train(model, dataset, prepared.prep, config.training, log)
    return model, time.perf_counter() - started


def _check_outputs(config: ExportConfig, model: nn.Module, prepared: Prepared) -> None:
    import torch

    crop = prepared.prep.crop
    example = torch.from_numpy(model_input(prepared.dataset.test.pixels[:2], prepared.prep, float_spec(prepared)))
    model.eval()
    try:
        with torch.inference_mode():
            output = model(example)
    except Exception as exc:
        raise ConfigError(
            f"{config.arch} fails on a batch of 2 {crop}x{crop} images ({exc.__class__.__name__}: "
            f"{first_line(exc)}); "
            "is it built for another input size? Set --image-size to the size it expects."
        ) from exc
    if not isinstance(output, torch.Tensor | tuple) or not all(isinstance(o, torch.Tensor) for o in _tuple(output)):
        raise ConfigError(f"the model returns a {type(output).__name__}; export needs a tensor or a tuple of tensors")
    prepared.task.check_outputs([o.numpy() for o in _tuple(output)], 2, prepared.dataset.labels)


def _tuple(output: Any) -> tuple[Any, ...]:
    return output if isinstance(output, tuple) else (output,)


def export_stage(
    config: ExportConfig, prepared: Prepared, name: str, model: nn.Module, work: Path, log: Log
) -> tuple[Stage, float]:
    """``model`` as one ONNX file with a dynamic batch axis, its parity with torch (on the task's outputs),
    and its held-out scores."""
    import torch

    spec = float_spec(prepared)
    path = work / f"{name}.onnx"
    pixels = prepared.dataset.test.pixels
    example = torch.from_numpy(model_input(pixels[:2], prepared.prep, spec))
    batch = prepared.task.export_graph(model, example, path, prepared.output_names)
    if batch != -1:
        spec = replace(spec, shape=(batch, *spec.shape[1:]))
        log(f"{name}: the graph takes a batch of exactly {batch}; a larger batch is run {batch} image(s) at a time")
    probe = model_input(pixels[:PARITY_IMAGES], prepared.prep, spec)
    parity = prepared.task.parity(path, model, probe, config.parity_tolerance)
    stage = prepared.stage(name, path, spec, model)
    log(f"{name}: held-out {_scores(stage)}, {path.stat().st_size} bytes, parity {parity:.1e}")
    return stage, parity
