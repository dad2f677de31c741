from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from amaas.artifact.imaging import Limits, to_model, upright_rgb
from amaas.artifact.imaging import decode as decode_image
from amaas.artifact.manifest import Preprocessing, TensorSpec
from amaas.artifact.preprocessing import model_input, normalize, prepare
from amaas.errors import InvalidImageError, PayloadTooLargeError

PREP = Preprocessing(resize=32, crop=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def decode(data: bytes, *, max_pixels: int) -> Image.Image:
    return decode_image(data, Limits(max_pixels=max_pixels))


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but that carries almost no pixel data (a bomb's shape)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP"])
def test_decodes_every_supported_format_upright_rgb(fmt: str) -> None:
    image = Image.new("RGB", (40, 30), (200, 30, 30))

    decoded = decode(encode(image, fmt), max_pixels=10_000)

    assert decoded.mode == "RGB"
    assert decoded.size == (40, 30)
    red, green, _ = decoded.getpixel((20, 15))
    assert red > 150 > green


def test_refuses_formats_outside_the_allow_list() -> None:
    tiff = encode(Image.new("RGB", (8, 8)), "TIFF")

    with pytest.raises(InvalidImageError, match="supported formats are JPEG, PNG"):
        decode(tiff, max_pixels=10_000)


NOISE = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", encode(NOISE, "PNG")[:2000], encode(NOISE, "JPEG")[:1500]],
    ids=["empty", "text", "truncated-png", "truncated-jpeg"],
)
def test_garbage_empty_and_truncated_bodies_are_invalid_images(data: bytes) -> None:
    with pytest.raises(InvalidImageError):
        decode(data, max_pixels=10_000)


@pytest.mark.parametrize(("width", "height"), [(10_000, 5_000), (50_000, 50_000)])
def test_oversized_image_is_refused_from_its_header_before_decoding(width: int, height: int) -> None:
    # GIVEN a PNG that claims 50 MP (or 2.5 GP, 7.5 GB decoded) in a few dozen bytes
    bomb = png_header_only(width, height)

    # WHEN it is decoded THEN it is refused as too large, not decompressed
    with pytest.raises(PayloadTooLargeError, match="limit"):
        decode(bomb, max_pixels=40_000_000)


def test_too_large_message_gives_the_dimensions() -> None:
    with pytest.raises(PayloadTooLargeError, match="10000x5000 = 50000000 pixels; the limit is 40000000 "):
        decode(png_header_only(10_000, 5_000), max_pixels=40_000_000)


def test_pixel_limit_is_configurable() -> None:
    with pytest.raises(PayloadTooLargeError):
        decode(encode(Image.new("RGB", (20, 20)), "PNG"), max_pixels=399)


def test_transparent_pixels_become_white_not_black() -> None:
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))

    assert upright_rgb(image).getpixel((0, 0)) == (255, 255, 255)


def test_greyscale_and_palette_images_convert() -> None:
    grey = upright_rgb(Image.new("L", (2, 2), 100))
    palette = upright_rgb(Image.new("RGB", (2, 2), (10, 200, 30)).convert("P"))

    assert grey.getpixel((0, 0)) == (100, 100, 100)
    assert palette.getpixel((0, 0))[1] > 150


def test_16_bit_greyscale_is_scaled_not_clipped() -> None:
    # GIVEN a 16-bit PNG spanning the range: clipping to 8 bits would turn all but black into white
    levels = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    data = encode(Image.fromarray(levels), "PNG")

    decoded = decode(data, max_pixels=10_000)

    assert [decoded.getpixel((x, 0)) for x in range(4)] == [(0, 0, 0), (1, 1, 1), (128, 128, 128), (255, 255, 255)]


def test_greyscale_with_alpha_is_composited_over_white() -> None:
    # GIVEN an LA PNG: black and opaque, black and fully transparent, black at half alpha
    pixels = np.array([[[0, 255], [0, 0], [0, 128]]], dtype=np.uint8)
    data = encode(Image.fromarray(pixels, mode="LA"), "PNG")

    decoded = decode(data, max_pixels=10_000)

    assert decoded.getpixel((0, 0)) == (0, 0, 0)
    assert decoded.getpixel((1, 0)) == (255, 255, 255)
    assert decoded.getpixel((2, 0)) == (127, 127, 127)


def test_palette_transparency_is_composited_over_white() -> None:
    # GIVEN a palette PNG whose index 0 (black) is marked transparent, as a GIF or a tRNS chunk marks it
    image = Image.new("P", (2, 1), 0)
    image.putpalette([0, 0, 0, 200, 30, 30] + [0, 0, 0] * 254)
    image.putpixel((1, 0), 1)
    data = encode(image, "PNG", transparency=0)

    decoded = decode(data, max_pixels=10_000)

    assert decoded.getpixel((0, 0)) == (255, 255, 255)
    assert decoded.getpixel((1, 0)) == (200, 30, 30)


def test_cmyk_jpeg_converts_upright_rgb() -> None:
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK

    decoded = decode(encode(cmyk, "JPEG"), max_pixels=10_000)

    red, green, blue = decoded.getpixel((4, 4))
    assert red > 200 and green < 60 and blue < 60


def test_exif_orientation_is_applied() -> None:
    # GIVEN a 40x20 JPEG whose EXIF says "rotate 90 degrees" (orientation 6)
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = image.getexif()
    exif[0x0112] = 6

    decoded = decode(encode(image, "JPEG", exif=exif.tobytes()), max_pixels=10_000)

    # THEN the decoded image is upright, 20x40
    assert decoded.size == (20, 40)


