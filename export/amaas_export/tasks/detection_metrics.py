"""COCO-style detection quality, computed by pycocotools' ``COCOeval`` (the reference implementation every
detection paper reports): mAP@0.5 and mAP@0.5:0.95 over 101 recall points, at most 100 detections per image,
all object sizes. Export side only: the serving bundle never imports it."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

# One image's detections: boxes [K, 4] xyxy, scores [K], labels [K]; its truth: boxes [G, 4], labels [G].
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]
Truth = tuple[np.ndarray, np.ndarray]


def coco_map(detections: Sequence[Detections], truth: Sequence[Truth]) -> dict[str, float]:
    """``{"map50": ..., "map50_95": ...}`` as fractions; 0 when nothing was detected, classes without any
    ground truth left out (as COCOeval does).

    Raises:
        ValueError: ``detections`` and ``truth`` do not cover the same images.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(detections) != len(truth):
        raise ValueError(f"{len(detections)} images of detections for {len(truth)} images of ground truth")
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    classes: set[int] = set()
    for image_id, ((boxes, labels), (d_boxes, d_scores, d_labels)) in enumerate(zip(truth, detections, strict=True)):
        images.append({"id": image_id})
        for box, label in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(labels).reshape(-1), strict=True):
            width, height = float(box[2] - box[0]), float(box[3] - box[1])
            classes.add(int(label))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label),
                    "bbox": [float(box[0]), float(box[1]), width, height],
                    "area": width * height,
                    "iscrowd": 0,
                }
            )
        for box, score, label in zip(np.asarray(d_boxes).reshape(-1, 4), d_scores, d_labels, strict=True):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(label),
                    "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
                    "score": float(score),
                }
            )
    if not results or not annotations:
        return {"map50": 0.0, "map50_95": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools narrates every step on stdout
        ground = COCO()
        ground.dataset = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in classes]}
        ground.createIndex()
        evaluation = COCOeval(ground, ground.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    map50_95, map50 = (max(float(v), 0.0) for v in evaluation.stats[:2])
    return {"map50": map50, "map50_95": map50_95}
