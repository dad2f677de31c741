"""What every stage of an export is measured by: held-out top-1, file size, parameters, MACs and ORT latency.

Parameters and MACs are counted on the ONNX graph itself, so the FP32, pruned and INT8 files (and ONNX
models that never saw torch) are all counted the same way. Latencies of the files being compared are
measured in the same process, round-robin, so a slow moment of the machine hits them all alike.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from amaas.artifact.session import create_session

# Inputs of these ops that hold bookkeeping, not learned weights: Q/DQ scales and zero points, and
# BatchNormalization's running statistics.
_NOT_PARAMETERS = {"QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2), "BatchNormalization": (3, 4)}


@dataclass(frozen=True)
class GraphStats:
    params: int
    macs: int


@dataclass(frozen=True)
class StageReport:
    """One row of the stage table, as recorded in the manifest under ``stages``: the held-out ``metrics`` of the
    task (``score`` is its gated one, such as top-1 or mIoU), size, parameters, MACs and latency."""

    name: str
    score: float
    bytes: int
    params: int
    macs: int
    latency_ms: float
    metrics: Mapping[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **{metric: round(value, 6) for metric, value in self.metrics.items()},
            "bytes": self.bytes,
            "params": self.params,
            "macs": self.macs,
            "latency_ms": round(self.latency_ms, 4),
        }


def graph_stats(path: Path) -> GraphStats:
    """Learned parameters and multiply-accumulates for one image (batch 1) of an ONNX classifier."""
    model = onnx.load(str(path))
    graph = model.graph
    del graph.value_info[:]  # stale symbolic shapes from earlier tools would shadow the inferred ones
    for value in (graph.input[0], *graph.output):  # batch of one, so every shape is concrete
        first = value.type.tensor_type.shape.dim[0]
        first.ClearField("dim_param")
        first.dim_value = 1
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*inferred.input, *inferred.output, *inferred.value_info)
    }
    shapes.update({init.name: list(init.dims) for init in graph.initializer})

    bookkeeping = {
        node.input[i] for node in graph.node for i in _NOT_PARAMETERS.get(node.op_type, ()) if i < len(node.input)
    }
    params = sum(
        math.prod(init.dims)
        for init in graph.initializer
        if init.name not in bookkeeping and len(init.dims) >= 1 and init.data_type != onnx.TensorProto.INT64
    )
    macs = sum(_node_macs(node, shapes) for node in inferred.node)
    return GraphStats(params=params, macs=macs)


def _node_macs(node: onnx.NodeProto, shapes: dict[str, list[int]]) -> int:
    out = shapes.get(node.output[0], [])
    if not out or 0 in out:
        return 0
    if node.op_type == "Conv":
        weight = shapes.get(node.input[1], [])  # [C_out, C_in / groups, kH, kW]
        return math.prod(out) * math.prod(weight[1:]) if weight else 0
    if node.op_type in ("Gemm", "MatMul"):
        a = shapes.get(node.input[0], [])
        transposed = node.op_type == "Gemm" and any(at.name == "transA" and at.i == 1 for at in node.attribute)
        inner = (a[-2] if transposed else a[-1]) if a else 0
        return math.prod(out) * inner
    return 0


def latencies_ms(
    paths: Sequence[Path], inputs: Sequence[dict[str, np.ndarray]], *, budget_s: float = 3.0
) -> list[float]:
    """p50 latency of one ``session.run`` per file, batch as given, 1 intra-op thread, as serving runs it."""
    sessions = [create_session(path, threads=1) for path in paths]
    calls = [partial(session.run, None, feed) for session, feed in zip(sessions, inputs, strict=True)]
    return round_robin_ms(calls, budget_s=budget_s)


def round_robin_ms(calls: Sequence[Callable[[], object]], *, budget_s: float = 3.0) -> list[float]:
    """p50 milliseconds of each call, timed round-robin (one call of each per round) so that the machine's
    slow moments hit every candidate alike: 3 warm-up rounds, then until ``budget_s`` has passed, at least
    20 rounds and at most 2000."""
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(3):
        for call in calls:
            call()
    started = time.perf_counter()
    rounds = 0
    while rounds < 20 or (time.perf_counter() - started < budget_s and rounds < 2000):
        for i, call in enumerate(calls):
            t = time.perf_counter()
            call()
            samples[i].append((time.perf_counter() - t) * 1000)
        rounds += 1
    return [statistics.median(s) for s in samples]


def session_create_ms(path: Path, *, repeats: int = 3) -> float:
    """Median time to build a serving session for ``path``: the model-load part of a cold start."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        create_session(path, threads=1)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)
