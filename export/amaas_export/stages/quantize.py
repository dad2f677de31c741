"""Stage 4: static INT8 of the float model (``--quantize int8``), the fastest candidate within the gate
(``auto``), or the float model itself (``none``, or ``auto`` with no candidate within the gate)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from amaas.artifact.preprocessing import model_input
from amaas_export.config import ExportConfig, QuantizationConfig
from amaas_export.errors import ConfigError, GateError
from amaas_export.gates import check_accuracy_drop
from amaas_export.measure import latencies_ms
from amaas_export.quantize import candidates, quantize_int8
from amaas_export.stages.common import Log, Prepared, Stage
from amaas_export.tasks import metric_title


@dataclass(frozen=True)
class Quantized:
    """Attributes:
    stage: The INT8 file, or ``None`` when the float model ships.
    settings: The settings that made it, as the recipe should repeat them (``auto``'s pick, or ``none``).
    record: What the manifest records under ``quantization``.
    drop: Top-1 drop against the float model, in points, when INT8 ships.
    """

    stage: Stage | None
    settings: QuantizationConfig
    record: dict[str, Any] = field(default_factory=dict)
    drop: float | None = None


def int8(config: ExportConfig, prepared: Prepared, parent: Stage, work: Path, log: Log) -> Quantized:
    settings = config.quantization
    if settings.mode == "none":
        log("int8: skipped (--quantize none); the float model ships")
        return Quantized(None, settings, {"mode": "none"})
    calibration = prepared.dataset.train.take(settings.calibration_samples, seed=config.seed)
    tried = candidates(settings) if settings.mode == "auto" else [settings]
    results: list[tuple[QuantizationConfig, Stage, float, list[str]]] = []
    failed: list[dict[str, Any]] = []
    for i, candidate in enumerate(tried):
        path = work / f"int8-{i}.onnx"
        try:
            float_nodes = quantize_int8(parent.path, path, calibration, prepared.prep, parent.spec, candidate)
        except Exception as exc:  # ONNX Runtime's calibrators fail in their own ways on some graphs
            reason = f"{exc.__class__.__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
            if settings.mode == "int8":
                raise ConfigError(
                    f"INT8 calibration ({candidate.describe()}) failed on this model: {reason}. "
                    "--quantize auto tries other calibrations; --quantize none ships the float model"
                ) from exc
            log(f"int8 [{i + 1}/{len(tried)}] {candidate.describe()}: could not be calibrated ({reason}); skipped")
            failed.append({"settings": candidate.describe(), "error": reason})
            continue
        stage = prepared.stage("int8", path, parent.spec)
        drop = (parent.score - stage.score) * 100
        results.append((candidate, stage, drop, float_nodes))
        log(
            f"int8 [{i + 1}/{len(tried)}] {candidate.describe()}: held-out {metric_title(prepared.metric)} "
            f"{stage.score:.4f} "
            f"({-drop:+.2f} points)"
        )

    if settings.mode == "int8":
        candidate, stage, _, float_nodes = results[0]
        drop = check_accuracy_drop(
            parent.score, stage.score, config.max_accuracy_drop, parent.name.upper(), metric_title(prepared.metric)
        )
        title = metric_title(prepared.metric)
        log(f"gate: INT8 {title} drop {drop:+.2f} points <= {config.max_accuracy_drop:.2f}: pass")
        record = _record(settings, candidate, float_nodes, len(calibration), [])
        return Quantized(stage, settings, record, drop)

    feed = {parent.spec.name: model_input(prepared.dataset.test.pixels[:1], prepared.prep, parent.spec)}
    timings = latencies_ms([r[1].path for r in results], [feed] * len(results), budget_s=2.0) if results else []
    table = [
        {
            "settings": c.describe(),
            prepared.metric: round(s.score, 6),
            "drop_points": round(d, 4),
            "latency_ms": round(t, 4),
        }
        for (c, s, d, _), t in zip(results, timings, strict=True)
    ] + failed
    passing = [
        (t, -r[1].score, i)
        for i, (r, t) in enumerate(zip(results, timings, strict=True))
        if r[2] <= config.max_accuracy_drop + 1e-9
    ]
    if not passing:
        message = (
            f"no INT8 candidate stayed within {config.max_accuracy_drop:.2f} points of {parent.name} "
            f"(best drop {min(r[2] for r in results):.2f})"
            if results
            else f"no INT8 candidate could be calibrated on this model ({len(failed)} tried)"
        )
        if settings.require_int8:
            raise GateError(f"INT8 accuracy gate failed: {message}; --require-int8 is set, so nothing was written")
        log(f"WARNING: {message}. SHIPPING THE FLOAT MODEL ({parent.name}), NOT INT8.")
        return Quantized(None, replace(settings, mode="none"), {"mode": "auto", "candidates": table, "chosen": None})
    _, _, best = min(passing)
    candidate, stage, drop, float_nodes = results[best]
    log(f"int8: auto chose {candidate.describe()} ({timings[best]:.3f} ms, {-drop:+.2f} points)")
    record = _record(settings, candidate, float_nodes, len(calibration), table)
    return Quantized(stage, replace(candidate, mode="int8"), record, drop)


def _record(
    requested: QuantizationConfig,
    settings: QuantizationConfig,
    float_nodes: list[str],
    calibration_samples: int,
    table: list[dict[str, Any]],
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "mode": requested.mode,
        "format": "QDQ",
        "calibration_method": settings.calibration,
        "per_channel": settings.per_channel,
        "activation_type": settings.activation_type,
        "weight_type": settings.weight_type,
        "calibration_samples": calibration_samples,
        "float_nodes": float_nodes,
        "chosen": settings.describe(),
    }
    if table:
        record["candidates"] = table
    return record
