"""Object detection: every object of a known class in the image, with its box. The model sees the whole image
stretched to its square input (``resize_mode`` ``stretch``); its answer is a list of (class, score, box) with
the box in the ORIGINAL image's pixels, its quality COCO-style mAP (measured by the export).

Two graph layouts, named in the manifest's ``task_config.layout``:

``ssd``
    The graph ends at SSD's raw heads: box regressions ``[N, A, 4]`` (encoded against A default boxes) and
    class logits ``[N, A, classes]``. Here, in numpy: softmax, per class the candidates above the score
    threshold (at most ``candidates_per_class`` by score, as torchvision's ``topk_candidates``), decode of those
    boxes only, per-class greedy NMS that stops once ``max_detections`` are kept, and the mapping to the
    original size. The default boxes are regenerated from the manifest's anchor description
    (torchvision's ``DefaultBoxGenerator``), so nothing but numbers ships.
``boxes``
    The graph runs the detector's own post-processing (NMS included) and ends at ``boxes [N, D, 4]`` (input
    pixels), ``scores [N, D]`` and ``labels [N, D]``, padded to D with score -1 (Faster R-CNN, whose graph only
    exports for one image at a time). Here: threshold, cap, and the mapping to the original size.

Work per image is bounded by the manifest, whatever the image: at most ``classes x candidates_per_class``
candidates, of which at most ``max_candidates`` (the best) enter NMS, at most ``max_detections`` NMS rounds.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from amaas.artifact.imaging import Decoded, Limits, decode_sized
from amaas.artifact.manifest import Manifest
from amaas.errors import ManifestError

LAYOUTS = ("ssd", "boxes")
# torchvision's BoxCoder clamps dw/dh at log(1000 / 16): no box grows past 62.5x its anchor
DEFAULT_BOX_CLIP = math.log(1000.0 / 16)


@dataclass(frozen=True)
class Detection:
    """One object: its class, the model's confidence, and its box ``(x0, y0, x1, y1)`` in the original image's
    pixels (pixel-edge coordinates, so a whole W x H image is ``(0, 0, W, H)``)."""

    label: str
    index: int
    score: float
    box: tuple[float, float, float, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "index": self.index,
            "score": round(self.score, 6),
            "box": [round(v, 2) for v in self.box],
        }


@dataclass(frozen=True)
class Anchors:
    """torchvision's ``DefaultBoxGenerator`` in data form: per feature map (in the head's order), its grid
    ``(rows, cols)``, its scale, the next scale (for the extra square box) and its aspect ratios."""

    grid_sizes: tuple[tuple[int, int], ...]
    scales: tuple[float, ...]
    aspect_ratios: tuple[tuple[float, ...], ...]
    steps: tuple[int, ...] | None = None
    clip: bool = True

    def __post_init__(self) -> None:
        maps = len(self.grid_sizes)
        if not maps or len(self.aspect_ratios) != maps or len(self.scales) != maps + 1:
            raise ManifestError("task_config.anchors needs one grid and one aspect-ratio list per map, maps+1 scales")
        if self.steps is not None and len(self.steps) != maps:
            raise ManifestError("task_config.anchors.steps needs one step per feature map")
        if any(h < 1 or w < 1 or h * w > 1_000_000 for h, w in self.grid_sizes) or min(self.scales) <= 0:
            raise ManifestError("task_config.anchors has an impossible grid size or scale")

    @property
    def count(self) -> int:
        return sum(h * w * (2 + 2 * len(r)) for (h, w), r in zip(self.grid_sizes, self.aspect_ratios, strict=True))

    def to_dict(self) -> dict[str, Any]:
        return {
            "grid_sizes": [list(g) for g in self.grid_sizes],
            "scales": list(self.scales),
            "aspect_ratios": [list(r) for r in self.aspect_ratios],
            "steps": list(self.steps) if self.steps is not None else None,
            "clip": self.clip,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Anchors:
        try:
            steps = data.get("steps")
            return cls(
                grid_sizes=tuple((int(h), int(w)) for h, w in data["grid_sizes"]),
                scales=tuple(float(s) for s in data["scales"]),
                aspect_ratios=tuple(tuple(float(a) for a in r) for r in data["aspect_ratios"]),
                steps=tuple(int(s) for s in steps) if steps is not None else None,
                clip=bool(data.get("clip", True)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError("task_config.anchors is not a default-box description") from exc


@functools.lru_cache(maxsize=4)
def default_boxes(anchors: Anchors, side: int) -> np.ndarray:
    """float32 ``[A, 4]`` xyxy default boxes in pixels of the ``side`` x ``side`` input, in the order (and to
    the float32 rounding) of torchvision's ``DefaultBoxGenerator``."""
    parts = []
    for k, (rows, cols) in enumerate(anchors.grid_sizes):
        s_k, s_next = anchors.scales[k], anchors.scales[k + 1]
        pairs = [[s_k, s_k], [math.sqrt(s_k * s_next)] * 2]
        for ratio in anchors.aspect_ratios[k]:
            root = math.sqrt(ratio)
            pairs += [[s_k * root, s_k / root], [s_k / root, s_k * root]]
        wh = np.asarray(pairs, np.float32)
        if anchors.clip:
            wh = np.clip(wh, 0, 1)
        fy, fx = (side / anchors.steps[k],) * 2 if anchors.steps else (rows, cols)
        ys = ((np.arange(rows) + 0.5) / np.float32(fy)).astype(np.float32)
        xs = ((np.arange(cols) + 0.5) / np.float32(fx)).astype(np.float32)
        cy, cx = np.meshgrid(ys, xs, indexing="ij")
        centres = np.repeat(np.stack([cx.ravel(), cy.ravel()], 1), len(pairs), axis=0)
        parts.append(np.concatenate([centres, np.tile(wh, (rows * cols, 1))], 1))
    boxes = np.concatenate(parts).astype(np.float32)
    size = np.float32(side)
    return np.concatenate([(boxes[:, :2] - 0.5 * boxes[:, 2:]) * size, (boxes[:, :2] + 0.5 * boxes[:, 2:]) * size], 1)


