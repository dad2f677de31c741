"""Per-request context as plain ASGI middleware: a request id on every response, and the last line of
defence that turns any unhandled exception into a generic JSON 500 instead of a crash or a stack trace.

Pure ASGI rather than ``BaseHTTPMiddleware`` so it adds no task or body copy to each request.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from amaas.api.errors import error_response, to_amaas_error

REQUEST_ID_HEADER = "x-request-id"
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

logger = logging.getLogger("amaas.access")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _pick_request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER.encode(), rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            logger.exception("unhandled error", extra={"request_id": rid})
            if response_started:
                raise
            await error_response(to_amaas_error(exc), rid)(scope, receive, send_with_id)
        finally:
            logger.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "request_id": rid,
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )


def _pick_request_id(scope: Scope) -> str:
    """The client's x-request-id if it is sane, else API Gateway's request id, else a new uuid."""
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            candidate: str = value.decode("latin-1")
            if _CLIENT_ID.match(candidate):
                return candidate
    event = scope.get("aws.event") or {}
    gateway_id = (event.get("requestContext") or {}).get("requestId")
    return str(gateway_id) if gateway_id else uuid.uuid4().hex
