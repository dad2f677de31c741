"""``amaas export``: source → (train) → FP32 ONNX → (prune + fine-tune) → INT8 → served model → artifact.

Every stage is a real ONNX file, evaluated on the same held-out images through the same preprocessing and
session setup serving uses, and every transition is gated (parity, pruning drop, INT8 drop, size). All of
it happens in a staging directory next to ``config.out``, moved into place only when every gate has passed:
a failed export leaves no artifact that looks deployable, and keeps a previous good one.
"""

from __future__ import annotations

import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amaas.manifest import (
    CARD_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    PROVENANCE,
    Manifest,
    Preprocessing,
    TensorSpec,
    file_entry,
    sha256_file,
    write_manifest,
)
from amaas.model import create_session
from amaas.preprocessing import model_input
from amaas_export import data as datasets
from amaas_export.card import render_card
from amaas_export.chart import stage_chart
from amaas_export.config import ExportConfig, QuantizationConfig, write_config_file
from amaas_export.errors import ConfigError, GateError, first_line
from amaas_export.evaluate import onnx_predict, top1
from amaas_export.gates import check_accuracy_drop, check_prune_drop, check_size
from amaas_export.golden import golden_samples
from amaas_export.measure import StageReport, graph_stats, latencies_ms, round_robin_ms, session_create_ms
from amaas_export.optimize import fold_normalization, optimize_offline
from amaas_export.quantize import candidates, quantize_int8
from amaas_export.sources import SourcePlan, plan_source

if TYPE_CHECKING:
    from torch import nn

CHART_FILE = "stages.png"
CONFIG_FILE = "export.toml"
PARITY_IMAGES = 64
FOLD_MIN_GAIN = 0.03
_LIBRARIES = ("torch", "torchvision", "torch-pruning", "onnx", "onnxruntime", "numpy", "pillow")

Log = Callable[[str], None]


@dataclass(frozen=True)
class ExportResult:
    out: Path
    manifest: Manifest


@dataclass
class Stage:
    """A model file at one step of the pipeline, with its held-out accuracy."""

    name: str
    path: Path
    top1: float
    spec: TensorSpec
    model: nn.Module | None = None


@dataclass
class Context:
    config: ExportConfig
    work: Path
    dataset: datasets.Dataset
    prep: Preprocessing
    log: Log
    record: dict[str, Any] = field(default_factory=dict)

    def evaluate(self, path: Path, spec: TensorSpec) -> float:
        return top1(onnx_predict(path, self.dataset.test, self.prep, spec), self.dataset.test.labels)


def run_export(config: ExportConfig, log: Log = print) -> ExportResult:
    """Runs every step of the export and returns the manifest of the artifact written to ``config.out``.

    Raises:
        ExportError: Bad options or data, or a failed gate; nothing is written to ``config.out``.
    """
    _check_replaceable(config.out)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".amaas-export-", dir=config.out.parent) as work_dir:
        work = Path(work_dir)
        if config.from_onnx is None:
            from amaas_export.models import check_architecture

            check_architecture(config.arch)
        plan = plan_source(config, work)
        if plan.pretrained is not None:
            from amaas_export.models import Pretrained, fetch_pretrained

            assert isinstance(plan.pretrained, Pretrained)
            fetch_pretrained(config.arch, plan.pretrained)  # a download that cannot happen fails before the data
        ctx = _load_data(config, plan, work, log)

        stages = [_onnx_stage(ctx, plan) if plan.onnx else _torch_stage(ctx, plan)]
        if config.prune:
            stages.append(_pruned_stage(ctx, stages[0]))
        parent = stages[-1]
        int8 = _quantized_stage(ctx, parent)
        if int8 is not None:
            stages.append(int8)
        served = int8 or parent

        final_path, final_spec = _serving_file(ctx, served)
        final_top1 = ctx.evaluate(final_path, final_spec)
        if abs(final_top1 - served.top1) > 0.002:
            raise GateError(
                f"the optimized file scores {final_top1:.2%} but its {served.name} stage scored {served.top1:.2%}; "
                "a graph rewrite changed the model. Export with --optimize none --fold-normalization off."
            )
        check_size(final_path.stat().st_size, config.max_size_mb)
        reports = _stage_reports(ctx, stages)
        log("stages:\n" + "\n".join(f"  {_row(r)}" for r in reports))
        if int8 is not None and reports[-1].latency_ms > reports[-2].latency_ms:
            slower, faster = reports[-1], reports[-2]
            log(
                f"note: on this CPU INT8 runs slower than {parent.name} ({slower.latency_ms:.3f} vs "
                f"{faster.latency_ms:.3f} ms); it ships for its size ({slower.bytes / faster.bytes:.2f}x). "
                "Use --quantize none to serve the float model."
            )

        staging = work / "artifact"
        staging.mkdir()
        shutil.copyfile(final_path, staging / MODEL_FILE)
        manifest = _manifest(ctx, plan, reports, served, final_spec, final_top1, staging / MODEL_FILE)
        _write_artifact(ctx, staging, manifest, reports)
        manifest = _finish(staging, manifest)
        _replace(config.out, staging, work)
    log(f"artifact: {config.out}/ serving {served.name} ({time.perf_counter() - started:.0f}s)")
    return ExportResult(out=config.out, manifest=manifest)


