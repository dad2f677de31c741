"""Graph-level work on the model that ships: folding input normalisation into it, and baking ONNX Runtime's
portable graph optimizations into the file so a Lambda cold start does not redo them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from amaas.artifact.manifest import Preprocessing, TensorSpec

FOLDED_INPUT_SUFFIX = "_normalized"

# Basic and extended rewrites are semantics-preserving fusions valid on any CPU; the "all" level adds
# layout transforms tuned to the build machine's vector width (NCHWc), which must stay online.
_LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED"}


def fold_normalization(src: Path, dst: Path, prep: Preprocessing, spec: TensorSpec) -> TensorSpec:
    """Rewrites ``src`` to take uint8 NHWC RGB pixels: Cast, channel reorder, scale-and-shift and (for an NCHW
    model) transpose now run inside the graph, in front of the original float input, computing what
    ``model_input`` computes outside it.

    Returns:
        The new input's spec (same name, uint8, [batch, H, W, 3], NHWC).
    """
    model = onnx.load(str(src))
    graph = model.graph
    (original,) = [i for i in graph.input if i.name == spec.name]
    inner = spec.name + FOLDED_INPUT_SUFFIX
    for node in graph.node:
        node.input[:] = [inner if name == spec.name else name for name in node.input]

    std = np.asarray(prep.std, dtype=np.float32)
    scale = (prep.scale / std).astype(np.float32)
    shift = (-np.asarray(prep.mean, dtype=np.float32) / std).astype(np.float32)
    prefix = spec.name + "_fold"
    initializers = [
        numpy_helper.from_array(scale, f"{prefix}_scale"),
        numpy_helper.from_array(shift, f"{prefix}_shift"),
    ]
    nodes = [helper.make_node("Cast", [spec.name], [f"{prefix}_float"], to=TensorProto.FLOAT, name=f"{prefix}_cast")]
    current = f"{prefix}_float"
    if prep.channel_order == "BGR":
        initializers.append(numpy_helper.from_array(np.array([2, 1, 0], dtype=np.int64), f"{prefix}_bgr"))
        nodes.append(helper.make_node("Gather", [current, f"{prefix}_bgr"], [f"{prefix}_reordered"], axis=3))
        current = f"{prefix}_reordered"
    nodes += [
        helper.make_node("Mul", [current, f"{prefix}_scale"], [f"{prefix}_scaled"], name=f"{prefix}_mul"),
        helper.make_node("Add", [f"{prefix}_scaled", f"{prefix}_shift"], [f"{prefix}_shifted"], name=f"{prefix}_add"),
    ]
    if spec.layout != "NHWC":
        nodes.append(
            helper.make_node("Transpose", [f"{prefix}_shifted"], [inner], perm=[0, 3, 1, 2], name=f"{prefix}_nchw")
        )
    else:
        nodes.append(helper.make_node("Identity", [f"{prefix}_shifted"], [inner], name=f"{prefix}_nhwc"))

    batch = original.type.tensor_type.shape.dim[0]
    new_input = helper.make_tensor_value_info(
        spec.name, TensorProto.UINT8, [batch.dim_param or batch.dim_value or "batch", prep.crop, prep.crop, 3]
    )
    graph.input.remove(original)
    graph.input.insert(0, new_input)
    graph.initializer.extend(initializers)
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return TensorSpec(spec.name, (-1, prep.crop, prep.crop, 3), "uint8", "NHWC")


def optimize_offline(src: Path, dst: Path, level: str) -> None:
    """Saves ``src`` with ONNX Runtime's ``level`` graph optimizations already applied."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[level])
    options.optimized_model_filepath = str(dst)
    options.log_severity_level = 3
    ort.InferenceSession(str(src), sess_options=options, providers=["CPUExecutionProvider"])


def end_at_argmax(src: Path, dst: Path, name: str) -> None:
    """Rewrites ``src``, whose first output is logits ``[N, classes, H, W]``, to output their label map instead:
    ``ArgMax`` over axis 1 (the first of equal values wins) and a ``Cast`` to uint8, as ``name`` ``[N, H, W]``.

    Raises:
        ValueError: More than 256 classes (a uint8 label map cannot hold them) or not a 4-D first output.
    """
    model = onnx.load(str(src))
    graph = model.graph
    logits = graph.output[0]
    dims = logits.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ValueError(f"{logits.name} has {len(dims)} dimensions; a label map is taken from [N, classes, H, W]")
    if dims[1].dim_value > 256:
        raise ValueError(f"{dims[1].dim_value} classes do not fit a uint8 label map")
    index = f"{name}_index"
    graph.node.extend(
        [
            helper.make_node("ArgMax", [logits.name], [index], axis=1, keepdims=0, name=f"{name}_argmax"),
            helper.make_node("Cast", [index], [name], to=TensorProto.UINT8, name=f"{name}_uint8"),
        ]
    )
    shape = [d.dim_param or d.dim_value or None for i, d in enumerate(dims) if i != 1]
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(name, TensorProto.UINT8, shape))
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
