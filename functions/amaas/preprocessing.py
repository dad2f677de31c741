"""Image bytes to model input, defined once and used by export (calibration, evaluation) and serving alike.

Numpy and Pillow only, so it runs in the Lambda runtime and tests without onnxruntime. The geometry matches
torchvision's eval transform for PIL images (``Resize(resize)`` on the shorter side, then ``CenterCrop(crop)``),
so pretrained weights see what they were trained on.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from amaas.errors import InvalidImageError, PayloadTooLargeError
from amaas.manifest import Preprocessing, TensorSpec

# The decoders we let near untrusted bytes; Pillow knows dozens more, each one more attack surface.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")

_RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


def decode(data: bytes, *, max_pixels: int, target: int | None = None) -> Image.Image:
    """Decodes one encoded image, refusing oversized ones before their pixels are decompressed.

    Args:
        data: The encoded bytes (JPEG, PNG, WebP, GIF or BMP; for animations the first frame is used).
        max_pixels: Largest width x height accepted, checked from the header before decoding.
        target: The shorter side the image will be resized to. A JPEG much larger than that is decoded
            at a reduced scale (libjpeg's DCT scaling: 1/2, 1/4, 1/8) that still leaves at least twice
            ``target``, which the antialiased resize then brings down; the pixels the model sees barely
            change (tests/functional/test_image_inputs.py) while decoding a 12 MP photo gets several times faster.

    Returns:
        The decoded image in RGB, with its EXIF orientation applied.

    Raises:
        InvalidImageError: Not an image in a supported format, or truncated/corrupt.
        PayloadTooLargeError: More pixels than ``max_pixels``.
    """
    if not data:
        raise InvalidImageError("the request carried no image bytes")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
        width, height = image.size
        if width * height > max_pixels:
            raise PayloadTooLargeError(
                f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
            )
        if target is not None and image.format == "JPEG" and min(width, height) >= 4 * target:
            scale = 2 * target / min(width, height)
            image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        image.load()
        return to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLargeError(f"image has more pixels than the limit of {max_pixels}") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImageError(f"not a decodable image; supported formats are {', '.join(FORMATS)}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImageError("the image is truncated or corrupt and could not be decoded") from exc


def to_rgb(image: Image.Image) -> Image.Image:
    """Converts any Pillow mode to 8-bit RGB the way a viewer would show it.

    EXIF orientation is applied; transparency is composited over white (a transparent PNG shows as on a
    white page, not as whatever colour hides under alpha 0); 16-bit greyscale is scaled, not clipped.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        pixels = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 255.0
        image = Image.fromarray(np.clip(np.round(pixels * (255.0 / peak)), 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" or image.mode in ("LA", "PA", "RGBA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def resize_and_crop(image: Image.Image, prep: Preprocessing) -> np.ndarray:
    """Shorter side to ``prep.resize``, centre crop ``prep.crop``; returns uint8 HWC RGB pixels."""
    width, height = image.size
    short, long = min(width, height), max(width, height)
    if short != prep.resize:
        # torchvision truncates the long side (int, not round); matching it keeps pretrained weights exact
        new_long = int(prep.resize * long / short)
        size = (prep.resize, new_long) if width <= height else (new_long, prep.resize)
        image = image.resize(size, _RESAMPLING[prep.interpolation])
        width, height = image.size
    left = round((width - prep.crop) / 2.0)
    top = round((height - prep.crop) / 2.0)
    if (left, top, width, height) != (0, 0, prep.crop, prep.crop):
        image = image.crop((left, top, left + prep.crop, top + prep.crop))
    return np.asarray(image, dtype=np.uint8)


def normalize(pixels: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """uint8 NHWC RGB pixels to the float32 NCHW tensor the model takes.

    Args:
        pixels: Array of shape (N, H, W, 3), dtype uint8, RGB.
        prep: The manifest's preprocessing.

    Returns:
        Contiguous float32 array of shape (N, 3, H, W).
    """
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"expected uint8 pixels of shape (N, H, W, 3), got {pixels.shape}")
    if prep.channel_order == "BGR":
        pixels = pixels[..., ::-1]
    scale = np.float32(1.0 / 255.0)
    mean = np.asarray(prep.mean, dtype=np.float32)
    inv_std = np.float32(1.0) / np.asarray(prep.std, dtype=np.float32)
    tensor = (pixels.astype(np.float32) * scale - mean) * inv_std
    return np.ascontiguousarray(tensor.transpose(0, 3, 1, 2))


def model_input(pixels: np.ndarray, prep: Preprocessing, spec: TensorSpec) -> np.ndarray:
    """uint8 NHWC RGB pixels to what the model's input takes.

    A uint8 input means the export folded scaling and normalisation into the graph: the pixels go in as
    they are. A float input gets ``normalize`` here, transposed when the model wants NHWC.
    """
    if spec.dtype == "uint8":
        return np.ascontiguousarray(pixels)
    tensor = normalize(pixels, prep)
    if spec.layout == "NHWC":
        return np.ascontiguousarray(tensor.transpose(0, 2, 3, 1))
    return tensor


def prepare(images: Sequence[Image.Image], prep: Preprocessing, spec: TensorSpec) -> np.ndarray:
    """Decoded RGB images to one input batch for a model with input ``spec``."""
    return model_input(np.stack([resize_and_crop(image, prep) for image in images]), prep, spec)
