"""Error responses for the OpenAPI schema, shared by every route: `/v1` errors are ``ErrorResponse``, `/v2`
(Open Inference Protocol) errors the protocol's ``{"error": "..."}``."""

from __future__ import annotations

from typing import Any

from amaas.api.schemas import ErrorResponse, ProtocolError


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


def _protocol_error(description: str) -> dict[str, Any]:
    return {"model": ProtocolError, "description": description}


INTERNAL: dict[int | str, dict[str, Any]] = {
    500: _error("an unexpected failure (internal_error); the message carries no detail"),
}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: _error("the model is missing or failed to load (model_unavailable)"),
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("undecodable image (invalid_image) or malformed body (invalid_request)"),
    403: _error("an S3 reference to a bucket this API may not read (forbidden)"),
    404: _error("an S3 reference to an object that does not exist (image_not_found)"),
    413: _error("body, image or pixel count over the limit (payload_too_large), or too many images (too_many_images)"),
    415: _error("Content-Type not accepted (unsupported_media_type)"),
    422: _error("a parameter such as top_k is out of range (invalid_parameter)"),
    502: _error("S3 failed while fetching a referenced image (upstream_error)"),
    **UNAVAILABLE,
    **INTERNAL,
}

PROTOCOL_INTERNAL: dict[int | str, dict[str, Any]] = {500: _protocol_error("an unexpected failure")}
PROTOCOL_MODEL_ERRORS: dict[int | str, dict[str, Any]] = {
    404: _protocol_error("no such model or version"),
    503: _protocol_error("the model is missing or failed to load"),
    **PROTOCOL_INTERNAL,
}
