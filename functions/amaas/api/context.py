"""Per-request context as plain ASGI middleware: a request id on every response and log line, one access
log line and one metrics flush per request, memory given back after big requests (``amaas.memory``), and the
last line of defence that turns any unhandled exception into a generic JSON 500 instead of a crash or a stack
trace.

Pure ASGI rather than ``BaseHTTPMiddleware`` so it adds no task or body copy to each request.
"""

from __future__ import annotations

import re
import time
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from amaas import memory
from amaas.api.errors import error_response, to_amaas_error
from amaas.observability import logger, record_request

REQUEST_ID_HEADER = "x-request-id"
# Log key for API Gateway's request id; Powertools already logs Lambda's invocation id as function_request_id
GATEWAY_ID_KEY = "apigw_request_id"
# The current request's id, for code that sees neither the scope nor the request (a middleware's own answers)
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="")
_SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff")]
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        gateway_id = _gateway_request_id(scope)
        rid = _pick_request_id(scope) or gateway_id or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        token = REQUEST_ID.set(rid)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                named = {name.lower() for name, _ in headers}
                extra = [header for header in _SECURITY_HEADERS if header[0] not in named]
                message["headers"] = [*headers, *extra, (REQUEST_ID_HEADER.encode(), rid.encode())]
            await send(message)

        # contextvars: each request (task) sees only its own id, even under a concurrent local server. API Gateway's
        # id is logged too, for when the client chose the request id: the gateway's own logs know only its id.
        keys = {"request_id": rid, **({GATEWAY_ID_KEY: gateway_id} if gateway_id else {})}
        logger.thread_safe_append_keys(**keys)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            logger.exception("unhandled error")
            if response_started:
                raise
            error = to_amaas_error(exc)
            state["error_code"] = error.code
            await error_response(error, rid, scope)(scope, receive, send_with_id)
        finally:
            latency = (time.perf_counter() - started) * 1000
            route = _route(scope)
            logger.info(
                "request",
                extra={"method": scope["method"], "route": route, "status": status, "latency_ms": round(latency, 3)},
            )
            record_request(scope["method"], route, status, latency, state.get("error_code") if status >= 400 else None)
            logger.thread_safe_remove_keys(list(keys))
            REQUEST_ID.reset(token)
            memory.release()


def _route(scope: Scope) -> str:
    """The route template (``/v2/models/{name}/infer``), so metrics do not fan out per model name or key."""
    route = scope.get("route")
    path: str = getattr(route, "path", None) or scope["path"]
    return path


def _pick_request_id(scope: Scope) -> str | None:
    """The client's x-request-id if it is sane."""
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            candidate: str = value.decode("latin-1")
            if _CLIENT_ID.fullmatch(candidate):
                return candidate
    return None


def _gateway_request_id(scope: Scope) -> str | None:
    """API Gateway's request id (``$context.requestId``), on Lambda, if it has the form of one: it is echoed
    in a header and logged, so an event from a direct invocation cannot inject into either."""
    event = scope.get("aws.event") or {}
    context = event.get("requestContext") if isinstance(event, dict) else None
    gateway_id = context.get("requestId") if isinstance(context, dict) else None
    return gateway_id if isinstance(gateway_id, str) and _CLIENT_ID.fullmatch(gateway_id) else None
