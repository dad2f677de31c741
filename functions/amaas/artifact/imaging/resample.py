"""A decoded image to the model's crop, touching only the pixels the crop needs and never copying the image whole.

The geometry is torchvision's eval transform (``Resize(resize)`` on the shorter side, then ``CenterCrop(crop)``),
computed as a box in source pixels and resampled straight from the source: no intermediate image the size of
the resized one (which for a 1 x 200,000 image is 200,000 times the crop). The work happens in two steps:

1. **The region.** The box plus the resampling filter's reach, cut from the decoded image in horizontal
   bands, each converted to 8-bit RGB or L (transparency composited over white, 16-bit scaled, CMYK
   converted) and, when the box is more than ``REDUCE_GAP`` times the crop, averaged down by an integer
   factor (Pillow's ``reduce``, as libjpeg's DCT scaling does for JPEGs). Only one band exists at a time.
2. **The crop.** EXIF orientation is applied to the small region, then Pillow resamples the box to crop x crop.
   For images that need no reduction this is resize-then-crop computed only where the crop is: bilinear
   matches it within one level; bicubic can differ by more at hard edges, because Pillow clips its overshoot
   between the horizontal and vertical passes and picks their order by the sizes involved.

``nearest`` picks source pixels by Pillow's own nearest-neighbour formula, gathered row by row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from amaas.artifact.manifest import Preprocessing

RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
# Half-width of each filter in output pixels (Pillow's own supports): how far a sample reaches into the source.
_SUPPORT = {"nearest": 0.5, "bilinear": 1.0, "bicubic": 2.0}
# Reduce by an integer factor while the box stays at least this many times the crop (Pillow's reducing_gap).
REDUCE_GAP = 2.0
BAND_BYTES = 4 << 20
# EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose does)
TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
SWAPS = {5, 6, 7, 8}
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class CropGeometry:
    """Where the model's crop lies in an upright image of ``width`` x ``height``.

    Attributes:
        box: The crop in source pixels (left, top, right, bottom), fractional.
        resized: The size torchvision's ``Resize`` would give the whole image.
        offset: The crop's top-left corner in that resized image.
    """

    box: Box
    resized: tuple[int, int]
    offset: tuple[int, int]


def crop_geometry(width: int, height: int, prep: Preprocessing) -> CropGeometry:
    """The centre crop of the resized image, as a box in the source; for ``stretch``, the whole image."""
    if prep.resize_mode == "stretch":
        return CropGeometry((0.0, 0.0, float(width), float(height)), (prep.crop, prep.crop), (0, 0))
    short, long = min(width, height), max(width, height)
    if short == prep.resize:
        resized = (width, height)
    else:
        # torchvision truncates the long side (int, not round); matching it keeps pretrained weights exact
        new_long = int(prep.resize * long / short)
        resized = (prep.resize, new_long) if width <= height else (new_long, prep.resize)
    left = round((resized[0] - prep.crop) / 2.0)
    top = round((resized[1] - prep.crop) / 2.0)
    sx, sy = width / resized[0], height / resized[1]
    box = (left * sx, top * sy, (left + prep.crop) * sx, (top + prep.crop) * sy)
    return CropGeometry(box, resized, (left, top))


def to_model(image: Image.Image, prep: Preprocessing, orientation: int = 1) -> np.ndarray:
    """The model's crop of a decoded image, as uint8 (crop, crop, 3) RGB.

    Args:
        image: Decoded (loaded) in any mode Pillow gives for the allowed formats.
        prep: The manifest's preprocessing (resize, crop, interpolation).
        orientation: The EXIF orientation (1-8); the crop is taken from the upright image.
    """
    raw_w, raw_h = image.size
    swap = orientation in SWAPS
    upright = (raw_h, raw_w) if swap else (raw_w, raw_h)
    geometry = crop_geometry(*upright, prep)
    if prep.interpolation == "nearest":
        return _nearest(image, geometry, orientation, upright, prep.crop)
    scale = max((geometry.box[2] - geometry.box[0]) / prep.crop, (geometry.box[3] - geometry.box[1]) / prep.crop)
    factor = max(
        1, int(min(geometry.box[2] - geometry.box[0], geometry.box[3] - geometry.box[1]) / (REDUCE_GAP * prep.crop))
    )
    reach = math.ceil(_SUPPORT[prep.interpolation] * max(scale, factor)) + factor + 1
    upright_region = _expand(geometry.box, reach, upright)
    region = _to_raw(upright_region, orientation, (raw_w, raw_h))
    region = _aligned(region, factor, (raw_w, raw_h))
    work = _reduced_rgb(image, region, factor)
    if orientation in TRANSPOSES:
        work = work.transpose(TRANSPOSES[orientation])
    # the region's upright top-left corner, now that its size may have been aligned to the factor
    corners = [
        _raw_to_upright(x, y, orientation, raw_w, raw_h) for x, y in ((region[0], region[1]), (region[2], region[3]))
    ]
    left, top = min(c[0] for c in corners), min(c[1] for c in corners)
    x0, y0, x1, y1 = geometry.box
    box = ((x0 - left) / factor, (y0 - top) / factor, (x1 - left) / factor, (y1 - top) / factor)
    if (box[2] - box[0], box[3] - box[1]) == (prep.crop, prep.crop) and all(v.is_integer() for v in box):
        out = work.crop(box)  # already at the model's scale
    else:
        out = work.resize((prep.crop, prep.crop), RESAMPLING[prep.interpolation], box=box)
    pixels = np.asarray(out, dtype=np.uint8)
    return np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels


def upright_rgb(image: Image.Image, orientation: int = 1) -> Image.Image:
    """The whole image as 8-bit RGB, upright. Full-size copies: only for images known to be small."""
    converted = _reduced_rgb(image, (0, 0, *image.size), 1)
    if orientation in TRANSPOSES:
        converted = converted.transpose(TRANSPOSES[orientation])
    return converted.convert("RGB")


def _expand(box: Box, reach: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    return (
        max(0, math.floor(box[0]) - reach),
        max(0, math.floor(box[1]) - reach),
        min(size[0], math.ceil(box[2]) + reach),
        min(size[1], math.ceil(box[3]) + reach),
    )


def _to_raw(region: tuple[int, int, int, int], orientation: int, raw: tuple[int, int]) -> tuple[int, int, int, int]:
    """An upright rectangle in the coordinates of the stored (un-rotated) image of size ``raw``."""
    x0, y0, x1, y1 = region
    w, h = raw
    corners = [_point_to_raw(x, y, orientation, w, h) for x, y in ((x0, y0), (x1, y1))]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    return min(xs), min(ys), max(xs), max(ys)


def _point_to_raw(x: int, y: int, orientation: int, w: int, h: int) -> tuple[int, int]:
    """Where an upright point (pixel edges, not centres) lies in the stored image."""
    return {
        1: (x, y),
        2: (w - x, y),
        3: (w - x, h - y),
        4: (x, h - y),
        5: (y, x),
        6: (y, h - x),
        7: (w - y, h - x),
        8: (w - y, x),
    }[orientation]


def _raw_to_upright(x: int, y: int, orientation: int, w: int, h: int) -> tuple[int, int]:
    """Where a point of the stored image of size ``w`` x ``h`` lies in the upright one (``_point_to_raw`` undone)."""
    return {
        1: (x, y),
        2: (w - x, y),
        3: (w - x, h - y),
        4: (x, h - y),
        5: (y, x),
        6: (h - y, x),
        7: (h - y, w - x),
        8: (y, w - x),
    }[orientation]


def _aligned(region: tuple[int, int, int, int], factor: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Grows the region so its sides are multiples of ``factor`` where the image allows, so every reduced pixel
    averages a full factor x factor block and keeps a uniform scale."""
    if factor == 1:
        return region
    x0, y0, x1, y1 = region
    x1 = min(size[0], x0 + -(-(x1 - x0) // factor) * factor)
    x0 = max(0, x1 - -(-(x1 - x0) // factor) * factor)
    y1 = min(size[1], y0 + -(-(y1 - y0) // factor) * factor)
    y0 = max(0, y1 - -(-(y1 - y0) // factor) * factor)
    return x0, y0, x1, y1


def _reduced_rgb(image: Image.Image, region: tuple[int, int, int, int], factor: int) -> Image.Image:
    """The region as RGB or L, averaged down by ``factor``, converted one band of rows at a time."""
    if image.mode in ("RGB", "L") and "transparency" not in image.info:
        if factor > 1:
            return image.reduce(factor, box=region)
        if region == (0, 0, *image.size):
            return image
        return image.crop(region)
    convert = _converter(image)
    x0, y0, x1, y1 = region
    rows = max(factor, BAND_BYTES // max(1, 4 * (x1 - x0)) // factor * factor)
    bands = []
    for top in range(y0, y1, rows):
        band = convert(image.crop((x0, top, x1, min(y1, top + rows))))
        bands.append(band.reduce(factor) if factor > 1 else band)
    mode = bands[0].mode
    width = bands[0].size[0]
    work = Image.new(mode, (width, sum(b.size[1] for b in bands)))
    top = 0
    for band in bands:
        work.paste(band, (0, top))
        top += band.size[1]
    return work


def _converter(image: Image.Image) -> Callable[[Image.Image], Image.Image]:
    """Per-band conversion to 8-bit RGB or L, as a viewer shows the image: transparency over white, 16-bit
    greyscale scaled (not clipped). A 32-bit ``I`` image is scaled by its whole-image peak, found once."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        brightest = image.getextrema()[1] if mode == "I" else 65535
        peak = 65535 if isinstance(brightest, (int, float)) and brightest > 255 else 255

        def scale(band: Image.Image) -> Image.Image:
            values = np.asarray(band).astype(np.int64)
            levels = (np.clip(values, 0, peak) * 255 + peak // 2) // peak
            return Image.fromarray(levels.astype(np.uint8), mode="L")

        return scale
    if mode in ("P", "PA", "LA", "RGBA", "La", "RGBa") or "transparency" in image.info:

        def over_white(band: Image.Image) -> Image.Image:
            rgba = band.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")

        return over_white
    if mode in ("L", "1"):
        return lambda band: band.convert("L")
    return lambda band: band.convert("RGB")


def _nearest(
    image: Image.Image, geometry: CropGeometry, orientation: int, upright: tuple[int, int], crop: int
) -> np.ndarray:
    """Nearest-neighbour crop: the source pixel Pillow's resize would pick for each output pixel
    (see ``nearest_indices``), gathered one source row at a time."""
    (left, top), (rw, rh) = geometry.offset, geometry.resized
    xs = nearest_indices(upright[0], rw, left, crop)
    ys = nearest_indices(upright[1], rh, top, crop)
    raw_w, raw_h = image.size
    swap = orientation in SWAPS
    # upright pixel (x, y) -> stored pixel; flips map index i to size - 1 - i
    flip_x = orientation in (2, 3, 7, 8)
    flip_y = orientation in (3, 4, 6, 7)
    cols_src, rows_src = (ys, xs) if swap else (xs, ys)
    cols = raw_w - 1 - cols_src if flip_x else cols_src
    rows = raw_h - 1 - rows_src if flip_y else rows_src
    convert = _converter(image) if image.mode not in ("RGB", "L") or "transparency" in image.info else None
    c0, c1 = int(cols.min()), int(cols.max()) + 1
    picked = {}
    for row in np.unique(rows):
        strip = image.crop((c0, int(row), c1, int(row) + 1))
        strip = convert(strip) if convert else strip
        picked[int(row)] = np.asarray(strip.convert("RGB"))[0, cols - c0]
    grid = np.stack([picked[int(r)] for r in rows])  # grid[i, j]: stored row rows[i], column cols[j]
    return np.ascontiguousarray(grid.transpose(1, 0, 2) if swap else grid)


def nearest_indices(source: int, resized: int, start: int, count: int) -> np.ndarray:
    """The source pixels Pillow's nearest-neighbour resize picks for output pixels ``start .. start+count-1``.

    Pillow walks the output adding the scale to a double at each step, so position i is that running sum, not
    ``(i + 0.5) * scale``; the two differ in the last bit often enough to pick another pixel where the position
    lands on an integer. ``np.add.accumulate`` sums in the same order.
    """
    step = source / resized
    positions = np.add.accumulate(np.concatenate(([step * 0.5], np.full(start + count - 1, step))))
    return positions[start : start + count].astype(np.int64)
