"""The built-in dense demo dataset: scenes of one to three drawn shapes, each image with its per-pixel class
mask and the tight box of every object, for segmentation and detection alike.

Every scene is a pure function of ``(seed, split, index, size)``, like the classification shapes. Class 0 is
background, as torchvision's detection and segmentation models expect. What makes it non-trivial: object
size from 18 to 45% of the side, rotation, position, a foreground colour with only a minimum contrast to a
two-colour gradient background, Gaussian sensor noise, and anti-aliased edges (drawn at 2x, box-downsampled).
Objects do not overlap, so masks and boxes agree exactly; the mask is the 2x label map sampled at pixel
centres, and a box ``[x0, y0, x1, y1]`` is its object's tight extent in pixel-edge coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

LABELS: tuple[str, ...] = ("background", "circle", "triangle", "square", "star")
_SPLITS = {"train": 0, "test": 1, "sample": 2}
_SCALE = 2


@dataclass(frozen=True)
class Scene:
    """Attributes:
    image: uint8 (size, size, 3) RGB.
    mask: uint8 (size, size) class per pixel.
    boxes: float32 (K, 4) ``[x0, y0, x1, y1]``.
    labels: int64 (K,) classes 1..4.
    """

    image: np.ndarray
    mask: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray


def scene(index: int, *, split: str = "train", size: int = 96, seed: int = 0) -> Scene:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    return render(np.random.default_rng((seed, _SPLITS[split], index)), size)


def scenes(count: int, *, split: str, size: int, seed: int = 0) -> list[Scene]:
    return [scene(i, split=split, size=size, seed=seed) for i in range(count)]


def render(rng: np.random.Generator, size: int) -> Scene:
    big = size * _SCALE
    low, high = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, big, dtype=np.float32)
    ramp2d = (ramp[:, None] if rng.integers(0, 2) == 0 else ramp[None, :]) * np.ones((big, big), np.float32)
    canvas = (low * (1 - ramp2d[..., None]) + high * ramp2d[..., None]).astype(np.uint8)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    instances = Image.new("L", (big, big), 0)
    draw_instance = ImageDraw.Draw(instances)
    placed: list[tuple[float, float, float]] = []
    kinds: list[int] = []
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(1, len(LABELS)))
        for _attempt in range(30):
            r = float(rng.uniform(0.09, 0.225)) * big
            cx, cy = (float(v) for v in rng.uniform(r, big - r, 2))
            if all(math.hypot(cx - x, cy - y) > r + rr + 2 * _SCALE for x, y, rr in placed):
                break
        else:
            continue
        placed.append((cx, cy, r))
        kinds.append(kind)
        background = (low + high) / 2
        while True:
            colour = rng.integers(0, 256, 3)
            if np.abs(colour - background).sum() > 150:
                break
        fill = tuple(int(v) for v in colour)
        angle = float(rng.uniform(0, 2 * math.pi))
        if kind == 1:
            box = [cx - r, cy - r, cx + r, cy + r]
            draw.ellipse(box, fill=fill)
            draw_instance.ellipse(box, fill=len(kinds))
        else:
            polygon = _polygon(kind, cx, cy, r, angle)
            draw.polygon(polygon, fill=fill)
            draw_instance.polygon(polygon, fill=len(kinds))
    small = np.asarray(image.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    pixels = np.clip(small + rng.normal(0, 6, small.shape), 0, 255).astype(np.uint8)
    instance = np.asarray(instances)[_SCALE // 2 :: _SCALE, _SCALE // 2 :: _SCALE]
    mask = np.zeros((size, size), np.uint8)
    boxes, labels = [], []
    for ident, kind in enumerate(kinds, start=1):
        ys, xs = np.nonzero(instance == ident)
        if len(xs) == 0:
            continue
        mask[instance == ident] = kind
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        labels.append(kind)
    return Scene(pixels, mask, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64).reshape(-1))


def _polygon(kind: int, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if kind == 2:
        points = [(1.0, a) for a in (0, 2 * math.pi / 3, 4 * math.pi / 3)]
    elif kind == 3:
        points = [(1.0, a) for a in (math.pi / 4, 3 * math.pi / 4, 5 * math.pi / 4, 7 * math.pi / 4)]
    else:  # a five-pointed star
        points = [(1.0 if i % 2 == 0 else 0.45, i * math.pi / 5) for i in range(10)]
    return [(cx + r * s * math.cos(a + angle), cy + r * s * math.sin(a + angle)) for s, a in points]
