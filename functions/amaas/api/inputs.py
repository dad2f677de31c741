"""Request bodies to encoded images, in every form clients send them.

One image: a raw body (``image/*`` or octet-stream), JSON ``{"image": "<base64>"}``, JSON ``{"s3": "s3://b/k"}``,
or multipart with one ``image`` field. Several: JSON ``{"images": [...]}`` (each base64 or ``{"s3": ...}``) or
multipart with several ``images`` fields; those answer as ``{"results": [...]}`` in request order.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from amaas import storage
from amaas.api.errors import documented
from amaas.api.untrusted import byte_count, parse_json
from amaas.errors import (
    ForbiddenError,
    ImageNotFoundError,
    InvalidImageError,
    InvalidParameterError,
    InvalidRequestError,
    ModelUnavailableError,
    PayloadTooLargeError,
    TaskNotServedError,
    TooManyImagesError,
    UnsupportedMediaTypeError,
    UpstreamError,
)
from amaas.settings import Settings

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp")
RAW_MEDIA_TYPES = (*IMAGE_MEDIA_TYPES, "application/octet-stream")
JSON_MEDIA_TYPE = "application/json"
MULTIPART_MEDIA_TYPE = "multipart/form-data"
# The S3 bytes one request may fetch in total, in units of max_s3_image_bytes
S3_REQUEST_IMAGES = 2
# Parts one multipart body may have: images (at most max_images of them) and whatever else a form sends
MAX_PARTS = 64

_S3_URI = {"type": "string", "pattern": "^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+", "example": "s3://bucket/key"}
_IMAGE_JSON: dict[str, Any] = {
    "oneOf": [
        {"type": "string", "format": "byte", "description": "base64 image (a data: URL prefix is allowed)"},
        {"type": "object", "required": ["s3"], "properties": {"s3": _S3_URI}},
    ]
}


def _only(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON body holding ``key`` and neither of the other two forms: a body naming two is refused, not half read."""
    others = [{"required": [other]} for other in ("image", "images", "s3") if other != key]
    return {"type": "object", "required": [key], "properties": {key: schema}, "not": {"anyOf": others}}


_ONE_IMAGE = [_only("image", _IMAGE_JSON), _only("s3", _S3_URI)]
_MANY_IMAGES = _only("images", {"type": "array", "items": _IMAGE_JSON, "minItems": 1})
_FILE = {"type": "string", "format": "binary"}


def image_request_body(*, several: bool) -> dict[str, Any]:
    """For the OpenAPI schema: what an image endpoint accepts (``several``: also lists of images)."""
    json_forms = [*_ONE_IMAGE, _MANY_IMAGES] if several else _ONE_IMAGE
    # As for JSON, a multipart body carrying both forms is refused, so each form excludes the other.
    one_file = {"type": "object", "required": ["image"], "properties": {"image": _FILE}}
    multipart_forms = [{**one_file, "properties": {"image": _FILE, "images": False}} if several else one_file]
    if several:
        multipart_forms.append(
            {
                "type": "object",
                "required": ["images"],
                "properties": {"images": {"type": "array", "items": _FILE, "minItems": 1}, "image": False},
            }
        )
    return {
        "required": True,
        "content": {
            **{media: {"schema": _FILE} for media in RAW_MEDIA_TYPES},
            JSON_MEDIA_TYPE: {"schema": {"oneOf": json_forms}},
            MULTIPART_MEDIA_TYPE: {"schema": {"oneOf": multipart_forms}},
        },
    }


# What a route taking images can answer with, for its OpenAPI schema
IMAGE_ROUTE_ERRORS = documented(
    InvalidImageError,
    InvalidRequestError,
    ForbiddenError,
    ImageNotFoundError,
    PayloadTooLargeError,
    TooManyImagesError,
    UnsupportedMediaTypeError,
    InvalidParameterError,
    UpstreamError,
    ModelUnavailableError,
    TaskNotServedError,
)


@dataclass(frozen=True)
class ImageInput:
    """One image as sent: its bytes, or an S3 reference to fetch."""

    data: bytes | None = None
    s3: storage.S3Object | None = None


