"""Exceptions to HTTP responses, in one place, and the OpenAPI error tables generated from the same classes.

Clients get ``{"error", "message", "request_id"}``, or on routes whose router speaks the Open Inference Protocol
the protocol's own ``{"error": "<message>"}``; never a stack trace, a class name or a path. Statuses come from
the exception class, never from message text. Which body a route answers with is a property of its router
(``error_body`` on the route class), not of the URL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, APIRouter
from starlette.exceptions import HTTPException
from starlette.types import Scope

from amaas.api.schemas import ErrorResponse, ProtocolError
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

ErrorBody = Callable[[AmaasError, str], dict[str, Any]]
# Statuses Starlette itself raises (besides 404 and 405, which get their own messages)
_HTTP_ERRORS: dict[int, type[AmaasError]] = {
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: InvalidParameterError,
}


def api_error(exc: AmaasError, request_id: str) -> dict[str, Any]:
    return {"error": exc.code, "message": exc.message, "request_id": request_id}


def protocol_error(exc: AmaasError, request_id: str) -> dict[str, Any]:
    """The Open Inference Protocol's error body: its clients read ``error`` as the message."""
    return {"error": exc.message}


class ProtocolRoute(APIRoute):
    """A route of a router speaking the Open Inference Protocol: its errors take the protocol's body."""

    error_body: ErrorBody = staticmethod(protocol_error)


def include(app: FastAPI, router: APIRouter) -> None:
    """Adds ``router``, and claims its prefix for its error body so that paths under it no route matches (a
    404, a 405) answer in the router's format too."""
    app.include_router(router)
    body = getattr(router.route_class, "error_body", None)
    if body is not None and router.prefix:
        app.state.error_bodies = {**getattr(app.state, "error_bodies", {}), router.prefix: body}


def error_body(scope: Scope) -> ErrorBody:
    route_body: ErrorBody | None = getattr(scope.get("route"), "error_body", None)
    if route_body is not None:
        return route_body
    path: str = scope.get("path", "")
    claimed: dict[str, ErrorBody] = getattr(getattr(scope.get("app"), "state", None), "error_bodies", {})
    for prefix, body in sorted(claimed.items(), key=lambda item: -len(item[0])):
        if path == prefix or path.startswith(prefix + "/"):
            return body
    return api_error


def error_response(
    exc: AmaasError, request_id: str, scope: Scope, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(status_code=exc.status, content=error_body(scope)(exc, request_id), headers=headers)


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
        return error_response(error, getattr(request.state, "request_id", ""), request.scope, allow)

    for kind in (AmaasError, RequestValidationError, HTTPException):
        app.add_exception_handler(kind, handle)


def documented(*errors: type[AmaasError], protocol: bool = False) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI responses for the errors a route can answer with, from the classes themselves: per status,
    each class's code and the first line of its docstring (the 500 of an unexpected failure is always there)."""
    by_status: dict[int, list[type[AmaasError]]] = {}
    kinds: tuple[type[AmaasError], ...] = (*errors, AmaasError)
    for error in kinds:
        if error not in by_status.get(error.status, []):
            by_status.setdefault(error.status, []).append(error)
    model = ProtocolError if protocol else ErrorResponse
    return {status: {"model": model, "description": _describe(kinds)} for status, kinds in sorted(by_status.items())}


def _describe(kinds: Iterable[type[AmaasError]]) -> str:
    return "; ".join(f"{kind.code}: {' '.join((kind.__doc__ or '').split()).split('. HTTP')[0]}" for kind in kinds)
