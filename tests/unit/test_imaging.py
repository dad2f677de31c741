"""Bounded decoding (amaas.artifact.imaging): every format's structure is checked before decoding, the memory a decode
takes is estimated from the header and capped, and the model's crop is cut from the image without ever
resizing or converting the image whole."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from amaas.artifact.imaging import Limits, decode_pixels, to_model
from amaas.artifact.imaging.containers import MAX_JPEG_SCANS, inspect
from amaas.artifact.imaging.resample import TRANSPOSES
from amaas.artifact.manifest import Preprocessing
from amaas.errors import AmaasError, InvalidImageError, PayloadTooLargeError
from amaas.settings import Settings, decode_memory_for

PREP = Preprocessing(resize=256, crop=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
MB = 1 << 20


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png(width: int, height: int, *, colour: int = 2, depth: int = 8, extra: bytes = b"") -> bytes:
    """A valid PNG of flat rows, tiny on disk whatever its size (the shape of a decompression bomb)."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    row = b"\0" + b"\x80" * max(1, width * channels * depth // 8)
    data = zlib.compress(row * height, 9)
    palette = chunk(b"PLTE", b"\0\0\0\xff\xff\xff") + chunk(b"tRNS", b"\0") if colour == 3 else b""
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + extra + palette + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def progressive_jpeg(width: int, height: int, *, repeat_last_scan: int = 0) -> bytes:
    data = encode(Image.new("RGB", (width, height), (120, 40, 200)), "JPEG", progressive=True)
    last, end = data.rfind(b"\xff\xda"), data.rfind(b"\xff\xd9")
    return data[:end] + data[last:end] * repeat_last_scan + data[end:]


def timed(function: object, *args: object) -> tuple[object, float]:
    started = time.process_time()
    try:
        result = function(*args)  # type: ignore[operator]
    except AmaasError as exc:
        result = exc
    return result, time.process_time() - started


@pytest.mark.parametrize(("width", "height"), [(1, 200_000), (200_000, 1), (6, 200_000), (100_000, 40)])
def test_absurd_aspect_ratios_are_refused_from_the_header(width: int, height: int) -> None:
    # GIVEN a strip a few hundred bytes long that a resize of the shorter side would blow up 200,000 times
    bomb = png(width, height)

    # WHEN it is decoded for the model THEN it is refused at once, naming the limit a client can act on
    outcome, cpu = timed(decode_pixels, bomb, PREP, Limits())
    assert isinstance(outcome, InvalidImageError) and outcome.status == 400
    assert "aspect ratio over 32:1" in outcome.message
    assert cpu < 0.05


def test_long_but_plausible_panoramas_are_still_classified() -> None:
    panorama = encode(Image.new("RGB", (3200, 200), (10, 200, 30)), "PNG")

    pixels = decode_pixels(panorama, PREP, Limits())

    assert pixels.shape == (224, 224, 3) and tuple(pixels[100, 100]) == (10, 200, 30)


def test_a_jpeg_repeating_its_last_scan_is_refused_before_decoding() -> None:
    # GIVEN a 9 MP progressive JPEG whose last scan is repeated 600 times (at 36 MP, 13.6 s of libjpeg before
    # this check)
    bomb = progressive_jpeg(3000, 3000, repeat_last_scan=600)

    outcome, cpu = timed(decode_pixels, bomb, PREP, Limits())

    assert isinstance(outcome, PayloadTooLargeError) and f"more than {MAX_JPEG_SCANS} scans" in outcome.message
    assert cpu < 0.2


def test_a_few_extra_refinement_passes_are_refused_by_the_work_they_add() -> None:
    # 20 repeats stay under the scan count but decode each coefficient ~10 times
    outcome, _ = timed(decode_pixels, progressive_jpeg(2000, 2000, repeat_last_scan=20), PREP, Limits())

    assert isinstance(outcome, PayloadTooLargeError) and "decode each coefficient" in outcome.message