@dataclass(frozen=True)
class ImageRequest:
    inputs: tuple[ImageInput, ...]
    batch: bool


async def read_images(request: Request, settings: Settings) -> ImageRequest:
    """Parses the body into images, enforcing the size and count limits.

    Raises:
        UnsupportedMediaTypeError: Content-Type is not an image type, octet-stream, JSON or multipart.
        PayloadTooLargeError: The body or one image is over its limit.
        TooManyImagesError: More images than ``settings.max_images``.
        InvalidRequestError: Malformed JSON, base64 or multipart.
    """
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in (*RAW_MEDIA_TYPES, JSON_MEDIA_TYPE, MULTIPART_MEDIA_TYPE):
        shown = media_type or "none"
        raise UnsupportedMediaTypeError(
            f"Content-Type {shown} is not supported; send {', '.join(RAW_MEDIA_TYPES)}, "
            f"{JSON_MEDIA_TYPE} or {MULTIPART_MEDIA_TYPE}"
        )
    body = await read_body(request, settings.max_body_bytes)
    if media_type == JSON_MEDIA_TYPE:
        parsed = _from_json(body)
    elif media_type == MULTIPART_MEDIA_TYPE:
        parsed = _from_multipart(request.headers.get("content-type", ""), body)
    else:
        parsed = ImageRequest((ImageInput(data=body),), batch=False)
    if not parsed.inputs:
        raise InvalidRequestError("the request carried no images")
    sizes = (None if item.data is None else len(item.data) for item in parsed.inputs)
    check_batch_limits(len(parsed.inputs), settings, sizes, batch=parsed.batch)
    return parsed


def check_batch_limits(count: int, settings: Settings, sizes: Iterable[int | None] = (), *, batch: bool = True) -> None:
    """The limits on one request's images, whichever route and protocol carried them.

    Args:
        count: Images (or tensor rows) in the request.
        sizes: Each encoded image's size; ``None`` for an S3 reference, whose own limit applies when fetched.
        batch: Whether the client sent a list (errors then name the image by its index).

    Raises:
        TooManyImagesError: More than ``max_images``.
        PayloadTooLargeError: An image over ``max_image_bytes``.
    """
    if count > settings.max_images:
        raise TooManyImagesError(f"{count} images in one request; the limit is {settings.max_images}")
    for i, size in enumerate(sizes):
        if size is not None and size > settings.max_image_bytes:
            which = f"image {i}" if batch else "the image"
            raise PayloadTooLargeError(f"{which} is {size} bytes; the limit is {settings.max_image_bytes}")


def max_s3_request_bytes(settings: Settings) -> int:
    """The most S3 bytes one request may fetch in total: a batch of references to images each under the
    per-image limit must not add up to more memory than the function has."""
    return S3_REQUEST_IMAGES * settings.max_s3_image_bytes


def load_images(parsed: ImageRequest, settings: Settings) -> list[bytes]:
    """The bytes of every image, fetching S3 references (blocking: run it off the event loop).

    Raises:
        PayloadTooLargeError: An S3 image is over ``max_s3_image_bytes``, or together they are over
            ``max_s3_request_bytes``; refused from the object's size, before it is downloaded.
    """
    total_limit = max_s3_request_bytes(settings)
    remaining = total_limit
    images = []
    for item in parsed.inputs:
        if item.data is not None or item.s3 is None:
            images.append(item.data or b"")
            continue
        limit = min(settings.max_s3_image_bytes, remaining)
        try:
            data = storage.fetch(item.s3, allowed_buckets=settings.s3_buckets, max_bytes=limit).data
        except PayloadTooLargeError:
            if limit == settings.max_s3_image_bytes:
                raise
            raise PayloadTooLargeError(
                f"the S3 images in this request add up to more than {total_limit} bytes, the limit per request"
            ) from None
        remaining -= len(data)
        images.append(data)
    return images