def _load_data(config: ExportConfig, plan: SourcePlan, work: Path, log: Log) -> Context:
    started = time.perf_counter()
    geometry = Preprocessing(
        resize=plan.resize,
        crop=plan.crop,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        interpolation=plan.interpolation,
        channel_order=config.channel_order,
    )
    dataset = datasets.load(config.data, geometry, seed=config.seed)
    if plan.labels is not None and (plan.onnx is not None or set(dataset.labels) <= set(plan.labels)):
        dataset = datasets.with_labels(dataset, plan.labels)
    if config.num_classes is not None and config.num_classes != len(dataset.labels):
        raise ConfigError(f"--num-classes {config.num_classes} but the data has {len(dataset.labels)} classes")
    if plan.mean is not None and plan.std is not None:
        mean, std = plan.mean, plan.std
    else:
        mean, std = datasets.mean_std(dataset.train)
    prep = replace(geometry, mean=mean, std=std)
    log(
        f"data: {dataset.source}: {len(dataset.train)} training / {len(dataset.test)} held-out images, "
        f"{len(dataset.labels)} classes, {plan.crop}x{plan.crop} ({time.perf_counter() - started:.1f}s)"
    )
    return Context(config=config, work=work, dataset=dataset, prep=prep, log=log)


def _float_spec(ctx: Context) -> TensorSpec:
    from amaas_export.onnx_export import INPUT_NAME

    return TensorSpec(INPUT_NAME, (-1, 3, ctx.prep.crop, ctx.prep.crop), "float32", "NCHW")


def _onnx_stage(ctx: Context, plan: SourcePlan) -> Stage:
    assert plan.onnx is not None
    top1 = ctx.evaluate(plan.onnx.path, plan.onnx.input)
    ctx.record["parity"] = None
    ctx.log(f"fp32: {plan.onnx.path.name} from --from-onnx, held-out top-1 {top1:.4f}")
    return Stage("fp32", plan.onnx.path, top1, plan.onnx.input)


