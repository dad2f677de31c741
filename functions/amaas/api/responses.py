"""Error responses for the OpenAPI schema, shared by every route."""

from __future__ import annotations

from typing import Any

from amaas.api.schemas import ErrorResponse


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("undecodable image (invalid_image) or malformed body (invalid_request)"),
    403: _error("an S3 reference to a bucket this API may not read (forbidden)"),
    404: _error("an S3 reference to an object that does not exist (image_not_found)"),
    413: _error("body, image or pixel count over the limit (payload_too_large), or too many images (too_many_images)"),
    415: _error("Content-Type not accepted (unsupported_media_type)"),
    422: _error("a parameter such as top_k is out of range (invalid_parameter)"),
    502: _error("S3 failed while fetching a referenced image (upstream_error)"),
    503: _error("the model is missing or failed to load (model_unavailable)"),
}
