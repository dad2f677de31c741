"""Lambda events are untrusted input too: what reaches the API function must be an API Gateway proxy event
Mangum can read, or it gets a 400 in the proxy response format, never a function error.

API Gateway itself only sends well-formed events; anything else comes from a direct invocation (a test tool, a
misconfigured integration, someone with lambda:InvokeFunction), which deserves the same clear answer.
"""

from __future__ import annotations

import json
import re
import string
import uuid
from collections.abc import Callable
from typing import Any

from amaas.api.context import REQUEST_ID_HEADER
from amaas.errors import InvalidRequestError
from amaas.observability import logger

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
_BASE64_ALPHABET = (string.ascii_letters + string.digits + "+/").encode()
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# Mangum splits Host into name and port and converts the port (and X-Forwarded-Port) with int()
_HOST_PORT = {"host": re.compile(r"[^:\s]*(:[0-9]{1,5})?"), "x-forwarded-port": re.compile(r"[0-9]{1,5}")}


def guarded(handler: Handler) -> Handler:
    """``handler``, answering events it could not read with a 400 proxy response."""

    def guard(event: dict[str, Any], context: Any) -> dict[str, Any]:
        problem = event_problem(event)
        if problem is None:
            return handler(event, context)
        logger.warning("unreadable event", extra={"reason": problem})
        return _bad_event(problem)

    return guard


def event_problem(event: Any) -> str | None:
    """Why Mangum could not read ``event`` as an API Gateway REST (proxy) request, or ``None`` if it can."""
    if not isinstance(event, dict):
        return "the event is not a JSON object"
    if not isinstance(event.get("requestContext"), dict):
        return "the event is not an API Gateway request (no requestContext)"
    for key in ("httpMethod", "path"):
        if not isinstance(event.get(key), str) or not event[key]:
            return f"the event's {key} must be a non-empty string"
    if event.get("body") is not None and not isinstance(event["body"], str):
        return "the event's body must be a string"
    for key in ("headers", "queryStringParameters"):
        if not _mapping_of(event.get(key), lambda v: isinstance(v, str)):
            return f"the event's {key} must map strings to strings"
    for key in ("multiValueHeaders", "multiValueQueryStringParameters"):
        if not _mapping_of(event.get(key), lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v)):
            return f"the event's {key} must map strings to lists of strings"
    body = event.get("body")
    if event.get("isBase64Encoded") and body and not _is_base64(body):
        return "the event says its body is base64-encoded, and it is not"
    # isascii() is a flag CPython keeps on every str: an image body (base64, ASCII) is never scanned
    if any(not text.isascii() and _SURROGATE.search(text) for text in _strings(event)):
        return "the event holds text that is not valid Unicode (a lone surrogate)"
    for name in ("host", "x-forwarded-port"):
        value = _header(event, name)
        if value is not None and not _HOST_PORT[name].fullmatch(value):
            return f"the event's {name} header is malformed"
    return None


def _is_base64(text: str) -> bool:
    """Standard base64 with at most two ``=`` of padding at its end. Checked in C (``bytes.translate`` drops the
    alphabet, leaving only the padding): a regular expression over a 6 MB body takes milliseconds."""
    if len(text) % 4 or not text.isascii():
        return False
    data = text.encode("ascii")
    rest = data.translate(None, _BASE64_ALPHABET)
    return rest in (b"", b"=", b"==") and data.endswith(rest)


def _strings(event: dict[str, Any]) -> list[str]:
    """Every string Mangum encodes to UTF-8: method, path, body, header and query names and values."""
    found = [event["httpMethod"], event["path"], event.get("body") or ""]
    for key in ("headers", "queryStringParameters", "multiValueHeaders", "multiValueQueryStringParameters"):
        for name, value in (event.get(key) or {}).items():
            found.append(name)
            found.extend(value if isinstance(value, list) else [value])
    return found


def _header(event: dict[str, Any], name: str) -> str | None:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return str(value)
    return None


def _mapping_of(value: Any, valid: Callable[[Any], bool]) -> bool:
    return value is None or (isinstance(value, dict) and all(isinstance(k, str) and valid(v) for k, v in value.items()))


def _bad_event(problem: str) -> dict[str, Any]:
    error = InvalidRequestError(problem)
    request_id = uuid.uuid4().hex
    return {
        "statusCode": error.status,
        "headers": {"content-type": "application/json", REQUEST_ID_HEADER: request_id},
        "body": json.dumps({"error": error.code, "message": error.message, "request_id": request_id}),
        "isBase64Encoded": False,
    }