def test_an_ordinary_progressive_jpeg_decodes() -> None:
    assert decode_pixels(progressive_jpeg(1200, 900), PREP, Limits()).shape == (224, 224, 3)


@pytest.mark.parametrize(
    ("name", "data", "error"),
    [
        ("jpeg flooded with comments", b"\xff\xd8" + b"\xff\xfe\x00\x02" * 5000 + b"\xff\xd9", PayloadTooLargeError),
        ("png flooded with chunks", png(8, 8, extra=chunk(b"tEXt", b"k\0v") * 2000), PayloadTooLargeError),
        (
            "gif flooded with extension blocks",
            b"GIF89a\x08\x00\x08\x00\x00\x00\x00" + b"\x21\xfe" + b"\x01x" * 5000 + b"\x00",
            PayloadTooLargeError,
        ),
        ("lossless jpeg", b"\xff\xd8\xff\xc3\x00\x0b\x08\x00\x08\x00\x08\x01\x01\x11\x00\xff\xd9", InvalidImageError),
        ("12-bit jpeg", b"\xff\xd8\xff\xc1\x00\x0b\x0c\x00\x08\x00\x08\x01\x01\x11\x00\xff\xd9", InvalidImageError),
        ("bmp with embedded png", b"BM" + b"\0" * 12 + struct.pack("<IiiHHI", 40, 8, 8, 1, 24, 5), InvalidImageError),
        ("tiff", encode(Image.new("RGB", (8, 8)), "TIFF"), InvalidImageError),
    ],
)
def test_structures_no_camera_writes_are_refused_before_any_decoder_runs(
    name: str, data: bytes, error: type[AmaasError]
) -> None:
    outcome, cpu = timed(decode_pixels, data, PREP, Limits())

    assert type(outcome) is error, (name, outcome)
    assert cpu < 0.1


def test_run_length_encoded_bmps_are_limited_because_pillow_decodes_them_in_python() -> None:
    rle = b"BM" + b"\0" * 12 + struct.pack("<IiiHHI", 40, 4000, 4000, 1, 8, 1)

    outcome, _ = timed(decode_pixels, rle, PREP, Limits())

    assert isinstance(outcome, PayloadTooLargeError) and "send it as PNG or JPEG" in outcome.message


def test_the_memory_a_decode_takes_is_estimated_per_format_and_capped() -> None:
    # GIVEN 4 MP images whose decoders need different memory per pixel: 16-bit grey 2 B, RGB 4 B (Pillow pads
    # to RGBX), WebP 16 B (libwebp's canvas and Pillow's two copies), a progressive JPEG 4 B plus 3 B of
    # coefficients for 4:2:0 (kept at full size whatever the output scale)
    grey16, rgb = png(2000, 2000, colour=0, depth=16), png(2000, 2000)
    webp = encode(Image.new("RGB", (2000, 2000), (1, 2, 3)), "WEBP")
    budget = Limits(memory_bytes=12 * MB)

    # THEN under a 12 MB budget only the 16-bit image (8 MB) decodes
    assert decode_pixels(grey16, PREP, budget).shape == (224, 224, 3)
    for data, estimate in ((rgb, 16), (webp, 62)):
        outcome, _ = timed(decode_pixels, data, PREP, budget)
        assert isinstance(outcome, PayloadTooLargeError)
        assert f"would take about {estimate} MB; this server allows 12 MB per image" in outcome.message
    outcome, _ = timed(decode_pixels, progressive_jpeg(2000, 2000), PREP, budget)
    assert isinstance(outcome, PayloadTooLargeError)


def test_the_decode_budget_follows_the_functions_memory() -> None:
    assert [decode_memory_for(mb) for mb in (None, 512, 768, 1024, 3008)] == [224, 32, 128, 224, 224]
    assert Settings.from_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "768"}).decode_limits.memory_bytes == 128 * MB
    assert (
        Settings.from_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "768", "AMAAS_DECODE_MEMORY_MB": "64"}).decode_memory_mb
        == 64
    )


