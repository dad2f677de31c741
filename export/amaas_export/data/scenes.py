"""Synthetic scenes for the dense tasks: several drawn shapes per image, each with its class, its tight box and
its pixels, so one renderer serves detection (boxes) and segmentation (per-pixel class masks).

Every image is a pure function of ``(seed, split, index, size)``, like the classification shapes it reuses
(``amaas_export.data.synthetic``: the same drawers, colours, gradient backgrounds and clutter specks). What
makes it a detection problem and not a lookup: one to four objects, each 15-45% of the side, rotated, anywhere
(shapes never overlap, but their boxes may), each with its own colour against a busy background; distractor
specks; sensor noise of a random strength. Boxes are ``[x0, y0, x1, y1]`` in pixel-edge coordinates: the tight
extent of the object's pixels (drawn on a supersampled canvas, so to a fraction of a pixel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from amaas_export.data import synthetic

# Index 0 is "nothing here", as torchvision's detection and segmentation models count classes.
LABELS: tuple[str, ...] = ("background", "circle", "triangle", "square", "star", "cross")
MAX_OBJECTS = 4
_SPLITS = {"train": 0, "test": 1, "calibration": 2}


@dataclass(frozen=True)
class Scene:
    """One rendered image and what is in it.

    Attributes:
        image: uint8 (size, size, 3) RGB.
        boxes: float32 (K, 4) xyxy in pixels.
        labels: int64 (K,) indices into ``LABELS`` (never 0).
        mask: uint8 (size, size) class per pixel (0 = background).
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    mask: np.ndarray


def scene(index: int, *, seed: int = 0, split: str = "train", size: int = 128) -> Scene:
    """The ``index``-th scene of a split."""
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    return render(np.random.default_rng((seed, 100 + _SPLITS[split], index)), size)


def scenes(count: int, *, seed: int = 0, split: str = "train", size: int = 128) -> list[Scene]:
    return [scene(i, seed=seed, split=split, size=size) for i in range(count)]


def render(rng: np.random.Generator, size: int) -> Scene:
    """Draws one scene with every nuisance drawn from ``rng``."""
    supersample = max(2, 256 // size)
    big = size * supersample
    background, _ = synthetic._colours(rng)
    canvas = synthetic._background(rng, big, background)
    instances = Image.new("L", (big, big), 0)
    placed: list[tuple[float, float, float]] = []
    kinds: list[int] = []
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        kind = int(rng.integers(1, len(LABELS)))
        for _attempt in range(20):
            radius = float(rng.uniform(0.075, 0.225)) * big
            cx, cy = (float(v) for v in rng.uniform(radius, big - radius, 2))
            if all(math.hypot(cx - x, cy - y) > radius + r + 2 * supersample for x, y, r in placed):
                break
        else:
            continue
        placed.append((cx, cy, radius))
        kinds.append(kind)
        colour = _contrasting(rng, background)
        shape = Image.new("L", (big, big), 0)
        synthetic._SHAPES[LABELS[kind]](ImageDraw.Draw(shape), (cx, cy), radius, float(rng.uniform(0, 2 * math.pi)))
        canvas.paste(Image.new("RGB", (big, big), colour), (0, 0), shape)
        instances.paste(len(kinds), (0, 0), shape)
    synthetic._specks(rng, canvas, big)

    pixels = np.asarray(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    pixels += rng.normal(0.0, rng.uniform(0.0, 12.0), pixels.shape)
    image = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    ids = np.asarray(instances)
    centres = ids[supersample // 2 :: supersample, supersample // 2 :: supersample]
    mask = np.zeros((size, size), np.uint8)
    boxes, labels = [], []
    for ident, kind in enumerate(kinds, start=1):
        ys, xs = np.nonzero(ids == ident)
        if len(xs) == 0:
            continue
        mask[centres == ident] = kind
        boxes.append(
            [xs.min() / supersample, ys.min() / supersample, (xs.max() + 1) / supersample, (ys.max() + 1) / supersample]
        )
        labels.append(kind)
    return Scene(
        image=image,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        labels=np.asarray(labels, np.int64),
        mask=mask,
    )


def _contrasting(rng: np.random.Generator, background: tuple[int, int, int]) -> tuple[int, int, int]:
    """A colour at least a minimum distance from the background (objects differ from each other freely)."""
    while True:
        colour = rng.integers(0, 256, 3)
        if np.abs(colour - np.array(background)).sum() >= 150:
            return synthetic._rgb(colour)