@dataclass(frozen=True)
class DetectionConfig:
    """The manifest's ``task_config`` for detection.

    Attributes:
        layout: ``ssd`` (raw heads, decoded here) or ``boxes`` (post-processed in the graph).
        score_threshold: The API's default minimum score (``?score_threshold=`` overrides it).
        max_detections: The API's default and largest number of detections per image.
        iou_threshold: NMS suppresses a box whose IoU with a better one of its class exceeds this.
        candidates_per_class: Best boxes per class that enter NMS (``ssd``).
        max_candidates: Best boxes over all classes that enter NMS (``ssd``): the bound on NMS work.
        box_weights, box_clip: torchvision's ``BoxCoder`` (``ssd``).
        anchors: The default boxes (``ssd``).
    """

    layout: str = "ssd"
    score_threshold: float = 0.3
    max_detections: int = 100
    iou_threshold: float = 0.55
    candidates_per_class: int = 300
    max_candidates: int = 4000
    box_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    box_clip: float = DEFAULT_BOX_CLIP
    anchors: Anchors | None = field(default=None)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ManifestError(f"task_config.layout must be one of {LAYOUTS}, got {self.layout!r}")
        if not 0 <= self.score_threshold <= 1 or not 0 < self.iou_threshold <= 1:
            raise ManifestError("task_config score_threshold must be in [0, 1] and iou_threshold in (0, 1]")
        if not 1 <= self.max_detections <= 1000 or not 1 <= self.candidates_per_class <= 10_000:
            raise ManifestError("task_config max_detections must be 1-1000 and candidates_per_class 1-10000")
        if not 1 <= self.max_candidates <= 100_000 or min(self.box_weights) <= 0:
            raise ManifestError("task_config max_candidates must be 1-100000 and box_weights positive")
        if self.layout == "ssd" and self.anchors is None:
            raise ManifestError("task_config layout 'ssd' needs anchors")

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> DetectionConfig:
        return cls.parse(manifest.task_config)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> DetectionConfig:
        """``task_config`` as JSON holds it (a manifest's, or a user's ``--task-config``), parsed and checked.

        Raises:
            ManifestError: An unknown field, or a value of the wrong type or range.
        """
        return _config(data)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "layout": self.layout,
            "score_threshold": self.score_threshold,
            "max_detections": self.max_detections,
            "iou_threshold": self.iou_threshold,
        }
        if self.layout == "ssd":
            assert self.anchors is not None
            data.update(
                candidates_per_class=self.candidates_per_class,
                max_candidates=self.max_candidates,
                box_weights=list(self.box_weights),
                box_clip=self.box_clip,
                anchors=self.anchors.to_dict(),
            )
        return data


_FIELDS = {f for f in DetectionConfig.__dataclass_fields__}


