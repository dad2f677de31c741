"""``amaas export``: data → model → FP32 ONNX (parity-checked) → INT8 ONNX (gated) → artifact directory.

Everything is built in a staging directory next to ``config.out`` and moved into place only after every gate
has passed, so a failed export leaves no artifact that looks deployable (and keeps a previous good one).
"""

from __future__ import annotations

import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

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
from amaas.preprocessing import normalize
from amaas_export import data as datasets
from amaas_export.card import render_card
from amaas_export.config import ExportConfig
from amaas_export.errors import ConfigError
from amaas_export.evaluate import onnx_predict
from amaas_export.gates import check_accuracy_drop
from amaas_export.models import build_model, load_weights
from amaas_export.onnx_export import INPUT_NAME, OUTPUT_NAME, check_parity, export_fp32
from amaas_export.quantize import quantize_int8
from amaas_export.train import top1, train

PARITY_IMAGES = 64
_LIBRARIES = ("torch", "torchvision", "onnx", "onnxruntime", "numpy", "pillow")


@dataclass(frozen=True)
class ExportResult:
    out: Path
    manifest: Manifest


def run_export(config: ExportConfig, log: Callable[[str], None] = print) -> ExportResult:
    """Runs every step of the export and returns the manifest of the artifact written to ``config.out``.

    Raises:
        ExportError: Bad options or data, or a failed gate; nothing is written to ``config.out``.
    """
    _check_replaceable(config.out)
    torch.manual_seed(config.seed)
    size = config.input_size
    geometry = Preprocessing(resize=size, crop=size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))

    started = time.perf_counter()
    dataset = datasets.load(config.data, geometry, seed=config.seed)
    mean, std = datasets.mean_std(dataset.train)
    prep = Preprocessing(resize=size, crop=size, mean=mean, std=std)
    log(
        f"data: {dataset.source}: {len(dataset.train)} training / {len(dataset.test)} held-out images, "
        f"{len(dataset.labels)} classes, {size}x{size} ({time.perf_counter() - started:.1f}s)"
    )

    model = build_model(config.arch, len(dataset.labels))
    if config.weights is not None:
        load_weights(model, config.weights)
        log(f"weights: loaded {config.weights}")
    train_started = time.perf_counter()
    if config.train_epochs:
        log(f"train: {config.arch}, {config.train_epochs} epochs, batch {config.batch_size}")
        train(
            model,
            dataset.train,
            dataset.test,
            prep,
            epochs=config.train_epochs,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            seed=config.seed,
            report=lambda epoch: log(f"  {epoch}"),
        )
    model.eval()
    train_seconds = time.perf_counter() - train_started

    config.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".amaas-export-", dir=config.out.parent) as work_dir:
        work = Path(work_dir)
        staging = work / "artifact"
        staging.mkdir()
        fp32_path, int8_path = work / "model.fp32.onnx", staging / MODEL_FILE

        example = torch.from_numpy(normalize(dataset.test.pixels[:2], prep))
        export_fp32(model, example, fp32_path)
        parity = check_parity(
            fp32_path, model, normalize(dataset.test.pixels[:PARITY_IMAGES], prep), config.parity_tolerance
        )
        fp32_top1 = top1(onnx_predict(fp32_path, dataset.test, prep, INPUT_NAME), dataset.test.labels)
        log(f"fp32: held-out top-1 {fp32_top1:.4f}, {fp32_path.stat().st_size} bytes, parity max|diff| {parity:.1e}")

        calibration = dataset.train.take(config.calibration_samples, seed=config.seed)
        quant = quantize_int8(fp32_path, int8_path, calibration, prep, INPUT_NAME)
        int8_top1 = top1(onnx_predict(int8_path, dataset.test, prep, INPUT_NAME), dataset.test.labels)
        log(f"int8: held-out top-1 {int8_top1:.4f}, {int8_path.stat().st_size} bytes")
        drop = check_accuracy_drop(fp32_top1, int8_top1, config.max_accuracy_drop)
        log(f"gate: INT8 top-1 drop {drop:+.2f} points <= {config.max_accuracy_drop:.2f}: pass")

        sha = sha256_file(int8_path)
        manifest = Manifest(
            name=config.model_name,
            version=config.version or sha[:12],
            architecture=config.arch,
            labels=dataset.labels,
            input=TensorSpec(INPUT_NAME, (-1, 3, size, size), "float32", "NCHW"),
            output=TensorSpec(OUTPUT_NAME, (-1, len(dataset.labels)), "float32"),
            preprocessing=prep,
            metrics={
                "fp32": {"top1": fp32_top1, "bytes": fp32_path.stat().st_size},
                "int8": {"top1": int8_top1, "bytes": int8_path.stat().st_size},
                "top1_drop_points": round(drop, 4),
                "parity_max_abs_diff": parity,
            },
            details={
                "created_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
                "data": {
                    "kind": config.data.partition(":")[0],
                    "train_images": len(dataset.train),
                    "held_out_images": len(dataset.test),
                },
                "training": {
                    "epochs": config.train_epochs,
                    "from_weights": config.weights is not None,
                    "seconds": round(train_seconds, 1),
                },
                "quantization": quant.__dict__,
                "gates": {
                    "max_accuracy_drop_points": config.max_accuracy_drop,
                    "parity_tolerance": config.parity_tolerance,
                },
                "libraries": _library_versions(),
                PROVENANCE: _provenance(config),
            },
        )
        (staging / CARD_FILE).write_text(render_card(manifest), encoding="utf-8")
        files = {name: file_entry(staging / name) for name in (MODEL_FILE, CARD_FILE)}
        manifest = replace(manifest, files=files)
        write_manifest(staging, manifest)
        _replace(config.out, staging, work)
    log(f"artifact: {config.out}/ ({MODEL_FILE}, {MANIFEST_FILE}, {CARD_FILE}) in {time.perf_counter() - started:.0f}s")
    return ExportResult(out=config.out, manifest=manifest)


def _check_replaceable(out: Path) -> None:
    """Refuses to replace a directory that is not an earlier artifact: ``--out .`` must not eat a project."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST_FILE).is_file())):
        raise ConfigError(f"--out {out} exists and is not an amaas artifact directory; refusing to replace it")


def _replace(out: Path, staging: Path, work: Path) -> None:
    """Moves ``staging`` to ``out``; a previous artifact is moved aside first and removed with ``work``."""
    if out.exists():
        out.rename(work / "previous")
    staging.rename(out)


def _provenance(config: ExportConfig) -> dict[str, Any]:
    """How to re-run this export: local paths and settings, for the model card and for people, not clients."""
    settings = {k: v for k, v in config.to_dict().items() if k != "out"}
    weights = {"path": str(config.weights), "sha256": sha256_file(config.weights)} if config.weights else None
    return {"export": settings, "weights": weights}


def _library_versions() -> dict[str, Any]:
    versions: dict[str, Any] = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
