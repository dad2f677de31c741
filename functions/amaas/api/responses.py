"""Error responses for the OpenAPI schema, shared by every route."""

from __future__ import annotations

from typing import Any

from amaas.api.schemas import ErrorResponse

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorResponse,
        "description": "undecodable image (invalid_image) or malformed body (invalid_request)",
    },
    413: {
        "model": ErrorResponse,
        "description": "body or image over the configured limit (payload_too_large)",
    },
    415: {"model": ErrorResponse, "description": "Content-Type not accepted (unsupported_media_type)"},
    422: {
        "model": ErrorResponse,
        "description": "a parameter such as top_k is out of range (invalid_parameter)",
    },
    503: {
        "model": ErrorResponse,
        "description": "the model is missing or failed to load (model_unavailable)",
    },
}