def _torch_stage(ctx: Context, plan: SourcePlan) -> Stage:
    import torch

    from amaas_export import models
    from amaas_export.train import train

    config, dataset = ctx.config, ctx.dataset
    torch.manual_seed(config.seed)
    labels = dataset.labels
    pretrained = plan.pretrained if isinstance(plan.pretrained, models.Pretrained) else None
    model = models.build_model(config.arch, len(labels), pretrained=pretrained)
    new_head = pretrained is not None and labels != pretrained.categories
    if pretrained is not None:
        ctx.log(f"weights: {pretrained.name}" + (f", new {len(labels)}-class head" if new_head else ""))
    elif config.weights is not None:
        models.load_weights(model, Path(config.weights))
        ctx.log(f"weights: loaded {config.weights}")
    if new_head and not config.train_epochs:
        raise ConfigError(f"the new {len(labels)}-class head is untrained: pass --epochs to fine-tune it")
    if config.freeze_backbone:
        trainable = models.freeze_backbone(model)
        ctx.log(f"freeze: backbone frozen, {trainable} trainable parameters in the head")
    _check_outputs(model, ctx)

    started = time.perf_counter()
    if config.train_epochs:
        ctx.log(f"train: {config.arch}, {config.train_epochs} epochs, batch {config.batch_size}")
        train(
            model,
            dataset.train,
            dataset.test,
            ctx.prep,
            epochs=config.train_epochs,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            seed=config.seed,
            report=lambda epoch: ctx.log(f"  {epoch}"),
        )
    ctx.record["train_seconds"] = time.perf_counter() - started
    stage = _export_stage(ctx, "fp32", model)
    ctx.record["parity"] = ctx.record.pop("last_parity")
    return stage


def _check_outputs(model: nn.Module, ctx: Context) -> None:
    import torch

    crop = ctx.prep.crop
    example = torch.from_numpy(model_input(ctx.dataset.test.pixels[:2], ctx.prep, _float_spec(ctx)))
    model.eval()
    try:
        with torch.inference_mode():
            output = model(example)
    except Exception as exc:
        raise ConfigError(
            f"{ctx.config.arch} fails on a batch of 2 {crop}x{crop} images ({exc.__class__.__name__}: "
            f"{first_line(exc)}); "
            "is it built for another input size? Set --image-size to the size it expects."
        ) from exc
    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
    if shape != (2, len(ctx.dataset.labels)):
        raise ConfigError(f"the model returns {shape} for 2 images; expected (2, {len(ctx.dataset.labels)}) logits")


def _export_stage(ctx: Context, name: str, model: nn.Module) -> Stage:
    import torch

    from amaas_export.onnx_export import check_parity, export_fp32

    spec = _float_spec(ctx)
    path = ctx.work / f"{name}.onnx"
    example = torch.from_numpy(model_input(ctx.dataset.test.pixels[:2], ctx.prep, spec))
    export_fp32(model, example, path)
    batch = model_input(ctx.dataset.test.pixels[:PARITY_IMAGES], ctx.prep, spec)
    parity = check_parity(path, model, batch, ctx.config.parity_tolerance)
    ctx.record["last_parity"] = parity
    top1 = ctx.evaluate(path, spec)
    ctx.log(f"{name}: held-out top-1 {top1:.4f}, {path.stat().st_size} bytes, parity max|diff| {parity:.1e}")
    return Stage(name, path, top1, spec, model)


def _pruned_stage(ctx: Context, parent: Stage) -> Stage:
    import copy

    import torch

    from amaas_export.prune import prune_channels
    from amaas_export.train import train

    assert parent.model is not None, "pruning needs the torch model"
    config = ctx.config
    model = copy.deepcopy(parent.model)
    example = torch.from_numpy(model_input(ctx.dataset.test.pixels[:2], ctx.prep, parent.spec))
    prune_channels(model, example, config.prune)
    if config.freeze_backbone:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        ctx.log(f"freeze: backbone still frozen after pruning, {trainable} trainable parameters in the head")
    if config.finetune_epochs:
        ctx.log(f"prune: {config.prune:.0%} of channels removed; fine-tuning {config.finetune_epochs} epochs")
        train(
            model,
            ctx.dataset.train,
            ctx.dataset.test,
            ctx.prep,
            epochs=config.finetune_epochs,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate / 2,
            seed=config.seed + 1,
            report=lambda epoch: ctx.log(f"  {epoch}"),
        )
    stage = _export_stage(ctx, "pruned", model)
    drop = check_prune_drop(parent.top1, stage.top1, config.max_prune_drop)
    ctx.record["prune_drop"] = drop
    ctx.log(f"gate: pruned top-1 drop {drop:+.2f} points <= {config.max_prune_drop:.2f}: pass")
    return stage


