"""Stage 5: the file that ships: normalisation folded into the graph when that measures faster (or is asked
for), and ONNX Runtime's portable graph rewrites baked in, checked to change nothing the model answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from amaas.artifact.manifest import TensorSpec
from amaas.artifact.preprocessing import model_input
from amaas.artifact.session import create_session
from amaas_export.config import ExportConfig
from amaas_export.errors import GateError
from amaas_export.measure import round_robin_ms, session_create_ms
from amaas_export.optimize import fold_normalization, optimize_offline
from amaas_export.stages.common import Log, Prepared, Stage, graph_output_names

FOLD_MIN_GAIN = 0.03


@dataclass(frozen=True)
class ServingFile:
    """Attributes:
    path, spec: The file that ships and its input (uint8 NHWC when normalisation was folded in).
    score, metrics: Its held-out scores; the gated one within 0.2 points of the stage it was made from.
    folded: Whether normalisation was folded into the graph.
    optimization: What the manifest records under ``optimization``.
    prepared: What the package describes the file with: the outputs and ``task_config`` after the task
        finished the graph (``ExportTask.finish_graph``).
    """

    path: Path
    spec: TensorSpec
    score: float
    folded: bool
    optimization: dict[str, Any]
    metrics: Mapping[str, float]
    prepared: Prepared


def finalize(config: ExportConfig, prepared: Prepared, served: Stage, work: Path, log: Log) -> ServingFile:
    path, spec = served.path, served.spec
    fold: dict[str, Any] = {"mode": config.fold_normalization, "applied": False}
    if config.fold_normalization != "off" and spec.dtype == "float32":
        folded = work / "folded.onnx"
        folded_spec = fold_normalization(path, folded, prepared.prep, spec)
        pixels = prepared.dataset.test.pixels[:1]
        unfolded_session, folded_session = create_session(path, threads=1), create_session(folded, threads=1)
        float_ms, uint8_ms = round_robin_ms(
            [
                lambda: unfolded_session.run(None, {spec.name: model_input(pixels, prepared.prep, spec)}),
                lambda: folded_session.run(None, {folded_spec.name: pixels}),
            ],
            budget_s=2.0,
        )
        fold.update(float_input_ms=round(float_ms, 4), uint8_input_ms=round(uint8_ms, 4))
        if config.fold_normalization == "on" or uint8_ms < float_ms * (1 - FOLD_MIN_GAIN):
            path, spec = folded, folded_spec
            fold["applied"] = True
        log(
            f"fold normalization: normalize+run {float_ms:.3f} ms vs uint8 in-graph {uint8_ms:.3f} ms "
            f"→ {'folded' if fold['applied'] else 'kept outside the graph'}"
        )
    finished = work / "finished.onnx"
    task_config = prepared.task.finish_graph(path, finished, prepared.task_config)
    if task_config is not None:
        path = finished
        prepared = replace(prepared, output_names=graph_output_names(finished), task_config=task_config)
        log(f"finish: the graph ends at {', '.join(prepared.output_names)} ({prepared.task.name} post-processing)")
    optimization: dict[str, Any] = {"fold_normalization": fold, "offline_level": config.optimize}
    if config.optimize != "none":
        optimized = work / "optimized.onnx"
        optimize_offline(path, optimized, config.optimize)
        before, after = session_create_ms(path), session_create_ms(optimized)
        optimization["session_create_ms"] = {"as_exported": round(before, 2), "optimized": round(after, 2)}
        log(f"optimize: ORT {config.optimize} rewrites baked in; session create {before:.1f} → {after:.1f} ms")
        path = optimized
    final = prepared.stage("served", path, spec)
    if abs(final.score - served.score) > 0.002:
        raise GateError(
            f"the optimized file scores {final.score:.2%} but its {served.name} stage scored {served.score:.2%}; "
            "a graph rewrite changed the model. Export with --optimize none --fold-normalization off."
        )
    return ServingFile(path, spec, final.score, bool(fold["applied"]), optimization, final.metrics, prepared)
