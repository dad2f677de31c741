"""Lambda's Runtime API on 127.0.0.1, for one function process: what the runtime interface client talks to.

With SnapStart (``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``) the runtime first asks ``GET
/2018-06-01/runtime/restore/next`` when its init is done, and reports a failing after-restore hook to
``/restore/error``. The runtime asks ``GET /2018-06-01/runtime/invocation/next`` for work, which blocks until an
event is submitted, and answers with ``POST .../invocation/{id}/response`` or ``.../error``; a runtime that cannot
start its handler posts ``/2018-06-01/runtime/init/error``. Each request is timestamped, since Lambda's REPORT
figures are measured here: init ends at the first ``next``, an invocation's duration runs from the event handed out
to its answer posted.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from amaas_cli.lambda_local.local_server import Handler, LocalServer

BASE = "/2018-06-01/runtime"
MAX_RESPONSE_BYTES = 6 * 1024 * 1024  # a synchronous invocation's response limit
_ERROR_TYPE = "Lambda-Runtime-Function-Error-Type"


@dataclass
class Invocation:
    """One event on its way through the runtime, and what came back."""

    request_id: str
    payload: bytes
    timeout_ms: int
    function_arn: str
    trace_id: str
    client_context: str | None = None
    submitted: float = 0.0  # monotonic, when the caller invoked
    deadline_ms: int = 0  # epoch milliseconds, set when the runtime receives the event
    started: float | None = None  # monotonic, when the runtime received the event
    finished: float | None = None  # monotonic, when its response or error arrived
    response: bytes = b""
    error_type: str | None = None  # set when the function failed (the Lambda-Runtime-Function-Error-Type)
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class InitError:
    error_type: str
    body: bytes
    at: float


class RuntimeApi:
    """The Runtime API server; ``submit`` hands an event to the next ``next`` call."""

    def __init__(self) -> None:
        self.ready = threading.Event()  # set at the runtime's first ``next``: init is over
        self.ready_at: float | None = None
        # SnapStart: the runtime asks ``restore/next`` once its init is done (Lambda snapshots it then); the
        # answer means "restored", and it runs its after-restore hooks before asking for the first event
        self.restore_at: float | None = None
        self.init_error: InitError | None = None
        self.changed = threading.Condition()  # notified on every state change, for waiters
        self._pending: queue.Queue[Invocation | None] = queue.Queue()
        self._active: dict[str, Invocation] = {}
        self._server = LocalServer(_handler_for(self), "lambda-runtime-api")

    @property
    def address(self) -> str:
        """``host:port``, the value of ``AWS_LAMBDA_RUNTIME_API``."""
        return self._server.address

    def submit(self, invocation: Invocation) -> None:
        self._active[invocation.request_id] = invocation
        self._pending.put(invocation)

    def close(self) -> None:
        self._pending.put(None)  # releases a ``next`` still waiting
        self._server.close()

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def next_invocation(self) -> Invocation | None:
        if not self.ready.is_set():
            self.ready_at = time.monotonic()
            self.ready.set()
            self._notify()
        invocation = self._pending.get()
        if invocation is None:
            self._pending.put(None)
            return None
        invocation.started = time.monotonic()
        invocation.deadline_ms = int(time.time() * 1000) + invocation.timeout_ms
        self._notify()  # the invocation's own timeout starts now
        return invocation

    def finish(self, request_id: str, body: bytes, error_type: str | None) -> HTTPStatus:
        invocation = self._active.pop(request_id, None)
        if invocation is None:
            return HTTPStatus.BAD_REQUEST
        invocation.finished = time.monotonic()
        status = HTTPStatus.ACCEPTED
        if error_type is None and len(body) > MAX_RESPONSE_BYTES:
            limit = f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
            body = json.dumps({"errorMessage": limit, "errorType": "Function.ResponseSizeTooLarge"}).encode()
            error_type, status = "Function.ResponseSizeTooLarge", HTTPStatus.REQUEST_ENTITY_TOO_LARGE
        invocation.response, invocation.error_type = body, error_type
        invocation.done.set()
        self._notify()
        return status

    def restore(self) -> None:
        self.restore_at = time.monotonic()
        self._notify()

    def fail_init(self, error_type: str, body: bytes) -> None:
        self.init_error = InitError(error_type, body, time.monotonic())
        self._notify()


def _handler_for(api: RuntimeApi) -> type[Handler]:
    class _Handler(Handler):
        protocol_version = "HTTP/1.1"  # the runtime client keeps its connection open between calls
        # Headers and body go out in two writes; with Nagle's algorithm the second waits for the client's
        # delayed ACK, adding 40 ms to every event handed out.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            if self.path == f"{BASE}/restore/next":
                api.restore()  # no snapshot is taken: the same process goes on as the restored sandbox
                self._reply(HTTPStatus.OK, {})
                return
            if self.path != f"{BASE}/invocation/next":
                self._reply(HTTPStatus.NOT_FOUND, {"errorType": "InvalidPath", "errorMessage": self.path})
                return
            invocation = api.next_invocation()
            if invocation is None:  # shutting down: the process is about to be stopped
                self._reply(HTTPStatus.GONE, {"errorType": "ShuttingDown", "errorMessage": "sandbox closing"})
                return
            headers = {
                "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": invocation.function_arn,
                "Lambda-Runtime-Trace-Id": invocation.trace_id,
                "Content-Type": "application/json",
            }
            if invocation.client_context:
                headers["Lambda-Runtime-Client-Context"] = invocation.client_context
            self.send(HTTPStatus.OK, invocation.payload, headers)

        def do_POST(self) -> None:
            body = self._body()
            parts = self.path.removeprefix(BASE).strip("/").split("/")
            if parts in (["init", "error"], ["restore", "error"]):
                default = "Runtime.Unknown" if parts[0] == "init" else "Runtime.RestoreError"
                api.fail_init(self.headers.get(_ERROR_TYPE) or default, body)
                self._reply(HTTPStatus.ACCEPTED, {"status": "OK"})
            elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                error_type = (self.headers.get(_ERROR_TYPE) or "Unhandled") if parts[2] == "error" else None
                status = api.finish(parts[1], body, error_type)
                self._reply(status, {"status": "OK"} if status < 400 else {"errorType": "InvalidRequestID"})
            else:
                self._reply(HTTPStatus.NOT_FOUND, {"errorType": "InvalidPath", "errorMessage": self.path})

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _reply(self, status: HTTPStatus, document: dict[str, Any]) -> None:
            self.send(status, json.dumps(document).encode(), {"Content-Type": "application/json"})

    return _Handler
