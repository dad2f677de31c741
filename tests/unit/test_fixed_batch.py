"""A graph exported for a fixed batch of one (a whole detector with its NMS) still serves batches: the model
runs it one image at a time and answers every image, in order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from amaas.artifact.manifest import Manifest, Preprocessing, TensorSpec
from amaas.artifact.model import Model


def test_a_batch_of_three_runs_through_a_batch_of_one_graph_in_order(tmp_path: Path) -> None:
    # GIVEN a graph whose input batch is fixed at 1: logits = mean of each channel
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["logits"], axes=[2, 3], keepdims=0)],
        "fixed",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])],
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    manifest = Manifest(
        name="fixed",
        version="1",
        architecture="test",
        labels=("r", "g", "b"),
        input=TensorSpec("input", (1, 3, 4, 4), "float32", "NCHW"),
        output=TensorSpec("logits", (1, 3), "float32"),
        preprocessing=Preprocessing(4, 4, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    )
    batch = np.random.default_rng(0).random((3, 3, 4, 4), dtype=np.float32)

    (logits,) = Model.for_file(path, manifest).predict(batch)

    np.testing.assert_allclose(logits, batch.mean(axis=(2, 3)), rtol=1e-6)
