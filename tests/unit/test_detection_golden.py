"""The pre-traffic check's comparison of a detector's answer with its golden boxes."""

from __future__ import annotations

import json
from pathlib import Path

from amaas.artifact.golden import GoldenSample
from amaas.rollout import GOLDEN_CHECKS

RECORDED = {"label": "star", "index": 4, "score": 0.91, "box": [10.0, 20.0, 60.0, 80.0]}
SAMPLE = GoldenSample("golden/0-star.png", "star", 4, 0.91, {"detections": [RECORDED], "min_iou": 0.9})


def answered(*detections: dict[str, object]) -> dict[str, object]:
    return {"statusCode": 200, "body": json.dumps({"detections": list(detections)})}


def test_the_same_boxes_pass_and_moved_missing_or_relabelled_ones_fail() -> None:
    route, compare = GOLDEN_CHECKS["detection"]
    extra = {"label": "circle", "index": 1, "score": 0.35, "box": [0.0, 0.0, 5.0, 5.0]}

    assert route.path == "/v1/detect"
    assert compare(Path(), SAMPLE, answered(RECORDED, extra)) is None  # extra low-score boxes may come and go
    assert compare(Path(), SAMPLE, answered({**RECORDED, "box": [11.0, 20.5, 60.0, 80.0]})) is None
    assert "IoU" in (compare(Path(), SAMPLE, answered({**RECORDED, "box": [20.0, 30.0, 70.0, 90.0]})) or "")
    assert "star" in (compare(Path(), SAMPLE, answered({**RECORDED, "index": 2, "label": "triangle"})) or "")
    assert "star" in (compare(Path(), SAMPLE, answered()) or "")
    assert "scored" in (compare(Path(), SAMPLE, answered({**RECORDED, "score": 0.5})) or "")
