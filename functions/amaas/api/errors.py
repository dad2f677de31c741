"""Exceptions to HTTP responses, in one place. Clients get ``{"error", "message", "request_id"}``; never a
stack trace, a class name or a path. Statuses come from the exception class, never from message text."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from amaas.errors import (
    AmaasError,
    InvalidParameterError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from amaas.observability import logger

_HTTP_ERRORS: dict[int, type[AmaasError]] = {
    404: NotFoundError,
    405: MethodNotAllowedError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: InvalidParameterError,
}


OIP_PREFIX = "/v2"


def error_response(
    exc: AmaasError, request_id: str, path: str = "", headers: dict[str, str] | None = None
) -> JSONResponse:
    """The error body: ``{"error", "message", "request_id"}``, or on Open Inference Protocol routes the
    protocol's own ``{"error": "<message>"}`` (its clients read that field as the message)."""
    if path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/"):
        return JSONResponse(status_code=exc.status, content={"error": exc.message}, headers=headers)
    return JSONResponse(
        status_code=exc.status,
        content={"error": exc.code, "message": exc.message, "request_id": request_id},
        headers=headers,
    )


def to_amaas_error(exc: Exception) -> AmaasError:
    """The client-facing error for any exception the app can raise; unknown ones become a generic 500."""
    if isinstance(exc, AmaasError):
        return exc
    if isinstance(exc, RequestValidationError):
        problems = [f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()]
        return InvalidParameterError("; ".join(problems) or "invalid parameter")
    if isinstance(exc, HTTPException):
        if exc.status_code == 404:
            return NotFoundError("no such route; see /openapi.json for the API")
        if exc.status_code == 405:
            return MethodNotAllowedError("this route does not accept that method")
        kind = _HTTP_ERRORS.get(exc.status_code)
        if kind is None:
            kind = InvalidRequestError if exc.status_code < 500 else AmaasError
        return kind(str(exc.detail) if exc.status_code < 500 else "internal error")
    return AmaasError("internal error")


def add_exception_handlers(app: FastAPI) -> None:
    """Routes every expected exception through ``to_amaas_error``. Unexpected ones are caught by
    ``RequestContextMiddleware``, which uses the same mapping."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        error = to_amaas_error(exc)
        if error.status >= 500:
            logger.error("%s: %s", error.code, error.message, exc_info=exc)
        request.state.error_code = error.code
        # a 405 keeps the Allow header the router computed (RFC 9110 section 15.5.6)
        headers = exc.headers if isinstance(exc, HTTPException) else None
        allow = {"Allow": headers["Allow"]} if headers and "Allow" in headers else None
        return error_response(error, getattr(request.state, "request_id", ""), request.url.path, allow)

    for kind in (AmaasError, RequestValidationError, HTTPException):
        app.add_exception_handler(kind, handle)