def decode_base64(encoded: str) -> bytes:
    """Standard or URL-safe base64, with or without padding or a ``data:...;base64,`` prefix."""
    if encoded.startswith("data:"):
        encoded = encoded.partition(",")[2]
    encoded = "".join(encoded.split())
    urlsafe = "-" in encoded or "_" in encoded
    try:
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_" if urlsafe else None, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError("an image is not valid base64") from None


async def read_body(request: Request, limit: int) -> bytes:
    """Reads at most ``limit`` bytes, refusing early on a declared Content-Length over the limit."""
    declared = byte_count(request.headers.get("content-length"), "Content-Length")
    if declared is not None and declared > limit:
        raise PayloadTooLargeError(f"the body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the body is larger than the limit of {limit} bytes")
        if chunk:  # Starlette ends the stream with an empty chunk; joining two copies a lone body
            chunks.append(chunk)
    return b"".join(chunks)


def _from_json(body: bytes) -> ImageRequest:
    document = parse_json(body, "the JSON body")
    if not isinstance(document, dict):
        raise InvalidRequestError('JSON bodies must be an object: {"image": ...}, {"images": [...]} or {"s3": ...}')
    forms = [key for key in ("image", "images", "s3") if key in document]
    if len(forms) > 1:
        raise InvalidRequestError(f'send one of "image", "images" or "s3", not {" and ".join(forms)}')
    if "images" in document:
        items = document["images"]
        if not isinstance(items, list):
            raise InvalidRequestError('"images" must be a list of base64 strings or {"s3": "s3://..."} objects')
        return ImageRequest(tuple(_json_image(item) for item in items), batch=True)
    if "image" in document:
        return ImageRequest((_json_image(document["image"]),), batch=False)
    if "s3" in document:
        return ImageRequest((_json_image({"s3": document["s3"]}),), batch=False)
    raise InvalidRequestError('JSON bodies need "image": "<base64>", "images": [...] or "s3": "s3://bucket/key"')


def _json_image(item: Any) -> ImageInput:
    if isinstance(item, str):
        return ImageInput(data=decode_base64(item))
    if isinstance(item, dict) and isinstance(item.get("s3"), str):
        return ImageInput(s3=storage.parse_s3_uri(item["s3"]))
    raise InvalidRequestError('each image must be a base64 string or {"s3": "s3://bucket/key"}')


def _from_multipart(content_type: str, body: bytes) -> ImageRequest:
    """The ``image`` or ``images`` parts of a multipart body, as the raw bytes of each part: a part is an image
    whether or not its Content-Disposition names a file (Starlette would decode an unnamed one as text)."""
    parts = _multipart_parts(content_type, body)
    many = [data for name, data in parts if name == "images"]
    one = [data for name, data in parts if name == "image"]
    if many and one:
        raise InvalidRequestError('send either one "image" field or "images" fields, not both')
    if len(one) > 1:
        raise InvalidRequestError('several images go in "images" fields; "image" takes one')
    return ImageRequest(tuple(ImageInput(data=d) for d in many or one), batch=bool(many))


def _multipart_parts(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """(field name, raw bytes) of every part, in order; the body is already capped at ``max_body_bytes``.

    Raises:
        InvalidRequestError: No boundary, a malformed body, more than ``MAX_PARTS`` parts.
    """
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidRequestError("the multipart body is malformed: its Content-Type names no boundary")
    parts: list[tuple[str, bytes]] = []
    headers: dict[bytes, bytes] = {}
    field, value, chunks = bytearray(), bytearray(), bytearray()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        value.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(field).lower()] = bytes(value)
        field.clear()
        value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunks.extend(data[start:end])

    def on_part_end() -> None:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        parts.append((disposition.get(b"name", b"").decode("latin-1"), bytes(chunks)))
        headers.clear()
        chunks.clear()
        if len(parts) > MAX_PARTS:
            raise InvalidRequestError(f"the multipart body has more than {MAX_PARTS} parts")

    callbacks = {
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except (MultipartParseError, ValueError) as exc:
        raise InvalidRequestError(f"the multipart body is malformed: {str(exc)[:200]}") from None
    return parts
