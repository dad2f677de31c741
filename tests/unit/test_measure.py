from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from amaas_export.measure import graph_stats


def write_model(path: Path) -> Path:
    """input [N,3,10,10] → Conv 3→8 3x3 (no pad) → BatchNorm → Flatten → Gemm 512→10."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.zeros(8, np.float32), "b"),
        numpy_helper.from_array(np.ones(8, np.float32), "scale"),
        numpy_helper.from_array(np.zeros(8, np.float32), "shift"),
        numpy_helper.from_array(np.zeros(8, np.float32), "running_mean"),
        numpy_helper.from_array(np.ones(8, np.float32), "running_var"),
        numpy_helper.from_array(rng.standard_normal((10, 512)).astype(np.float32), "fc"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"]),
        helper.make_node("BatchNormalization", ["c", "scale", "shift", "running_mean", "running_var"], ["n"]),
        helper.make_node("Flatten", ["n"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fc_b"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 10, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_macs_count_conv_and_gemm_for_one_image(tmp_path: Path) -> None:
    stats = graph_stats(write_model(tmp_path / "m.onnx"))

    conv = 8 * 8 * 8 * (3 * 3 * 3)  # output elements x (C_in x kH x kW)
    gemm = 10 * 512
    assert stats.macs == conv + gemm


def test_params_are_learned_weights_not_running_statistics(tmp_path: Path) -> None:
    stats = graph_stats(write_model(tmp_path / "m.onnx"))

    assert stats.params == 8 * 27 + 8 + 8 + 8 + 10 * 512 + 10