def test_resize_and_crop_match_torchvision_eval_transform() -> None:
    from torchvision import transforms

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (70, 110, 3), dtype=np.uint8))
    prep = Preprocessing(resize=40, crop=32, mean=(0, 0, 0), std=(1, 1, 1))
    reference = transforms.Compose([transforms.Resize(40), transforms.CenterCrop(32)])

    ours = to_model(image, prep)

    # Within one level: the crop is resampled straight from the source, and Pillow holds box coordinates as
    # float32, which moves a filter tap by a few millionths of a pixel against a resize of the whole image
    assert ours.shape == (32, 32, 3)
    difference = np.abs(ours.astype(np.int16) - np.asarray(reference(image)).astype(np.int16))
    assert difference.max() <= 1 and difference.mean() < 0.05


def test_normalize_scales_subtracts_divides_and_transposes() -> None:
    pixels = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    pixels[..., 0] = 255

    tensor = normalize(pixels, PREP)

    assert tensor.shape == (2, 3, 4, 4)
    assert tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[:, 0], (1.0 - 0.5) / 0.25)
    np.testing.assert_allclose(tensor[:, 1:], (0.0 - 0.5) / 0.25)


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_normalize_gives_exactly_the_reference_arithmetic(order: str) -> None:
    # GIVEN every pixel value in every channel
    pixels = np.random.default_rng(0).permutation(np.tile(np.arange(256, dtype=np.uint8), 48)).reshape(2, 32, 64, 3)
    prep = Preprocessing(resize=32, crop=32, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), channel_order=order)

    # WHEN normalised in place
    tensor = normalize(pixels, prep)

    # THEN bit for bit what (pixels * scale - mean) / std in float32 gives: the model's answers do not move
    ordered = pixels[..., ::-1] if order == "BGR" else pixels
    mean, std = np.asarray(prep.mean, np.float32), np.asarray(prep.std, np.float32)
    reference = (ordered.astype(np.float32) * np.float32(1 / 255) - mean) * (np.float32(1) / std)
    np.testing.assert_array_equal(tensor, reference.transpose(0, 3, 1, 2))
    assert tensor.flags.c_contiguous


def test_bgr_models_get_channels_reversed() -> None:
    pixels = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    pixels[..., 0] = 255
    bgr = Preprocessing(resize=2, crop=2, mean=(0, 0, 0), std=(1, 1, 1), channel_order="BGR")

    tensor = normalize(pixels, bgr)

    np.testing.assert_allclose(tensor[0, 2], 1.0)
    np.testing.assert_allclose(tensor[0, 0], 0.0)


def test_prepare_batches_images_of_different_sizes() -> None:
    images = [Image.new("RGB", (32, 32)), Image.new("RGB", (100, 60)), Image.new("RGB", (17, 90))]

    batch = prepare(images, PREP, TensorSpec("input", (-1, 3, 32, 32), "float32", "NCHW"))

    assert batch.shape == (3, 3, 32, 32)


def test_uint8_inputs_get_raw_pixels_and_nhwc_float_inputs_a_transpose() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)

    raw = model_input(pixels, PREP, TensorSpec("image", (-1, 4, 4, 3), "uint8", "NHWC"))
    nhwc = model_input(pixels, PREP, TensorSpec("x", (-1, 4, 4, 3), "float32", "NHWC"))

    np.testing.assert_array_equal(raw, pixels)
    np.testing.assert_allclose(nhwc, normalize(pixels, PREP).transpose(0, 2, 3, 1))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_model_input_follows_the_input_spec(layout: str, order: str) -> None:
    # GIVEN pixels whose red, green and blue planes differ
    pixels = np.zeros((2, 4, 5, 3), dtype=np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 10, 100, 250
    prep = Preprocessing(resize=4, crop=4, mean=(1, 2, 3), std=(2, 4, 8), channel_order=order, scale=1.0)
    channels = (2, 1, 0) if order == "BGR" else (0, 1, 2)
    axis = 1 if layout == "NCHW" else 3

    floats = model_input(pixels, prep, TensorSpec("x", (-1,), "float32", layout))
    raw = model_input(pixels, prep, TensorSpec("x", (-1,), "uint8", layout))

    # THEN the channels sit on the layout's axis, in the channel order; floats scaled by 1 (pixels 0..255)
    assert floats.shape == raw.shape == ((2, 3, 4, 5) if layout == "NCHW" else (2, 4, 5, 3))
    assert floats.dtype == np.float32 and raw.dtype == np.uint8
    assert floats.flags.c_contiguous and raw.flags.c_contiguous
    for position, channel in enumerate(channels):
        plane_f, plane_r = np.take(floats, position, axis=axis), np.take(raw, position, axis=axis)
        expected = (pixels[0, 0, 0, channel] - prep.mean[position]) / prep.std[position]
        np.testing.assert_allclose(plane_f, expected, rtol=1e-6)
        np.testing.assert_array_equal(plane_r, pixels[0, 0, 0, channel])


def test_an_input_spec_without_a_layout_reads_as_older_artifacts_wrote_it() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (1, 4, 4, 3), dtype=np.uint8)
    assert model_input(pixels, PREP, TensorSpec("x", (-1, 3, 4, 4), "float32")).shape == (1, 3, 4, 4)
    np.testing.assert_array_equal(model_input(pixels, PREP, TensorSpec("x", (-1, 4, 4, 3), "uint8")), pixels)


def test_model_input_refuses_what_is_not_uint8_rgb_pixels() -> None:
    with pytest.raises(ValueError, match="expected uint8 pixels"):
        model_input(np.zeros((1, 4, 4, 3), np.float32), PREP, TensorSpec("x", (-1,), "float32", "NCHW"))
    with pytest.raises(ValueError, match="float16 is not one of"):
        model_input(np.zeros((1, 4, 4, 3), np.uint8), PREP, TensorSpec("x", (-1,), "float16", "NCHW"))
