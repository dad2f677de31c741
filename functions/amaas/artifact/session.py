"""The ONNX Runtime session every stage uses, export and serving alike, so a model is measured as it is served."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def create_session(path: Path, *, threads: int) -> Any:
    """An ONNX Runtime CPU session with an explicit thread count (ORT's default is one per core, which on
    Lambda means oversubscription when memory settings and vCPUs disagree)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
