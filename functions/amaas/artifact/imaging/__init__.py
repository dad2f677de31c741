"""Untrusted image bytes to the model's pixels, with work and memory bounded by what the model needs.

Order of defence, cheapest first (Pillow's own ``MAX_IMAGE_PIXELS`` guard is the model):

1. ``containers.inspect`` walks the container (markers, chunks, blocks) and refuses what no camera writes
   and what would make a decoder loop: too many JPEG scans or segments, PNG chunks, GIF extension blocks.
2. Dimensions from the header: the pixel limit, the aspect-ratio limit, and a memory estimate of the decode
   (Pillow's raster in its own mode, libjpeg's full-size coefficients for progressive JPEGs, libwebp's
   buffers) against ``Limits.memory_bytes``. All of this happens before a single pixel is decompressed.
3. A JPEG is decoded at the smallest DCT scale that still leaves twice the model's resolution.
4. ``resample.to_model`` cuts only the crop's region, converting and averaging it down band by band: no float
   copies, no full-size conversions, no resize of the whole image.

Every failure is an ``InvalidImageError`` (400) or a ``PayloadTooLargeError`` (413) whose message names the
limit, whatever the decoder raised.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from PIL import Image, ImageFile, PngImagePlugin

from amaas.artifact.imaging import containers
from amaas.artifact.imaging.resample import SWAPS, crop_geometry, to_model, upright_rgb
from amaas.artifact.manifest import Preprocessing
from amaas.errors import InvalidImageError, PayloadTooLargeError

__all__ = [
    "FORMATS",
    "Decoded",
    "Limits",
    "crop_geometry",
    "decode",
    "decode_pixels",
    "decode_sized",
    "draft",
    "orientation",
    "to_model",
    "upright_rgb",
]

FORMATS = containers.FORMATS
MB = 1 << 20

# Never decode a truncated image as if it were whole, and keep PNG text chunks (which serving ignores) small.
ImageFile.LOAD_TRUNCATED_IMAGES = False
PngImagePlugin.MAX_TEXT_MEMORY = 4 * MB
# Bytes per pixel of Pillow's raster for each mode: 1-byte modes, 16-bit greyscale, everything else 4 (RGB too).
_RASTER_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
# libwebp decodes into its own RGBA canvas, which Pillow copies twice more: 16 bytes per pixel in all (measured).
_WEBP_BYTES_PER_PIXEL = 16
# Pillow decodes RLE BMPs in Python: about 0.1 us of CPU per pixel.
MAX_RLE_PIXELS = 8_000_000
_T = TypeVar("_T")


@dataclass(frozen=True)
class Limits:
    """What one image may cost.

    Attributes:
        max_pixels: Largest width x height, read from the header.
        memory_bytes: Largest estimated memory for decoding one image (see ``decode_cost``).
        max_aspect_ratio: Longest side over shortest side; a centre crop of a 1 x 200,000 strip shows the model
            nothing, and such files exist only to make resizers allocate.
    """

    max_pixels: int = 40_000_000
    memory_bytes: int = 224 * MB
    max_aspect_ratio: float = 32.0


@dataclass(frozen=True)
class Decoded:
    """An image at the model's input geometry, and the size of the original it came from.

    Attributes:
        pixels: uint8 (crop, crop, 3) RGB.
        size: (width, height) of the original, upright (EXIF orientation applied): the frame dense answers
            (masks, boxes) are mapped back to.
    """

    pixels: np.ndarray
    size: tuple[int, int]


def decode_pixels(data: bytes, prep: Preprocessing, limits: Limits) -> np.ndarray:
    """One encoded image to uint8 (crop, crop, 3) RGB pixels at the model's input geometry.

    Raises:
        InvalidImageError: Not a supported, well-formed image, or an impossible shape.
        PayloadTooLargeError: Over a limit in ``limits``.
    """
    return decode_sized(data, prep, limits).pixels


def decode_sized(data: bytes, prep: Preprocessing, limits: Limits) -> Decoded:
    """As ``decode_pixels``, with the upright size of the original."""
    container = _check(data, limits)
    with _opened(data, container) as image:
        turn = orientation(image)
        width, height = container.width, container.height
        size = (height, width) if turn in SWAPS else (width, height)
        if container.format == "JPEG":
            draft(image, prep.resize)
        _check_memory(image, container, limits)
        _load(image)
        return Decoded(_converted(lambda: to_model(image, prep, turn)), size)


def decode(data: bytes, limits: Limits) -> Image.Image:
    """The whole image as 8-bit RGB, upright: for images the caller trusts to be small (export's golden
    samples, tests). Same checks as ``decode_pixels``; serving never holds a whole image like this.
    """
    container = _check(data, limits)
    with _opened(data, container) as image:
        _check_memory(image, container, limits)
        _load(image)
        return _converted(lambda: upright_rgb(image, orientation(image)))


def decode_cost(image: Image.Image, container: containers.Container) -> int:
    """Estimated peak bytes to decode ``image`` (opened, not loaded, after any draft): Pillow's raster plus
    what the format's decoder holds beside it."""
    pixels = image.size[0] * image.size[1]
    if container.format == "WEBP":
        return _WEBP_BYTES_PER_PIXEL * pixels
    return _RASTER_BYTES.get(image.mode, 4) * pixels + container.coefficient_bytes


