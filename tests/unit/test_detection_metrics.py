"""COCO mAP as the export gates on it: perfect answers score 1, misses and false alarms cost what COCO says."""

from __future__ import annotations

import numpy as np
import pytest

from amaas_export.tasks.detection_metrics import coco_map

TRUTH = [
    (np.array([[10, 10, 50, 50], [60, 60, 90, 100]], np.float32), np.array([1, 2])),
    (np.array([[0, 0, 30, 20]], np.float32), np.array([1])),
]


def answer(boxes: np.ndarray, labels: np.ndarray, scores: list[float] | None = None) -> tuple[np.ndarray, ...]:
    return boxes, np.asarray(scores if scores is not None else [0.9] * len(labels), np.float32), labels


def test_perfect_detections_score_one() -> None:
    result = coco_map([answer(b, lab) for b, lab in TRUTH], TRUTH)

    assert result == {"map50": pytest.approx(1.0), "map50_95": pytest.approx(1.0)}


def test_a_loose_box_counts_at_iou_half_but_not_at_stricter_thresholds() -> None:
    # the class-2 box shifted by 6 px: IoU ~0.6 with its truth
    shifted = [answer(TRUTH[0][0] + np.array([[0, 0, 0, 0], [6, 6, 6, 6]]), TRUTH[0][1]), answer(*TRUTH[1])]

    result = coco_map(shifted, TRUTH)

    assert result["map50"] == pytest.approx(1.0)
    assert result["map50_95"] < 0.8


def test_a_missed_object_and_a_confident_false_alarm_lower_the_map() -> None:
    missed = [answer(TRUTH[0][0][:1], TRUTH[0][1][:1]), answer(*TRUTH[1])]
    false_alarm = [
        answer(np.concatenate([TRUTH[0][0], [[100, 0, 120, 20]]]), np.array([1, 2, 1]), [0.5, 0.5, 0.99]),
        answer(*TRUTH[1]),
    ]

    assert coco_map(missed, TRUTH)["map50"] == pytest.approx(0.5)  # class 2 has no hit: AP 0; class 1: AP 1
    assert 0.5 < coco_map(false_alarm, TRUTH)["map50"] < 1.0


def test_no_detections_score_zero_and_mismatched_lengths_are_refused() -> None:
    empty = [answer(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))] * 2

    assert coco_map(empty, TRUTH) == {"map50": 0.0, "map50_95": 0.0}
    with pytest.raises(ValueError, match="images"):
        coco_map(empty[:1], TRUTH)
