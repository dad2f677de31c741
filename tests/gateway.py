"""A stand-in for API Gateway (REST API, Lambda proxy integration) on 127.0.0.1, for tests.

Real HTTP clients (tritonclient, httpx, a browser) talk to it; it turns each request into the event API
Gateway would send (stage prefix in the URL, base64 body for binary media types, headers and query in single-
and multi-value form), calls the Lambda handler in-process, and turns the handler's response back into HTTP
(decoding base64 bodies), so the whole Lambda path runs without Docker or an AWS account.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.helpers import LambdaContext

LAMBDA_PAYLOAD_LIMIT = 6_291_456  # bytes of event JSON Lambda accepts synchronously
# The routes template.yaml leaves open when API keys are required
OPEN_ROUTES = frozenset({("GET", "/"), ("GET", "/v1/health"), ("GET", "/v2/health/live"), ("GET", "/v2/health/ready")})
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def make_event(
    method: str, path: str, query: str, headers: dict[str, str], body: bytes, stage: str, binary: bool
) -> dict[str, Any]:
    params = parse_qs(query, keep_blank_values=True)
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers.items():
        multi_headers.setdefault(name, []).append(value)
    return {
        "resource": "/{proxy+}" if path != "/" else "/",
        "path": path,
        "httpMethod": method,
        "headers": dict(headers) or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {k: v[-1] for k, v in params.items()} or None,
        "multiValueQueryStringParameters": params or None,
        "pathParameters": {"proxy": path.lstrip("/")} if path != "/" else None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/{stage}{path}",
            "stage": stage,
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "127.0.0.1", "userAgent": headers.get("User-Agent", "")},
            "apiId": "emulated",
            "protocol": "HTTP/1.1",
        },
        "body": (base64.b64encode(body).decode() if binary else body.decode("utf-8", errors="replace"))
        if body
        else None,
        "isBase64Encoded": bool(body) and binary,
    }


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm on, each keep-alive response then waits
    # for the client's delayed ACK (~40 ms), which made every request through the stand-in 40 times slower.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _handle(self) -> None:
        url = urlsplit(self.path)
        prefix = f"/{self.server.stage}"
        if url.path != prefix and not url.path.startswith(prefix + "/"):
            self._send(403, {"content-type": "application/json"}, b'{"message":"Missing Authentication Token"}')
            return
        path = url.path[len(prefix) :] or "/"
        key = self.server.api_key
        if key and (self.command, path) not in self.server.open_routes and self.headers.get("x-api-key") != key:
            self._send(403, {"content-type": "application/json"}, b'{"message":"Forbidden"}')
            return
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name: value for name, value in self.headers.items()}
        content_type = (self.headers.get("content-type") or "application/json").split(";")[0].strip()
        binary = any(fnmatch.fnmatch(content_type, pattern) for pattern in self.server.binary_media_types)
        event = make_event(self.command, path, url.query, headers, body, self.server.stage, binary)
        if len(json.dumps(event)) > LAMBDA_PAYLOAD_LIMIT:
            self._send(413, {"content-type": "application/json"}, b'{"message":"Request Too Long"}')
            return
        response = self.server.container.submit(self.server.handler, event, LambdaContext()).result()
        out_headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        for name, values in (response.get("multiValueHeaders") or {}).items():
            out_headers[name.lower()] = ", ".join(values)
        raw = response.get("body") or ""
        payload = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()
        self._send(int(response["statusCode"]), out_headers, payload)

    def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    handler: Handler
    stage: str
    binary_media_types: tuple[str, ...]
    container: ThreadPoolExecutor
    api_key: str | None
    open_routes: frozenset[tuple[str, str]]


def _lambda_thread() -> None:
    asyncio.set_event_loop(asyncio.new_event_loop())


def _close_loop() -> None:
    asyncio.get_event_loop().close()


@contextmanager
def api_gateway(
    handler: Handler,
    *,
    stage: str = "prod",
    binary_media_types: tuple[str, ...] = ("*/*",),
    api_key: str | None = None,
) -> Iterator[str]:
    """Serves ``handler`` behind an emulated API Gateway stage; yields the stage URL (no trailing slash).

    With ``api_key``, every route but the ones template.yaml leaves open answers 403 without that x-api-key.
    """
    server = _Server(("127.0.0.1", 0), _RequestHandler)
    server.handler, server.stage, server.binary_media_types = handler, stage, binary_media_types
    server.api_key, server.open_routes = api_key, OPEN_ROUTES
    # Like one Lambda container: one invocation at a time, on a thread that owns an event loop (Mangum's)
    server.container = ThreadPoolExecutor(max_workers=1, initializer=_lambda_thread)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{stage}"
    finally:
        server.shutdown()
        server.server_close()
        server.container.submit(_close_loop).result()
        server.container.shutdown()