def _quantized_stage(ctx: Context, parent: Stage) -> Stage | None:
    """The INT8 stage, or ``None`` when the float model ships (``--quantize none``, or ``auto`` found no
    candidate within the accuracy gate)."""
    settings = ctx.config.quantization
    ctx.record["quantization"] = {"mode": settings.mode}
    if settings.mode == "none":
        ctx.log("int8: skipped (--quantize none); the float model ships")
        return None
    calibration = ctx.dataset.train.take(settings.calibration_samples, seed=ctx.config.seed)
    tried = candidates(settings) if settings.mode == "auto" else [settings]
    results: list[tuple[QuantizationConfig, Stage, float, list[str]]] = []
    for i, candidate in enumerate(tried):
        path = ctx.work / f"int8-{i}.onnx"
        float_nodes = quantize_int8(parent.path, path, calibration, ctx.prep, parent.spec.name, candidate)
        top1 = ctx.evaluate(path, parent.spec)
        drop = (parent.top1 - top1) * 100
        results.append((candidate, Stage("int8", path, top1, parent.spec), drop, float_nodes))
        ctx.log(f"int8 [{i + 1}/{len(tried)}] {candidate.describe()}: held-out top-1 {top1:.4f} ({-drop:+.2f} points)")

    if settings.mode == "int8":
        candidate, stage, _, float_nodes = results[0]
        drop = check_accuracy_drop(parent.top1, stage.top1, ctx.config.max_accuracy_drop, parent.name.upper())
        ctx.log(f"gate: INT8 top-1 drop {drop:+.2f} points <= {ctx.config.max_accuracy_drop:.2f}: pass")
        _record_quantization(ctx, candidate, float_nodes, drop, [])
        return stage

    feed = {parent.spec.name: model_input(ctx.dataset.test.pixels[:1], ctx.prep, parent.spec)}
    timings = latencies_ms([r[1].path for r in results], [feed] * len(results), budget_s=2.0)
    table = [
        {"settings": c.describe(), "top1": round(s.top1, 6), "drop_points": round(d, 4), "latency_ms": round(t, 4)}
        for (c, s, d, _), t in zip(results, timings, strict=True)
    ]
    passing = [(t, -r[1].top1, i) for i, (r, t) in enumerate(zip(results, timings, strict=True))]
    passing = [p for p in passing if results[p[2]][2] <= ctx.config.max_accuracy_drop + 1e-9]
    if not passing:
        message = (
            f"no INT8 candidate stayed within {ctx.config.max_accuracy_drop:.2f} points of {parent.name} "
            f"(best drop {min(r[2] for r in results):.2f})"
        )
        if settings.require_int8:
            raise GateError(f"INT8 accuracy gate failed: {message}; --require-int8 is set, so nothing was written")
        ctx.log(f"WARNING: {message}. SHIPPING THE FLOAT MODEL ({parent.name}), NOT INT8.")
        ctx.record["recipe_quantization"] = replace(settings, mode="none")
        ctx.record["quantization"].update({"candidates": table, "chosen": None})
        return None
    _, _, best = min(passing)
    candidate, stage, drop, float_nodes = results[best]
    ctx.log(f"int8: auto chose {candidate.describe()} ({timings[best]:.3f} ms, {-drop:+.2f} points)")
    ctx.record["recipe_quantization"] = replace(candidate, mode="int8")
    _record_quantization(ctx, candidate, float_nodes, drop, table)
    return stage


def _record_quantization(
    ctx: Context, settings: QuantizationConfig, float_nodes: list[str], drop: float, table: list[dict[str, Any]]
) -> None:
    ctx.record["int8_drop"] = drop
    ctx.record["quantization"].update(
        {
            "format": "QDQ",
            "calibration_method": settings.calibration,
            "per_channel": settings.per_channel,
            "activation_type": settings.activation_type,
            "weight_type": settings.weight_type,
            "calibration_samples": min(settings.calibration_samples, len(ctx.dataset.train)),
            "float_nodes": float_nodes,
            "chosen": settings.describe(),
        }
    )
    if table:
        ctx.record["quantization"]["candidates"] = table


