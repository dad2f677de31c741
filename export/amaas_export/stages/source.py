"""Stage 2: the float model: trained, loaded from weights or imported from ONNX, exported to one ONNX file and
checked against torch (parity), with its held-out accuracy."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from amaas.artifact.manifest import PIXEL_SCALE, Preprocessing, TensorSpec
from amaas.artifact.preprocessing import model_input
from amaas_export.config import ExportConfig
from amaas_export.errors import ConfigError, first_line
from amaas_export.sources import SourcePlan
from amaas_export.stages.common import Log, Prepared, Stage

if TYPE_CHECKING:
    from torch import nn

PARITY_IMAGES = 64


@dataclass(frozen=True)
class FloatModel:
    """Attributes:
    stage: The FP32 ONNX file (``fp32``).
    parity: Largest |logit difference| between torch (or TensorFlow, for a converted model) and ONNX Runtime;
        ``None`` for an imported ONNX file.
    train_seconds: Time spent training (0 when nothing was trained).
    """

    stage: Stage
    parity: float | None
    train_seconds: float


def float_model(config: ExportConfig, plan: SourcePlan, prepared: Prepared, work: Path, log: Log) -> FloatModel:
    if plan.onnx is not None:
        assert config.imported is not None
        flag, path = config.imported
        for note in plan.onnx.notes:
            log(f"{flag}: {note}")
        log(f"{flag}: fed {_describe_feed(prepared.prep, plan.onnx.input)}")
        top1 = prepared.evaluate(plan.onnx.path, plan.onnx.input)
        log(f"fp32: {path.name} from {flag}, held-out top-1 {top1:.4f}")
        stage = Stage("fp32", plan.onnx.path, top1, plan.onnx.input)
        return FloatModel(stage, parity=plan.onnx.parity, train_seconds=0.0)
    model, seconds = _trained(config, plan, prepared, log)
    stage, parity = export_stage(config, prepared, "fp32", model, work, log)
    return FloatModel(stage, parity, seconds)


def _describe_feed(prep: Preprocessing, spec: TensorSpec) -> str:
    order = prep.channel_order
    if spec.dtype == "uint8":
        return f"uint8 {order} pixels 0..255 as they are, {spec.layout}"
    scale = "1/255" if prep.scale == PIXEL_SCALE else f"{prep.scale:g}"
    mean, std = (" ".join(f"{v:g}" for v in values) for values in (prep.mean, prep.std))
    return f"float32 {order} pixels x {scale}, minus mean {mean}, divided by std {std}, {spec.layout}"


def float_spec(prepared: Prepared) -> TensorSpec:
    from amaas_export.onnx_export import INPUT_NAME

    return TensorSpec(INPUT_NAME, (-1, 3, prepared.prep.crop, prepared.prep.crop), "float32", "NCHW")


def _trained(config: ExportConfig, plan: SourcePlan, prepared: Prepared, log: Log) -> tuple[nn.Module, float]:
    import torch

    from amaas_export import models
    from amaas_export.train import train

    dataset = prepared.dataset
    torch.manual_seed(config.seed)
    labels = dataset.labels
    pretrained = plan.pretrained if isinstance(plan.pretrained, models.Pretrained) else None
    model = models.build_model(config.arch, len(labels), pretrained=pretrained)
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
        train(
            model,
            dataset.train,
            dataset.test,
            prepared.prep,
            epochs=config.train_epochs,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            seed=config.seed,
            report=lambda epoch: log(f"  {epoch}"),
        )
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
    labels = prepared.dataset.labels
    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
    if shape != (2, len(labels)):
        raise ConfigError(f"the model returns {shape} for 2 images; expected (2, {len(labels)}) logits")


def export_stage(
    config: ExportConfig, prepared: Prepared, name: str, model: nn.Module, work: Path, log: Log
) -> tuple[Stage, float]:
    """``model`` as one ONNX file with a dynamic batch axis, its parity with torch, and its held-out accuracy."""
    import torch

    from amaas_export.onnx_export import check_parity, export_fp32

    spec = float_spec(prepared)
    path = work / f"{name}.onnx"
    pixels = prepared.dataset.test.pixels
    export_fp32(model, torch.from_numpy(model_input(pixels[:2], prepared.prep, spec)), path)
    probe = model_input(pixels[:PARITY_IMAGES], prepared.prep, spec)
    parity = check_parity(path, model, probe, config.parity_tolerance)
    top1 = prepared.evaluate(path, spec)
    log(f"{name}: held-out top-1 {top1:.4f}, {path.stat().st_size} bytes, parity max|diff| {parity:.1e}")
    return Stage(name, path, top1, spec, model), parity
