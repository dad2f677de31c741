"""The built-in demo dataset: ten classes of drawn shapes, by default in CIFAR-10 geometry (32x32 RGB).

Every image is a pure function of ``(seed, split, index)``, so the dataset is identical on every machine and
any single image can be regenerated on its own (the demo and the test events use that). Shapes are drawn on
a supersampled canvas (4x at 32 px) and downsampled, which gives anti-aliased edges like a real photo; other
sizes (``size=224`` for ImageNet-shaped models) are drawn natively, not upscaled.

What makes it non-trivial: random rotation (so square vs. bar vs. cross is about proportions, not
alignment), size from small to large, position, foreground/background colours with only a minimum contrast,
gradient backgrounds, distractor specks and Gaussian sensor noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

LABELS: tuple[str, ...] = (
    "circle",
    "ring",
    "triangle",
    "square",
    "star",
    "cross",
    "crescent",
    "arrow",
    "heart",
    "bar",
)
IMAGE_SIZE = 32
_SPLITS = {"train": 0, "test": 1}

Point = tuple[float, float]


@dataclass(frozen=True)
class SyntheticShapes:
    """A split of the synthetic dataset, fully materialised.

    Attributes:
        images: uint8 array of shape (N, 32, 32, 3), RGB, HWC.
        labels: int64 array of shape (N,), indices into ``LABELS``.
    """

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def generate(count: int, *, seed: int = 0, split: str = "train", size: int = IMAGE_SIZE) -> SyntheticShapes:
    """Renders ``count`` size x size images of one split; classes are balanced (label = index mod 10)."""
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    labels = np.arange(count, dtype=np.int64) % len(LABELS)
    for index in range(count):
        images[index] = render(int(labels[index]), np.random.default_rng((seed, _SPLITS[split], index)), size)
    return SyntheticShapes(images=images, labels=labels)


def sample(label: str, *, seed: int = 0, variant: int = 0, size: int = IMAGE_SIZE) -> Image.Image:
    """One held-out-style image of a named class, for demos and request examples."""
    rng = np.random.default_rng((seed, 2, LABELS.index(label), variant))
    return Image.fromarray(render(LABELS.index(label), rng, size))


def render(label: int, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """Draws one size x size image of class ``label`` with every nuisance factor drawn from ``rng``."""
    out_size = size
    supersample = max(2, 128 // size)
    size = out_size * supersample
    background, foreground = _colours(rng)
    canvas = _background(rng, size, background)

    radius = rng.uniform(0.24, 0.44) * size
    margin = radius * 0.85
    centre = (rng.uniform(margin, size - margin), rng.uniform(margin, size - margin))
    angle = rng.uniform(0.0, 2.0 * math.pi)

    mask = Image.new("L", (size, size), 0)
    _SHAPES[LABELS[label]](ImageDraw.Draw(mask), centre, radius, angle)
    canvas.paste(Image.new("RGB", (size, size), foreground), (0, 0), mask)
    _specks(rng, canvas, size)

    small = canvas.resize((out_size, out_size), Image.Resampling.BOX)
    pixels = np.asarray(small, dtype=np.float32)
    pixels += rng.normal(0.0, rng.uniform(0.0, 14.0), pixels.shape)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _colours(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """A background and a foreground colour at least a minimum distance apart."""
    while True:
        background = rng.integers(0, 256, 3)
        foreground = rng.integers(0, 256, 3)
        if np.abs(background - foreground).sum() >= 150:
            return _rgb(background), _rgb(foreground)


def _rgb(values: np.ndarray) -> tuple[int, int, int]:
    return int(values[0]), int(values[1]), int(values[2])


def _background(rng: np.random.Generator, size: int, colour: tuple[int, int, int]) -> Image.Image:
    """Solid colour, or a linear gradient towards a nearby colour in a random direction."""
    if rng.random() < 0.5:
        return Image.new("RGB", (size, size), colour)
    other = np.clip(np.array(colour) + rng.integers(-60, 61, 3), 0, 255)
    direction = rng.uniform(0.0, 2.0 * math.pi)
    ramp = np.linspace(-1.0, 1.0, size)
    xs, ys = np.meshgrid(ramp, ramp)
    weight = ((xs * math.cos(direction) + ys * math.sin(direction)) / math.sqrt(2) + 1.0) / 2.0
    pixels = (1.0 - weight[..., None]) * np.array(colour) + weight[..., None] * other
    return Image.fromarray(pixels.astype(np.uint8))


def _specks(rng: np.random.Generator, canvas: Image.Image, size: int) -> None:
    """Zero to three small random dots: clutter the model must learn to ignore."""
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(0, 4))):
        x, y = rng.uniform(0, size, 2)
        r = rng.uniform(1.5, 4.0) * size / (2 * IMAGE_SIZE)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=_rgb(rng.integers(0, 256, 3)))


def _polygon(centre: Point, points: list[Point], radius: float, angle: float) -> list[Point]:
    """Scales unit-radius ``points`` by ``radius``, rotates by ``angle`` and moves them to ``centre``."""
    cos, sin = math.cos(angle), math.sin(angle)
    cx, cy = centre
    return [(cx + radius * (x * cos - y * sin), cy + radius * (x * sin + y * cos)) for x, y in points]


def _regular(n: int, phase: float = 0.0) -> list[Point]:
    return [(math.cos(phase + 2 * math.pi * k / n), math.sin(phase + 2 * math.pi * k / n)) for k in range(n)]


def _disc(draw: ImageDraw.ImageDraw, centre: Point, radius: float, fill: int) -> None:
    cx, cy = centre
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)


def _circle(draw: ImageDraw.ImageDraw, centre: Point, radius: float, angle: float) -> None:
    _disc(draw, centre, radius * 0.9, 255)


def _ring(draw: ImageDraw.ImageDraw, centre: Point, radius: float, angle: float) -> None:
    _disc(draw, centre, radius * 0.9, 255)
    _disc(draw, centre, radius * 0.5, 0)


def _triangle(draw: ImageDraw.ImageDraw, centre: Point, radius: float, angle: float) -> None:
    draw.polygon(_polygon(centre, _regular(3), radius, angle), fill=255)


def _square(draw: ImageDraw.ImageDraw, centre: Point, radius: float, angle: float) -> None:
    draw.polygon(_polygon(centre, _regular(4), radius * 0.95, angle), fill=255)


def _star(draw: ImageDraw.ImageDraw, centre: Point, radius: float, angle: float) -> None:
    outer, inner = _regular(5), _regular(5, math.pi / 5)
    points = [p for pair in zip(outer, inner, strict=True) for p in (pair[0], (pair[1][0] * 0.42, pair[1][1] * 0.42))]
    draw.polygon(_polygon(centre, points, radius, angle), fill=255)


def _cross(draw: ImageDraw.ImageDraw, centre: Point, radius: float, angle: float) -> None:
    w = 0.3
    arm = [
        (1, -w),
        (1, w),
        (w, w),
        (w, 1),
        (-w, 1),
        (-w, w),
        (-1, w),
        (-1, -w),
        (-w, -w),
        (-w, -1),
        (w, -1),
        (w, -w),
    ]
    draw.polygon(_polygon(centre, [(float(x), float(y)) for x, y in arm], radius * 0.95, angle), fill=255)


def _crescent(draw: ImageDraw.ImageDraw, centre: Point, radius: float, angle: float) -> None:
    _disc(draw, centre, radius * 0.9, 255)
    offset = radius * 0.45
    bite = (centre[0] + offset * math.cos(angle), centre[1] + offset * math.sin(angle))
    _disc(draw, bite, radius * 0.75, 0)


def _arrow(draw: ImageDraw.ImageDraw, centre: Point, radius: float, angle: float) -> None:
    shape = [(-1.0, -0.18), (0.2, -0.18), (0.2, -0.55), (1.0, 0.0), (0.2, 0.55), (0.2, 0.18), (-1.0, 0.18)]
    draw.polygon(_polygon(centre, shape, radius, angle), fill=255)


def _heart(draw: ImageDraw.ImageDraw, centre: Point, radius: float, angle: float) -> None:
    ts = np.linspace(0, 2 * math.pi, 64, endpoint=False)
    xs = 16 * np.sin(ts) ** 3 / 17
    ys = -(13 * np.cos(ts) - 5 * np.cos(2 * ts) - 2 * np.cos(3 * ts) - np.cos(4 * ts)) / 17 + 0.1
    draw.polygon(_polygon(centre, list(zip(xs.tolist(), ys.tolist(), strict=True)), radius, angle), fill=255)


def _bar(draw: ImageDraw.ImageDraw, centre: Point, radius: float, angle: float) -> None:
    shape = [(-1.0, -0.22), (1.0, -0.22), (1.0, 0.22), (-1.0, 0.22)]
    draw.polygon(_polygon(centre, shape, radius, angle), fill=255)


_SHAPES: dict[str, Callable[[ImageDraw.ImageDraw, Point, float, float], None]] = {
    "circle": _circle,
    "ring": _ring,
    "triangle": _triangle,
    "square": _square,
    "star": _star,
    "cross": _cross,
    "crescent": _crescent,
    "arrow": _arrow,
    "heart": _heart,
    "bar": _bar,
}
