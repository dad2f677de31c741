"""Stage 6: the artifact. Every stage timed and sized side by side, the manifest written from the stages'
results, the golden samples, model card, chart and recipe beside it, and the whole moved into ``--out`` only
now that every gate has passed."""

from __future__ import annotations

import platform
import shutil
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from amaas.artifact.manifest import (
    CARD_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    PROVENANCE,
    Manifest,
    file_entry,
    sha256_file,
    write_manifest,
)
from amaas.artifact.model import Model
from amaas.artifact.preprocessing import model_input
from amaas_export.card import render_card
from amaas_export.chart import stage_chart
from amaas_export.config import ExportConfig, write_config_file
from amaas_export.errors import ConfigError
from amaas_export.measure import StageReport, graph_stats, latencies_ms
from amaas_export.sources import SourcePlan
from amaas_export.stages.common import Log, Prepared, Stage, graph_output_names
from amaas_export.stages.prune import Pruned
from amaas_export.stages.quantize import Quantized
from amaas_export.stages.serving import ServingFile
from amaas_export.stages.source import FloatModel

_IMPORTED_ARCHITECTURE = {"--from-onnx": "onnx", "--from-keras": "keras", "--from-savedmodel": "savedmodel"}
CHART_FILE = "stages.png"
PREVIEW_FILE = "predictions.png"
CONFIG_FILE = "export.toml"
_LIBRARIES = ("torch", "torchvision", "torch-pruning", "onnx", "onnxruntime", "numpy", "pillow")


@dataclass(frozen=True)
class Packaged:
    out: Path
    manifest: Manifest


def reports(prepared: Prepared, stages: list[Stage]) -> list[StageReport]:
    """Each stage's accuracy, size, parameters, MACs and latency, timed round-robin in one run."""
    feeds = [{s.spec.name: model_input(prepared.dataset.test.pixels[:1], prepared.prep, s.spec)} for s in stages]
    timings = latencies_ms([s.path for s in stages], feeds)
    rows = []
    for stage, latency in zip(stages, timings, strict=True):
        stats = graph_stats(stage.path)
        size = stage.path.stat().st_size
        rows.append(StageReport(stage.name, stage.score, size, stats.params, stats.macs, latency, stage.metrics))
    return rows


def check_replaceable(out: Path) -> None:
    """Refuses to replace a directory that is not an earlier artifact: ``--out .`` must not eat a project."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST_FILE).is_file())):
        raise ConfigError(f"--out {out} exists and is not an amaas artifact directory; refusing to replace it")


@dataclass(frozen=True)
class Run:
    """What the stages produced, for the manifest."""

    plan: SourcePlan
    float_model: FloatModel
    pruned: Pruned | None
    quantized: Quantized
    served: Stage
    final: ServingFile
    reports: list[StageReport]


def package(config: ExportConfig, prepared: Prepared, run: Run, work: Path, log: Log) -> Packaged:
    staging = work / "artifact"
    staging.mkdir()
    shutil.copyfile(run.final.path, staging / MODEL_FILE)
    manifest = _manifest(config, prepared, run, staging / MODEL_FILE)
    served = Model.for_file(staging / MODEL_FILE, manifest)
    golden = prepared.task.golden(staging, served, prepared.dataset.test)
    log(f"golden: {len(golden)} held-out images with the served model's answers, for the pre-traffic check")
    title = f"{manifest.name}: accuracy vs latency (marker area: file size)"
    stage_chart(run.reports, staging / CHART_FILE, title, prepared.metric)
    if prepared.task.preview(served, prepared.dataset.test, staging / PREVIEW_FILE):
        log(f"preview: the served model's answers on held-out images in {PREVIEW_FILE}")
    write_config_file(staging / CONFIG_FILE, _recipe(config, run))
    (staging / CARD_FILE).write_text(render_card(manifest, chart=CHART_FILE, config_file=CONFIG_FILE), encoding="utf-8")
    files = {p.relative_to(staging).as_posix(): file_entry(p) for p in sorted(staging.rglob("*")) if p.is_file()}
    manifest = replace(manifest, files=files)
    write_manifest(staging, manifest)
    if config.out.exists():  # a previous artifact is moved aside, and removed with the work directory
        config.out.rename(work / "previous")
    staging.rename(config.out)
    return Packaged(config.out, manifest)


def _recipe(config: ExportConfig, run: Run) -> ExportConfig:
    """The settings as run, with what ``auto`` decided by measuring written down, so that re-running the recipe
    repeats the decisions instead of re-timing them on another machine (and maybe deciding otherwise)."""
    recipe = replace(config, quantization=run.quantized.settings)
    if recipe.fold_normalization == "auto":
        recipe = replace(recipe, fold_normalization="on" if run.final.folded else "off")
    return recipe


def _manifest(config: ExportConfig, prepared: Prepared, run: Run, model_path: Path) -> Manifest:
    metrics: dict[str, Any] = {r.name: {**r.metrics, "bytes": r.bytes} for r in run.reports}
    metrics["served"] = {"stage": run.served.name, **run.final.metrics, "bytes": model_path.stat().st_size}
    metrics[prepared.task.parity_metric] = run.float_model.parity
    if run.quantized.drop is not None:
        metrics[f"{prepared.metric}_drop_points"] = round(run.quantized.drop, 4)
    if run.pruned is not None:
        metrics["prune_drop_points"] = round(run.pruned.drop, 4)
    sha = sha256_file(model_path)
    weights = None
    if config.weights is not None and run.plan.pretrained is None:
        weights = {"path": config.weights, "sha256": sha256_file(Path(config.weights))}
    labels = prepared.dataset.labels
    names = graph_output_names(model_path)
    outputs = prepared.task.output_specs(labels, prepared.prep.crop, names, prepared.task_config)
    return Manifest(
        name=config.model_name,
        version=config.version or sha[:12],
        architecture=_IMPORTED_ARCHITECTURE[config.imported[0]] if config.imported else config.arch,
        labels=labels,
        input=run.final.spec,
        output=outputs[0],
        extra_outputs=outputs[1:],
        task=prepared.task.name,
        task_config=prepared.task_config,
        preprocessing=prepared.prep,
        metrics=metrics,
        details={
            "created_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "stages": [r.as_dict() for r in run.reports],
            "data": {
                "kind": config.data.partition(":")[0],
                "train_images": len(prepared.dataset.train),
                "held_out_images": len(prepared.dataset.test),
            },
            "training": {
                "epochs": config.train_epochs,
                "from_weights": config.weights is not None,
                "pretrained": getattr(run.plan.pretrained, "name", None),
                "frozen_backbone": config.freeze_backbone,
                "seconds": round(run.float_model.train_seconds, 1),
            },
            "pruning": {"ratio": config.prune, "finetune_epochs": config.finetune_epochs} if config.prune else None,
            "quantization": run.quantized.record,
            "optimization": run.final.optimization,
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


def _library_versions() -> dict[str, Any]:
    versions: dict[str, Any] = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