def test_headers_that_disagree_with_the_decoder_are_invalid() -> None:
    # a GIF whose first frame overhangs its logical screen: Pillow grows the canvas, and the walk sizes it so
    image = encode(Image.new("P", (8, 8)), "GIF")
    screen = image[:6] + struct.pack("<HH", 4, 4) + image[10:]

    assert inspect(screen).width == 8
    assert decode_pixels(screen, PREP, Limits()).shape == (224, 224, 3)


def reference(image: Image.Image, prep: Preprocessing, orientation: int) -> np.ndarray:
    """Resize-then-crop of the upright image, as torchvision's eval transform does it."""
    if orientation in TRANSPOSES:
        image = image.transpose(TRANSPOSES[orientation])
    width, height = image.size
    short, long = min(width, height), max(width, height)
    resample = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR}[prep.interpolation]
    if short != prep.resize:
        new_long = int(prep.resize * long / short)
        image = image.resize((prep.resize, new_long) if width <= height else (new_long, prep.resize), resample)
        width, height = image.size
    left, top = round((width - prep.crop) / 2.0), round((height - prep.crop) / 2.0)
    return np.asarray(image.crop((left, top, left + prep.crop, top + prep.crop)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    width=st.integers(1, 400),
    height=st.integers(1, 400),
    resize=st.integers(2, 120),
    crop_fraction=st.floats(0.05, 1.0),
    orientation=st.integers(1, 8),
    interpolation=st.sampled_from(["nearest", "bilinear"]),
    seed=st.integers(0, 2**16),
)
def test_the_crop_is_what_resize_then_crop_of_the_upright_image_gives(
    width: int, height: int, resize: int, crop_fraction: float, orientation: int, interpolation: str, seed: int
) -> None:
    if max(width, height) > 32 * min(width, height) or min(width, height) >= 4 * resize:
        return  # refused, or reduced before resampling (an approximation, tested below)
    crop = max(1, round(resize * crop_fraction))
    prep = Preprocessing(resize=resize, crop=crop, mean=(0, 0, 0), std=(1, 1, 1), interpolation=interpolation)
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(noise)

    ours = to_model(image, prep, orientation).astype(np.int16)
    theirs = reference(image, prep, orientation).astype(np.int16)

    assert ours.shape == theirs.shape == (crop, crop, 3)
    # nearest picks exactly Pillow's pixels; bilinear differs by float32 box rounding only
    assert np.abs(ours - theirs).max() <= (0 if interpolation == "nearest" else 1)


def test_large_images_are_averaged_down_first_and_the_model_sees_nearly_the_same_pixels() -> None:
    # GIVEN a smooth 6 MP photo-like image in PNG (no DCT scaling to help), and its RGBA twin
    ys, xs = np.mgrid[0:2000, 0:3000]
    pixels = np.stack([xs / 16 % 256, ys / 12 % 256, (xs + ys) / 28 % 256], axis=-1).astype(np.uint8)
    image = Image.fromarray(pixels)
    rgba = image.convert("RGBA")

    fast = decode_pixels(encode(image, "PNG", compress_level=1), PREP, Limits()).astype(np.int16)
    exact = reference(image, PREP.__class__(**{**PREP.__dict__, "interpolation": "bilinear"}), 1).astype(np.int16)

    assert np.abs(fast - exact).mean() < 1.0
    np.testing.assert_array_equal(decode_pixels(encode(rgba, "PNG", compress_level=1), PREP, Limits()), fast)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "I;16", "CMYK", "1"])
def test_every_mode_reaches_the_model_as_rgb(mode: str) -> None:
    image = Image.new("RGB", (300, 200), (200, 30, 30)).convert(mode)
    fmt = {"CMYK": "JPEG", "I;16": "PNG"}.get(mode, "PNG")

    pixels = decode_pixels(encode(image, fmt), PREP, Limits())

    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
