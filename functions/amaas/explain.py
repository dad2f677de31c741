"""Occlusion sensitivity: which parts of the image the prediction depends on.

The image is cut into a grid; each cell in turn is painted with the training mean colour (which the model
sees as zero after normalisation) and the model is re-run. A cell's score is how much the target class's
probability drops without it. All grid x grid occluded copies run as a few batched ONNX Runtime calls, so
the cost is bounded by the grid size (at most 16 x 16 = 256 images), whatever the request.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from amaas.artifact.model import Model
from amaas.artifact.tasks.classification import softmax
from amaas.errors import InvalidParameterError

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


def occlusion(model: Model, image: bytes, *, grid: int, target: int | None = None) -> Explanation:
    """Explains the top class (or ``target``) of one encoded image.

    Raises:
        InvalidParameterError: ``grid`` is larger than the model's input side, so some cells would be empty.
    """
    started = time.perf_counter()
    manifest = model.manifest
    pixels = model.pixels(image)
    height, width = pixels.shape[:2]
    if not 1 <= grid <= min(height, width):
        raise InvalidParameterError(
            f"grid {grid} does not fit this model's {width}x{height} input; the largest grid is {min(height, width)}"
        )
    rows, cols = cell_edges(height, grid), cell_edges(width, grid)
    prep = manifest.preprocessing
    fill = np.clip(np.round(np.asarray(prep.mean) / prep.scale), 0, 255).astype(np.uint8)  # the mean pixel

    batch = np.repeat(pixels[None], grid * grid + 1, axis=0)
    for k in range(grid * grid):
        row, col = divmod(k, grid)
        batch[k + 1, rows[row] : rows[row + 1], cols[col] : cols[col + 1]] = fill
    probabilities = np.concatenate(
        [softmax(model.predict_pixels(batch[i : i + BATCH])[0]) for i in range(0, len(batch), BATCH)]
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


def cell_edges(side: int, grid: int) -> np.ndarray:
    """The ``grid + 1`` pixel edges of ``grid`` cells evenly spread over ``side`` pixels: cells differ in size by
    at most one pixel and, for ``grid <= side``, each covers at least one (``ceil(side / grid)``-sized cells
    would leave the last ones empty, as 9 cells of 4 px do on 32 px)."""
    return np.round(np.linspace(0, side, grid + 1)).astype(int)


def heatmap(pixels: np.ndarray, drops: np.ndarray) -> bytes:
    """The drops as a translucent red/blue overlay on the image, as PNG, at least 224 px wide.

    Each cell is painted over exactly the pixels ``occlusion`` hid for it (the same ``cell_edges``), then
    scaled up with the image, so the overlay shows what was measured.
    """
    height, width = pixels.shape[:2]
    rows, cols = drops.shape
    peak = float(np.abs(drops).max())
    strength = drops / peak if peak > 0 else np.zeros_like(drops)
    per_pixel = np.repeat(
        np.repeat(strength, np.diff(cell_edges(height, rows)), axis=0), np.diff(cell_edges(width, cols)), axis=1
    )
    scale = max(DISPLAY_SIDE / min(height, width), 1.0)
    size = (round(width * scale), round(height * scale))
    base = Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR).convert("RGB")
    s = np.asarray(Image.fromarray(per_pixel.astype(np.float32)).resize(size, Image.Resampling.NEAREST))
    colour = np.zeros((size[1], size[0], 3), dtype=np.float32)
    colour[..., 0] = np.clip(s, 0, 1) * 255  # supports the class: red
    colour[..., 2] = np.clip(-s, 0, 1) * 255  # works against it: blue
    alpha = (np.abs(s) * 0.6)[..., None]
    blended = np.asarray(base, dtype=np.float32) * (1 - alpha) + colour * alpha
    buffer = io.BytesIO()
    Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8)).save(buffer, "PNG", optimize=False)
    return buffer.getvalue()
