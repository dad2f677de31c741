"""Lambda's Invoke API on 127.0.0.1, so a local function can invoke another one through boto3.

Point a function's SDK at it with ``AWS_ENDPOINT_URL_LAMBDA=<url>`` (botocore's service-specific endpoint
variable). ``POST /2015-03-31/functions/{name}/invocations`` takes the name as boto3 sends it: a plain name,
``name:qualifier``, or a full or partial ARN; every qualifier reaches the one local version, ``$LATEST``.
RequestResponse, Event (run in the background, 202) and DryRun (204) invocation types are supported, as is
``LogType=Tail``.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Mapping
from http import HTTPStatus
from types import TracebackType
from urllib.parse import unquote, urlsplit

from amaas_cli.lambda_local.function import MAX_REQUEST_BYTES, LocalLambda
from amaas_cli.lambda_local.local_server import Handler, LocalServer

PREFIX = "/2015-03-31/functions/"
SUFFIX = "/invocations"
LOG_TAIL_BYTES = 4096


def function_name(reference: str) -> str:
    """``my-fn`` from ``my-fn``, ``my-fn:live``, ``123456789012:function:my-fn`` or a full function ARN."""
    parts = reference.split(":")
    if "function" in parts:
        return parts[parts.index("function") + 1]
    return parts[0]


class InvokeApi:
    """Serves ``functions`` (by function name or logical id) until closed."""

    def __init__(self, functions: Mapping[str, LocalLambda] | list[LocalLambda]) -> None:
        listed = list(functions.values()) if isinstance(functions, Mapping) else list(functions)
        self.functions: dict[str, LocalLambda] = {}
        for function in listed:
            self.functions[function.spec.name] = self.functions[function.spec.logical_id] = function
        if isinstance(functions, Mapping):
            self.functions.update(functions)
        self._server = LocalServer(_handler_for(self), "lambda-invoke-api")

    @property
    def url(self) -> str:
        """The endpoint, for ``AWS_ENDPOINT_URL_LAMBDA``."""
        return f"http://{self._server.address}"

    def __enter__(self) -> InvokeApi:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._server.close()


def _handler_for(api: InvokeApi) -> type[Handler]:
    class _Handler(Handler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            payload = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = urlsplit(self.path).path
            if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
                self._error(HTTPStatus.NOT_FOUND, "UnknownOperationException", f"no such operation: {path}")
                return
            reference = unquote(path[len(PREFIX) : -len(SUFFIX)])
            function = api.functions.get(function_name(reference))
            if function is None:
                message = f"Function not found: {reference}"
                self._error(HTTPStatus.NOT_FOUND, "ResourceNotFoundException", message)
                return
            kind = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
            if kind == "DryRun":
                self.send(HTTPStatus.NO_CONTENT, b"", {})
                return
            if kind == "Event":
                threading.Thread(target=function.invoke, args=(payload,), daemon=True).start()
                self.send(HTTPStatus.ACCEPTED, b"", {})
                return
            if len(payload) > MAX_REQUEST_BYTES:
                message = f"Request must be smaller than {MAX_REQUEST_BYTES} bytes for the InvokeFunction operation"
                self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "RequestTooLargeException", message)
                return
            result = function.invoke(payload, client_context=self.headers.get("X-Amz-Client-Context"))
            headers = {"X-Amz-Executed-Version": "$LATEST", "Content-Type": "application/json"}
            if result.error is not None:
                headers["X-Amz-Function-Error"] = "Unhandled"
            if self.headers.get("X-Amz-Log-Type") == "Tail":
                tail = "\n".join(result.logs).encode()[-LOG_TAIL_BYTES:]
                headers["X-Amz-Log-Result"] = base64.b64encode(tail).decode()
            self.send(HTTPStatus.OK, result.raw, headers)

        def _error(self, status: HTTPStatus, code: str, message: str) -> None:
            body = json.dumps({"Type": "User", "message": message}).encode()
            self.send(status, body, {"x-amzn-ErrorType": code, "Content-Type": "application/json"})

    return _Handler
