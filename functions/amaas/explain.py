"""Occlusion sensitivity: which parts of the image the prediction depends on.

The image is cut into a grid; each cell in turn is painted with the training mean colour (which the model
sees as zero after normalisation) and the model is re-run. A cell's score is how much the target class's
probability drops without it. All grid x grid occluded copies run as a few batched ONNX Runtime calls, so
the cost is bounded by the grid size (at most 16 x 16 = 256 images), whatever the request.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from amaas.model import ImageClassifier
from amaas.postprocessing import softmax

BATCH = 32
DISPLAY_SIDE = 224


@dataclass(frozen=True)
class Explanation:
    """Attributes:
    label, index, score: The explained class and its probability on the unoccluded image.
    grid: grid_size x grid_size probability drops, row-major from the top-left cell.
    heatmap_png: The grid over the (preprocessed) input: red where hiding the cell lowers the
        class's probability, blue where it raises it.
    runs: Images run through the model (grid cells + the original).
    """

    label: str
    index: int
    score: float
    grid: list[list[float]]
    grid_size: int
    heatmap_png: bytes
    runs: int
    explain_ms: float


def occlusion(classifier: ImageClassifier, image: bytes, *, grid: int, target: int | None = None) -> Explanation:
    """Explains the top class (or ``target``) of one encoded image."""
    started = time.perf_counter()
    manifest = classifier.manifest
    pixels = classifier.pixels(image)
    side = pixels.shape[0]
    cell = math.ceil(side / grid)
    fill = np.round(np.asarray(manifest.preprocessing.mean) * 255).astype(np.uint8)

    batch = np.repeat(pixels[None], grid * grid + 1, axis=0)
    for k in range(grid * grid):
        row, col = divmod(k, grid)
        batch[k + 1, row * cell : (row + 1) * cell, col * cell : (col + 1) * cell] = fill
    probabilities = np.concatenate(
        [softmax(classifier.predict_pixels(batch[i : i + BATCH])) for i in range(0, len(batch), BATCH)]
    )
    index = int(np.argmax(probabilities[0])) if target is None else target
    base = float(probabilities[0, index])
    drops = (base - probabilities[1:, index]).reshape(grid, grid)
    return Explanation(
        label=manifest.labels[index],
        index=index,
        score=base,
        grid=[[round(float(v), 5) for v in row] for row in drops],
        grid_size=grid,
        heatmap_png=heatmap(pixels, drops),
        runs=len(batch),
        explain_ms=(time.perf_counter() - started) * 1000,
    )


def heatmap(pixels: np.ndarray, drops: np.ndarray) -> bytes:
    """The drops as a translucent red/blue overlay on the image, as PNG, at least 224 px wide."""
    side = max(pixels.shape[0], DISPLAY_SIDE)
    base = Image.fromarray(pixels).resize((side, side), Image.Resampling.BILINEAR).convert("RGB")
    peak = float(np.abs(drops).max())
    strength = drops / peak if peak > 0 else np.zeros_like(drops)
    cells = Image.fromarray(((strength + 1) * 127.5).astype(np.uint8), mode="L").resize(
        (side, side), Image.Resampling.BILINEAR
    )
    s = np.asarray(cells, dtype=np.float32) / 127.5 - 1.0  # back to -1..1, now smooth
    colour = np.zeros((side, side, 3), dtype=np.float32)
    colour[..., 0] = np.clip(s, 0, 1) * 255  # supports the class: red
    colour[..., 2] = np.clip(-s, 0, 1) * 255  # works against it: blue
    alpha = (np.abs(s) * 0.6)[..., None]
    blended = np.asarray(base, dtype=np.float32) * (1 - alpha) + colour * alpha
    buffer = io.BytesIO()
    Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8)).save(buffer, "PNG", optimize=False)
    return buffer.getvalue()