def _serving_file(ctx: Context, served: Stage) -> tuple[Path, TensorSpec]:
    """Folds normalisation in (if asked, or if measured faster) and bakes in portable graph optimizations."""
    config = ctx.config
    path, spec = served.path, served.spec
    fold: dict[str, Any] = {"mode": config.fold_normalization, "applied": False}
    if config.fold_normalization != "off" and spec.dtype == "float32":
        folded = ctx.work / "folded.onnx"
        folded_spec = fold_normalization(path, folded, ctx.prep, spec)
        pixels = ctx.dataset.test.pixels[:1]
        unfolded_session, folded_session = create_session(path, threads=1), create_session(folded, threads=1)
        float_ms, uint8_ms = round_robin_ms(
            [
                lambda: unfolded_session.run(None, {spec.name: model_input(pixels, ctx.prep, spec)}),
                lambda: folded_session.run(None, {folded_spec.name: pixels}),
            ],
            budget_s=2.0,
        )
        fold.update(float_input_ms=round(float_ms, 4), uint8_input_ms=round(uint8_ms, 4))
        if config.fold_normalization == "on" or uint8_ms < float_ms * (1 - FOLD_MIN_GAIN):
            path, spec = folded, folded_spec
            fold["applied"] = True
        ctx.log(
            f"fold normalization: normalize+run {float_ms:.3f} ms vs uint8 in-graph {uint8_ms:.3f} ms "
            f"→ {'folded' if fold['applied'] else 'kept outside the graph'}"
        )
    optimization: dict[str, Any] = {"fold_normalization": fold, "offline_level": config.optimize}
    if config.optimize != "none":
        optimized = ctx.work / "optimized.onnx"
        optimize_offline(path, optimized, config.optimize)
        before, after = session_create_ms(path), session_create_ms(optimized)
        optimization["session_create_ms"] = {"as_exported": round(before, 2), "optimized": round(after, 2)}
        ctx.log(f"optimize: ORT {config.optimize} rewrites baked in; session create {before:.1f} → {after:.1f} ms")
        path = optimized
    ctx.record["optimization"] = optimization
    return path, spec


def _stage_reports(ctx: Context, stages: list[Stage]) -> list[StageReport]:
    feeds = [{s.spec.name: model_input(ctx.dataset.test.pixels[:1], ctx.prep, s.spec)} for s in stages]
    timings = latencies_ms([s.path for s in stages], feeds)
    reports = []
    for stage, latency in zip(stages, timings, strict=True):
        stats = graph_stats(stage.path)
        reports.append(
            StageReport(stage.name, stage.top1, stage.path.stat().st_size, stats.params, stats.macs, latency)
        )
    return reports


def _row(r: StageReport) -> str:
    return (
        f"{r.name:<7} top-1 {r.top1:.4f}  {r.bytes / 1e6:8.3f} MB  {r.params / 1e6:7.3f} M params  "
        f"{r.macs / 1e6:9.2f} M MACs  {r.latency_ms:8.3f} ms"
    )


