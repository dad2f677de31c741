"""The whole-detector graph (Faster R-CNN with its NMS) on an image where the region proposal network is sure
there is nothing: the graph still answers, with no detections, instead of failing inside ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper

from amaas.artifact.session import create_session
from amaas_export.tasks.detection_models import build_model, export_boxes_graph, sized


def test_an_image_without_any_proposal_gets_no_detections_not_an_error(tmp_path: Path) -> None:
    # GIVEN Faster R-CNN exported whole, then made sure there is nothing anywhere: its RPN scores every anchor
    # far below torchvision's 0.05 objectness floor and its box head calls every region background
    model = build_model("fasterrcnn_mobilenet_v3_large_320_fpn", num_classes=3, pretrained=None)
    sized(model, 64)
    export_boxes_graph(model.eval(), torch.zeros(2, 3, 64, 64), tmp_path / "rcnn.onnx")
    graph = onnx.load(str(tmp_path / "rcnn.onnx"))
    biases = {i.name: i for i in graph.graph.initializer}
    for name, value in [
        ("detector.rpn.head.cls_logits.bias", -30.0),
        ("detector.roi_heads.box_predictor.cls_score.bias", np.array([30.0, -30.0, -30.0])),
    ]:
        old = numpy_helper.to_array(biases[name])
        biases[name].CopyFrom(numpy_helper.from_array(np.broadcast_to(value, old.shape).astype(old.dtype), name))
    onnx.save(graph, str(tmp_path / "rcnn.onnx"))

    # WHEN ONNX Runtime runs it as served, and with no graph rewrites (as INT8 calibration runs it, where an
    # empty proposal set reached a Reshape that fails on it)
    image = {"input": np.full((1, 3, 64, 64), 0.5, np.float32)}
    plain = ort.SessionOptions()
    plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    unoptimized = ort.InferenceSession(str(tmp_path / "rcnn.onnx"), plain, providers=["CPUExecutionProvider"])
    for session in (create_session(tmp_path / "rcnn.onnx", threads=1), unoptimized):
        boxes, scores, labels = session.run(None, image)

        # THEN it answers its padded rows, none of them a detection
        assert boxes.shape == (1, 100, 4) and scores.shape == labels.shape == (1, 100)
        assert (scores == -1).all()