def _check(data: bytes, limits: Limits) -> containers.Container:
    if not data:
        raise InvalidImageError("the request carried no image bytes")
    container = containers.inspect(data)
    width, height = container.width, container.height
    if width * height > limits.max_pixels:
        raise PayloadTooLargeError(
            f"image is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels} "
            "(the model needs far fewer: downscale it before sending)"
        )
    if max(width, height) > limits.max_aspect_ratio * min(width, height):
        raise InvalidImageError(
            f"image is {width}x{height}, an aspect ratio over {limits.max_aspect_ratio:g}:1, the most accepted; "
            "crop it to the region of interest"
        )
    if container.rle and width * height > MAX_RLE_PIXELS:
        raise PayloadTooLargeError(
            f"run-length-encoded BMP images are limited to {MAX_RLE_PIXELS} pixels (this one is {width}x{height}); "
            "send it as PNG or JPEG"
        )
    return container


class _opened:
    """``Image.open`` restricted to the container's own format, with every decoder failure made an
    ``InvalidImageError``: past the container checks, what Pillow raises on hostile bytes is the bytes' fault."""

    def __init__(self, data: bytes, container: containers.Container) -> None:
        self.data, self.container = data, container

    def __enter__(self) -> ImageFile.ImageFile:
        try:
            image = Image.open(io.BytesIO(self.data), formats=(self.container.format,))
        except Exception as exc:  # any decoder complaint about client bytes is a bad image
            raise _invalid(self.container) from exc
        self.image = image
        if image.size != (self.container.width, self.container.height):
            image.close()
            raise InvalidImageError(f"the {self.container.format} image's headers disagree about its size")
        assert isinstance(image, ImageFile.ImageFile)
        return image

    def __exit__(self, *_: object) -> None:
        self.image.close()


def _invalid(container: containers.Container) -> InvalidImageError:
    return InvalidImageError(f"the {container.format} image is truncated or corrupt and could not be decoded")


def draft(image: ImageFile.ImageFile, resize: int) -> tuple[int, int]:
    """Asks libjpeg for DCT scaling (1/2, 1/4, 1/8) down to no less than twice the shorter side the model's
    resize needs, before the JPEG ``image`` is loaded; returns the size it will decode at."""
    short = min(image.size)
    if short >= 4 * resize:
        scale = 2 * resize / short
        image.draft("RGB", (math.ceil(image.size[0] * scale), math.ceil(image.size[1] * scale)))
    return image.size


def _check_memory(image: ImageFile.ImageFile, container: containers.Container, limits: Limits) -> None:
    cost = decode_cost(image, container)
    if cost > limits.memory_bytes:
        width, height = container.width, container.height
        raise PayloadTooLargeError(
            f"decoding this {width}x{height} {container.format} image would take about {math.ceil(cost / MB)} MB; "
            f"this server allows {limits.memory_bytes // MB} MB per image: send fewer pixels "
            "(or, for JPEG, a baseline rather than progressive file)"
        )


def _load(image: ImageFile.ImageFile) -> None:
    try:
        image.load()
    except MemoryError:
        raise PayloadTooLargeError("the image could not be decoded within this server's memory") from None
    except Exception as exc:  # see _opened
        raise InvalidImageError("the image is truncated or corrupt and could not be decoded") from exc


def _converted(convert: Callable[[], _T]) -> _T:
    """Runs a conversion of decoded pixels: Pillow validates some things only when it converts (a tRNS chunk longer
    than the palette is "palette index out of range" then), and those are the bytes' fault too."""
    try:
        return convert()
    except MemoryError:
        raise PayloadTooLargeError("the image could not be converted within this server's memory") from None
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidImageError("the image's pixel data is inconsistent and could not be converted") from exc


def orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8), or 1 when there is none, it is malformed, or the EXIF block is oversized."""
    raw = image.info.get("exif")
    if not raw or len(raw) > containers.MAX_EXIF_BYTES:
        return 1
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block only loses its orientation
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1