def _manifest(
    ctx: Context,
    plan: SourcePlan,
    reports: list[StageReport],
    served: Stage,
    spec: TensorSpec,
    top1: float,
    model_path: Path,
) -> Manifest:
    config, record = ctx.config, ctx.record
    by_name = {r.name: r for r in reports}
    metrics: dict[str, Any] = {name: {"top1": r.top1, "bytes": r.bytes} for name, r in by_name.items()}
    metrics["served"] = {"stage": served.name, "top1": top1, "bytes": model_path.stat().st_size}
    metrics["parity_max_abs_diff"] = record.get("parity")
    if "int8_drop" in record:
        metrics["top1_drop_points"] = round(record["int8_drop"], 4)
    if "prune_drop" in record:
        metrics["prune_drop_points"] = round(record["prune_drop"], 4)
    sha = sha256_file(model_path)
    weights = None
    if config.weights is not None and plan.pretrained is None:
        weights = {"path": config.weights, "sha256": sha256_file(Path(config.weights))}
    return Manifest(
        name=config.model_name,
        version=config.version or sha[:12],
        architecture="onnx" if config.from_onnx else config.arch,
        labels=ctx.dataset.labels,
        input=spec,
        output=TensorSpec(_output_name(model_path), (-1, len(ctx.dataset.labels)), "float32"),
        preprocessing=ctx.prep,
        metrics=metrics,
        details={
            "created_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "stages": [r.as_dict() for r in reports],
            "data": {
                "kind": config.data.partition(":")[0],
                "train_images": len(ctx.dataset.train),
                "held_out_images": len(ctx.dataset.test),
            },
            "training": {
                "epochs": config.train_epochs,
                "from_weights": config.weights is not None,
                "pretrained": getattr(plan.pretrained, "name", None),
                "frozen_backbone": config.freeze_backbone,
                "seconds": round(record.get("train_seconds", 0.0), 1),
            },
            "pruning": {"ratio": config.prune, "finetune_epochs": config.finetune_epochs} if config.prune else None,
            "quantization": record["quantization"],
            "optimization": record["optimization"],
            "gates": {
                "max_accuracy_drop_points": config.max_accuracy_drop,
                "max_prune_drop_points": config.max_prune_drop,
                "parity_tolerance": config.parity_tolerance,
                "max_size_mb": config.max_size_mb,
            },
            "libraries": _library_versions(),
            PROVENANCE: {"export": config.to_dict(), "weights": weights},
        },
    )


def _output_name(path: Path) -> str:
    import onnx

    name: str = onnx.load(str(path), load_external_data=False).graph.output[0].name
    return name


def _write_artifact(ctx: Context, staging: Path, manifest: Manifest, reports: list[StageReport]) -> None:
    golden = golden_samples(
        staging, staging / MODEL_FILE, manifest.input, manifest.preprocessing, manifest.labels, ctx.dataset.test
    )
    ctx.log(f"golden: {len(golden)} held-out images with the served model's answers, for the pre-traffic check")
    stage_chart(reports, staging / CHART_FILE, f"{manifest.name}: accuracy vs latency (marker area: file size)")
    write_config_file(staging / CONFIG_FILE, _recipe(ctx))
    (staging / CARD_FILE).write_text(render_card(manifest, chart=CHART_FILE, config_file=CONFIG_FILE), encoding="utf-8")


def _recipe(ctx: Context) -> ExportConfig:
    """The settings as run, with what ``auto`` decided by measuring written down, so that re-running the recipe
    repeats the decisions instead of re-timing them on another machine (and maybe deciding otherwise)."""
    recipe = ctx.config
    fold = ctx.record["optimization"]["fold_normalization"]
    if recipe.fold_normalization == "auto":
        recipe = replace(recipe, fold_normalization="on" if fold["applied"] else "off")
    if "recipe_quantization" in ctx.record:
        recipe = replace(recipe, quantization=ctx.record["recipe_quantization"])
    return recipe


def _finish(staging: Path, manifest: Manifest) -> Manifest:
    files = {p.relative_to(staging).as_posix(): file_entry(p) for p in sorted(staging.rglob("*")) if p.is_file()}
    manifest = replace(manifest, files=files)
    write_manifest(staging, manifest)
    return manifest


def _check_replaceable(out: Path) -> None:
    """Refuses to replace a directory that is not an earlier artifact: ``--out .`` must not eat a project."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST_FILE).is_file())):
        raise ConfigError(f"--out {out} exists and is not an amaas artifact directory; refusing to replace it")


def _replace(out: Path, staging: Path, work: Path) -> None:
    """Moves ``staging`` to ``out``; a previous artifact is moved aside first and removed with ``work``."""
    if out.exists():
        out.rename(work / "previous")
    staging.rename(out)


def _library_versions() -> dict[str, Any]:
    versions: dict[str, Any] = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
