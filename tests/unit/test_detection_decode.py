"""The server's numpy detection decoding against torchvision's own: default boxes, box decoding, per-class NMS,
score threshold and candidate caps, and the mapping back to the original image."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSD
from torchvision.ops import batched_nms

from amaas.artifact.tasks.detection import Anchors, DetectionConfig, decode_ssd, default_boxes, nms

SIDE = 128
GRIDS = ((8, 8), (4, 4), (2, 2), (1, 1), (1, 1), (1, 1))  # SSDlite's feature maps at a 128 px input


def torchvision_anchors(grids: tuple[tuple[int, int], ...], side: int) -> tuple[Anchors, torch.Tensor]:
    generator = DefaultBoxGenerator([[2, 3] for _ in grids], min_ratio=0.2, max_ratio=0.95)
    images = ImageList(torch.zeros(1, 3, side, side), [(side, side)])
    features = [torch.zeros(1, 1, h, w) for h, w in grids]
    expected = generator(images, features)[0]
    described = Anchors(grids, tuple(generator.scales), tuple(tuple(r) for r in generator.aspect_ratios))
    return described, expected


@pytest.mark.parametrize(
    ("grids", "side"), [(GRIDS, SIDE), (((20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)), 320)]
)
def test_default_boxes_are_torchvisions(grids: tuple[tuple[int, int], ...], side: int) -> None:
    described, expected = torchvision_anchors(grids, side)

    boxes = default_boxes(described, side)

    assert boxes.shape == tuple(expected.shape) == (described.count, 4)
    np.testing.assert_allclose(boxes, expected.numpy(), atol=1e-4)


def heads(seed: int, anchors: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw heads with some confident anchors, as a trained SSD gives them."""
    rng = np.random.default_rng(seed)
    regression = rng.normal(0, 1.0, (anchors, 4)).astype(np.float32)
    logits = rng.normal(0, 1.0, (anchors, classes)).astype(np.float32)
    confident = rng.choice(anchors, anchors // 5, replace=False)
    logits[confident, rng.integers(1, classes, len(confident))] += rng.uniform(2, 8, len(confident)).astype(np.float32)
    return regression, logits


@pytest.mark.parametrize(
    ("seed", "threshold", "topk", "limit"), [(0, 0.01, 300, 100), (1, 0.3, 50, 20), (2, 0.2, 5, 300)]
)
def test_decoding_matches_torchvisions_postprocess(seed: int, threshold: float, topk: int, limit: int) -> None:
    described, anchors = torchvision_anchors(GRIDS, SIDE)
    regression, logits = heads(seed, described.count, classes=6)
    coder = det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    ssd = SimpleNamespace(
        box_coder=coder, score_thresh=threshold, topk_candidates=topk, nms_thresh=0.55, detections_per_img=limit
    )
    expected = SSD.postprocess_detections(
        ssd,  # type: ignore[arg-type]
        {"bbox_regression": torch.from_numpy(regression)[None], "cls_logits": torch.from_numpy(logits)[None]},
        [anchors],
        [(SIDE, SIDE)],
    )[0]
    config = DetectionConfig(candidates_per_class=topk, anchors=described)

    boxes, scores, labels = decode_ssd(
        regression, logits, config, SIDE, score_threshold=threshold, max_detections=limit
    )

    assert len(boxes) == len(expected["boxes"]) > 0
    np.testing.assert_array_equal(labels, expected["labels"].numpy())
    np.testing.assert_allclose(scores, expected["scores"].numpy(), rtol=1e-5)
    np.testing.assert_allclose(boxes, expected["boxes"].numpy(), atol=1e-3)


def test_nms_keeps_what_torchvision_keeps_per_class() -> None:
    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 100, (400, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + rng.uniform(5, 40, (400, 2)).astype(np.float32)], 1)
    scores = rng.random(400).astype(np.float32)
    labels = rng.integers(1, 4, 400)

    kept = nms(boxes, scores, labels, 0.5, limit=1000)
    expected = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), 0.5)

    np.testing.assert_array_equal(kept, expected.numpy())
    np.testing.assert_array_equal(nms(boxes, scores, labels, 0.5, limit=7), expected.numpy()[:7])


def test_work_is_bounded_by_the_manifest_whatever_the_logits() -> None:
    # GIVEN heads where every anchor is confident about every class (what a hostile image could aim for)
    described, _ = torchvision_anchors(GRIDS, SIDE)
    regression = np.zeros((described.count, 4), np.float32)
    logits = np.zeros((described.count, 6), np.float32)
    logits[:, 0] = -50
    config = DetectionConfig(candidates_per_class=300, max_candidates=500, anchors=described)

    boxes, _, _ = decode_ssd(regression, logits, config, SIDE, score_threshold=0.01, max_detections=100)

    # THEN at most max_detections come out, all in the input frame
    assert 0 < len(boxes) <= 100
    assert boxes.min() >= 0 and boxes.max() <= SIDE


def test_broken_logits_answer_nothing() -> None:
    described, _ = torchvision_anchors(GRIDS, SIDE)
    regression = np.full((described.count, 4), np.inf, np.float32)
    logits = np.full((described.count, 6), np.nan, np.float32)
    config = DetectionConfig(anchors=described)

    boxes, _, _ = decode_ssd(regression, logits, config, SIDE, score_threshold=0.3, max_detections=100)

    assert len(boxes) == 0
