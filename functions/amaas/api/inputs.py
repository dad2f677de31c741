"""Request bodies to encoded image bytes: raw image bodies or JSON ``{"image": "<base64>"}``."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from fastapi import Request

from amaas.errors import InvalidRequestError, PayloadTooLargeError, UnsupportedMediaTypeError

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp")
RAW_MEDIA_TYPES = (*IMAGE_MEDIA_TYPES, "application/octet-stream")
JSON_MEDIA_TYPE = "application/json"

# For the OpenAPI schema: what POST /v1/classify accepts.
CLASSIFY_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        **{media: {"schema": {"type": "string", "format": "binary"}} for media in RAW_MEDIA_TYPES},
        JSON_MEDIA_TYPE: {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {"image": {"type": "string", "format": "byte", "description": "base64 image"}},
            }
        },
    },
}


async def read_image(request: Request, max_body_bytes: int) -> bytes:
    """The one encoded image a request carries.

    Raises:
        UnsupportedMediaTypeError: Content-Type is neither an image type, octet-stream nor JSON.
        PayloadTooLargeError: The body is larger than ``max_body_bytes``.
        InvalidRequestError: JSON that is not ``{"image": "<base64>"}``.
    """
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in (*RAW_MEDIA_TYPES, JSON_MEDIA_TYPE):
        shown = media_type or "none"
        raise UnsupportedMediaTypeError(
            f"Content-Type {shown} is not supported; send {', '.join(RAW_MEDIA_TYPES)} or {JSON_MEDIA_TYPE}"
        )
    body = await _read_body(request, max_body_bytes)
    if media_type != JSON_MEDIA_TYPE:
        return body
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidRequestError("the body is not valid JSON") from None
    encoded = document.get("image") if isinstance(document, dict) else None
    if not isinstance(encoded, str):
        raise InvalidRequestError('JSON bodies must be {"image": "<base64-encoded image>"}')
    return decode_base64(encoded)


def decode_base64(encoded: str) -> bytes:
    """Standard or URL-safe base64, with or without padding or a ``data:...;base64,`` prefix."""
    if encoded.startswith("data:"):
        encoded = encoded.partition(",")[2]
    encoded = "".join(encoded.split())
    try:
        return base64.b64decode(
            encoded + "=" * (-len(encoded) % 4),
            altchars=b"-_" if "-" in encoded or "_" in encoded else None,
            validate=True,
        )
    except (binascii.Error, ValueError):
        raise InvalidRequestError("the image field is not valid base64") from None


async def _read_body(request: Request, limit: int) -> bytes:
    """Reads at most ``limit`` bytes, refusing early on a declared Content-Length over the limit."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"the body is {int(declared)} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