def _config(data: Mapping[str, Any]) -> DetectionConfig:
    """``task_config`` parsed and checked: every field a manifest may carry, of its type and in its range."""
    unknown = set(data) - _FIELDS
    if unknown:
        raise ManifestError(f"manifest task_config has unknown detection fields {sorted(unknown)}")
    try:
        values = {k: v for k, v in data.items() if k != "anchors"}
        if "box_weights" in values:
            w = [float(v) for v in values["box_weights"]]
            if len(w) != 4:
                raise ValueError("box_weights")
            values["box_weights"] = (w[0], w[1], w[2], w[3])
        for name in ("score_threshold", "iou_threshold", "box_clip"):
            if name in values:
                values[name] = float(values[name])
        for name in ("max_detections", "candidates_per_class", "max_candidates"):
            if name in values and (isinstance(values[name], bool) or not isinstance(values[name], int)):
                raise ValueError(name)
        anchors = Anchors.from_dict(data["anchors"]) if data.get("anchors") is not None else None
        return DetectionConfig(**values, anchors=anchors)
    except (TypeError, ValueError) as exc:
        raise ManifestError("manifest task_config has a detection field of the wrong type") from exc


def decode_ssd(
    regression: np.ndarray,
    logits: np.ndarray,
    config: DetectionConfig,
    side: int,
    *,
    score_threshold: float,
    max_detections: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw SSD heads (``[A, 4]``, ``[A, classes]``) to (boxes ``[K, 4]`` in input pixels, scores
    ``[K]``, class indices ``[K]``), best first: torchvision's ``SSD.postprocess_detections`` for one image."""
    assert config.anchors is not None
    scores = _softmax(logits)
    anchor_boxes = default_boxes(config.anchors, side)
    picks, labels = [], []
    for cls in range(1, scores.shape[1]):
        column = scores[:, cls]
        index = np.flatnonzero(column > score_threshold)
        if len(index) > config.candidates_per_class:
            index = index[np.argpartition(-column[index], config.candidates_per_class - 1)]
            index = index[: config.candidates_per_class]
        picks.append(index)
        labels.append(np.full(len(index), cls, np.int64))
    index, label = np.concatenate(picks), np.concatenate(labels)
    score = scores[index, label]
    if len(index) > config.max_candidates:
        best = np.argpartition(-score, config.max_candidates - 1)[: config.max_candidates]
        index, label, score = index[best], label[best], score[best]
    boxes = np.clip(_decode_boxes(regression[index], anchor_boxes[index], config), 0, side)
    keep = nms(boxes, score, label, config.iou_threshold, max_detections)
    return boxes[keep], score[keep], label[keep]


def _softmax(logits: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        z = np.exp(logits.astype(np.float32) - logits.max(axis=1, keepdims=True))
        out = z / z.sum(axis=1, keepdims=True)
    return np.asarray(np.nan_to_num(out, nan=0.0))  # a broken model's NaN logits answer nothing, not NaN scores


def _decode_boxes(relative: np.ndarray, anchors: np.ndarray, config: DetectionConfig) -> np.ndarray:
    """torchvision ``BoxCoder.decode_single`` in float32."""
    wx, wy, ww, wh = (np.float32(w) for w in config.box_weights)
    widths, heights = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    cx, cy = anchors[:, 0] + np.float32(0.5) * widths, anchors[:, 1] + np.float32(0.5) * heights
    rel = relative.astype(np.float32)
    clip = np.float32(config.box_clip)
    dx, dy = rel[:, 0] / wx, rel[:, 1] / wy
    dw, dh = np.minimum(rel[:, 2] / ww, clip), np.minimum(rel[:, 3] / wh, clip)
    px, py = dx * widths + cx, dy * heights + cy
    with np.errstate(over="ignore", invalid="ignore"):
        half_w, half_h = np.float32(0.5) * np.exp(dw) * widths, np.float32(0.5) * np.exp(dh) * heights
    boxes = np.stack([px - half_w, py - half_h, px + half_w, py + half_h], axis=1)
    return np.asarray(np.nan_to_num(boxes, nan=0.0, posinf=0.0, neginf=0.0))


def nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float, limit: int) -> np.ndarray:
    """Per-class greedy NMS (torchvision's ``batched_nms``: a box is suppressed by a better-scoring box of its
    own class whose IoU with it exceeds ``iou_threshold``), keeping at most ``limit`` boxes, best first."""
    order = np.argsort(-scores, kind="stable")
    x0, y0, x1, y1 = (boxes[order, i] for i in range(4))
    areas = (x1 - x0) * (y1 - y0)
    ranked = labels[order]
    alive = np.ones(len(order), bool)
    keep: list[int] = []
    position = 0
    while len(keep) < limit:
        live = np.flatnonzero(alive[position:])
        if not len(live):
            break
        position += int(live[0])
        keep.append(int(order[position]))
        alive[position] = False
        rest = position + 1 + np.flatnonzero(alive[position + 1 :] & (ranked[position + 1 :] == ranked[position]))
        width = np.clip(np.minimum(x1[position], x1[rest]) - np.maximum(x0[position], x0[rest]), 0, None)
        height = np.clip(np.minimum(y1[position], y1[rest]) - np.maximum(y0[position], y0[rest]), 0, None)
        inter = width * height
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / (areas[position] + areas[rest] - inter)
        alive[rest[iou > iou_threshold]] = False
    return np.asarray(keep, np.int64)


def decode_boxes_layout(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, *, score_threshold: float, max_detections: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image of the ``boxes`` layout (already NMS'd by the graph, padded with score -1) to the detections
    above the threshold, best first, at most ``max_detections``."""
    keep = np.flatnonzero(np.nan_to_num(scores, nan=-1.0) >= max(score_threshold, 0.0))
    keep = keep[np.argsort(-scores[keep], kind="stable")][:max_detections]
    return boxes[keep].astype(np.float32), scores[keep].astype(np.float32), labels[keep].astype(np.int64)


def detect(
    outputs: Sequence[np.ndarray],
    manifest: Manifest,
    sizes: Sequence[tuple[int, int]],
    *,
    score_threshold: float | None = None,
    max_detections: int | None = None,
) -> list[list[Detection]]:
    """Every image's detections, boxes in its original (width, height) ``sizes``."""
    config = DetectionConfig.from_manifest(manifest)
    threshold = config.score_threshold if score_threshold is None else score_threshold
    limit = config.max_detections if max_detections is None else min(max_detections, config.max_detections)
    side = manifest.preprocessing.crop
    answers = []
    for n, (width, height) in enumerate(sizes):
        if config.layout == "ssd":
            boxes, scores, labels = decode_ssd(
                outputs[0][n], outputs[1][n], config, side, score_threshold=threshold, max_detections=limit
            )
        else:
            boxes, scores, labels = decode_boxes_layout(
                outputs[0][n], outputs[1][n], outputs[2][n], score_threshold=threshold, max_detections=limit
            )
        scale = np.array([width / side, height / side] * 2, np.float32)
        frame = np.array([width, height] * 2, np.float32)
        boxes = np.clip(boxes * scale, 0, frame)
        answers.append(
            [
                Detection(
                    manifest.labels[int(i)], int(i), float(s), (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
                )
                for b, s, i in zip(boxes, scores, labels, strict=True)
                if 0 <= int(i) < len(manifest.labels)
            ]
        )
    return answers


class ObjectDetection:
    """The detection task as the model holds it."""

    name: str = "detection"
    metric: str = "map50"

    def check(self, manifest: Manifest) -> None:
        """A stretched input, a valid ``task_config``, and outputs of its layout: SSD heads ``[N, A, 4]`` and
        ``[N, A, classes]`` (A the default boxes' count), or padded ``boxes``, ``scores``, ``labels``."""
        config = DetectionConfig.from_manifest(manifest)
        if manifest.preprocessing.resize_mode != "stretch":
            raise ManifestError("a detection model needs preprocessing.resize_mode 'stretch' to map boxes back")
        shapes = [spec.shape for spec in manifest.outputs]
        if config.layout == "ssd":
            assert config.anchors is not None
            count = config.anchors.count
            ok = len(shapes) == 2 and all(len(s) == 3 and s[1] in (-1, count) for s in shapes)
            if not ok or shapes[0][2] != 4 or shapes[1][2] not in (-1, len(manifest.labels)):
                raise ManifestError(
                    f"an SSD detection model outputs box regressions [N, {count}, 4] and class logits "
                    f"[N, {count}, {len(manifest.labels)}]; the manifest says {[list(s) for s in shapes]}"
                )
        elif len(shapes) != 3 or len(shapes[0]) != 3 or shapes[0][2] != 4 or len(shapes[1]) != 2 or len(shapes[2]) != 2:
            raise ManifestError(
                f"a 'boxes' detection model outputs boxes [N, D, 4], scores [N, D] and labels [N, D]; "
                f"the manifest says {[list(s) for s in shapes]}"
            )

    def pixels(self, data: bytes, manifest: Manifest, limits: Limits) -> Decoded:
        """The whole image stretched to the model's square input, and its original size."""
        return decode_sized(data, manifest.preprocessing, limits)

    def decode(
        self, outputs: Sequence[np.ndarray], manifest: Manifest, sizes: Sequence[tuple[int, int]], **options: Any
    ) -> list[Any]:
        """Each image's ``Detection`` list, boxes in its original size; ``score_threshold=`` and
        ``max_detections=`` override the manifest's defaults (``None`` keeps them)."""
        return detect(
            outputs,
            manifest,
            sizes,
            score_threshold=options.get("score_threshold"),
            max_detections=options.get("max_detections"),
        )

    def to_json(self, answer: Any, manifest: Manifest) -> dict[str, Any]:
        """One image's answer as /v1 and batch results carry it."""
        return {"detections": [d.to_json() for d in answer]}


DETECTION = ObjectDetection()
