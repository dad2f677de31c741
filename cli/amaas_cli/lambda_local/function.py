"""``LocalLambda``: invoke a built function the way Lambda does, cold once, then warm.

with LocalLambda(Path(".aws-sam/build"), "ApiFunction") as fn:
    result = fn.invoke(event)
    result.payload, result.report.init_ms, result.report.duration_ms, result.report.max_memory_mb
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from amaas_cli.lambda_local.process import Echo, FunctionProcess
from amaas_cli.lambda_local.runtime_api import Invocation
from amaas_cli.lambda_local.runtime_dir import Runtime, ensure_runtime, find_python
from amaas_cli.lambda_local.template import FunctionSpec, load_function

INIT_LIMIT_S = 10  # Lambda's init phase limit; a slower init is retried inside the invocation's own timeout
MAX_REQUEST_BYTES = 6 * 1024 * 1024


@dataclass(frozen=True)
class Report:
    """Lambda's REPORT line for one invocation."""

    request_id: str
    duration_ms: float
    billed_ms: int
    memory_size_mb: int
    max_memory_mb: int
    init_ms: float | None = None
    status: str | None = None  # "timeout" or "error" when the runtime did not answer
    error_type: str | None = None
    restore_ms: float | None = None  # SnapStart: the after-restore hooks, reported instead of Init Duration

    def line(self) -> str:
        fields = [
            f"REPORT RequestId: {self.request_id}",
            f"Duration: {self.duration_ms:.2f} ms",
            f"Billed Duration: {self.billed_ms} ms",
            f"Memory Size: {self.memory_size_mb} MB",
            f"Max Memory Used: {self.max_memory_mb} MB",
        ]
        if self.restore_ms is not None:
            fields.append(f"Restore Duration: {self.restore_ms:.2f} ms")
        elif self.init_ms is not None:
            fields.append(f"Init Duration: {self.init_ms:.2f} ms")
        if self.status:
            fields.append(f"Status: {self.status}")
        if self.error_type:
            fields.append(f"Error Type: {self.error_type}")
        return "\t".join(fields)


@dataclass(frozen=True)
class FunctionError:
    """What Lambda returns for a failed invocation (``X-Amz-Function-Error: Unhandled``)."""

    error_type: str
    message: str
    stack_trace: tuple[str, ...] = ()


class LambdaInvokeError(Exception):
    """An invocation failed: the function raised, its init failed, it timed out or its runtime exited."""

    def __init__(self, error: FunctionError) -> None:
        super().__init__(f"{error.error_type}: {error.message}")
        self.error = error


@dataclass(frozen=True)
class InvokeResult:
    """The payload Lambda would return, the REPORT figures, and the invocation's log lines."""

    raw: bytes
    report: Report
    logs: tuple[str, ...]
    error: FunctionError | None = None

    @property
    def payload(self) -> Any:
        """The response, parsed from JSON."""
        return json.loads(self.raw) if self.raw else None

    def check(self) -> Any:
        """The payload, or ``LambdaInvokeError`` when the invocation failed."""
        if self.error is not None:
            raise LambdaInvokeError(self.error)
        return self.payload


class LocalLambda:
    """One function of a ``sam build``, run like Lambda runs it: one sandbox process, reused while it lives.

    A failed init, a timeout or a crashed runtime discards the process; the next invocation starts a new one
    (a cold start again), as Lambda resets a sandbox.

    Args:
        build_dir: The ``sam build`` output.
        function: The function's logical id in the template.
        env: Variables added to the function's environment (``AWS_ENDPOINT_URL`` for a local AWS, say); any
            ``AWS_*`` credential given replaces the fake ones.
        parameter_overrides: Template parameter values.
        echo: Called with each log line as it happens (the function's own, START, END, REPORT).
        python: The interpreter, instead of searching for the runtime's ``python3.x``.
        python_options: Interpreter options for the runtime process, such as ``("-X", "importtime")``.
        runtime_cache: Where the runtime folder is cached.
        snapstart: Run the init phase as SnapStart does (``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``): the
            runtime runs its before-snapshot hooks, is "restored" in place (no snapshot is taken) and runs its
            after-restore hooks, which the first REPORT times as Restore Duration.
    """

    def __init__(
        self,
        build_dir: Path,
        function: str,
        *,
        env: dict[str, str] | None = None,
        parameter_overrides: dict[str, str] | None = None,
        echo: Echo | None = None,
        python: Path | None = None,
        python_options: Sequence[str] = (),
        runtime_cache: Path | None = None,
        snapstart: bool = False,
    ) -> None:
        self.spec: FunctionSpec = load_function(Path(build_dir), function, parameter_overrides)
        interpreter = python or find_python(self.spec.python_version, self.spec.architecture)
        self.runtime: Runtime = ensure_runtime(interpreter, cache=runtime_cache)
        self._env = dict(env or {})
        if snapstart:
            self._env["AWS_LAMBDA_INITIALIZATION_TYPE"] = "snap-start"
        self._echo = echo
        self._options = tuple(python_options)
        self._process: FunctionProcess | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> LocalLambda:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def process(self) -> FunctionProcess | None:
        """The live sandbox process, if any (its ``task`` and ``opt`` folders play /var/task and /opt)."""
        return self._process

    def start(self) -> FunctionProcess:
        """Starts the sandbox process now, so its init runs before the first invocation arrives."""
        if self._process is None:
            self._process = FunctionProcess(self.spec, self.runtime, self._env, self._echo, self._options)
        return self._process

    def close(self) -> None:
        with self._lock:
            self._discard()

    def invoke(self, event: Any, *, client_context: str | None = None) -> InvokeResult:
        """Runs one event through the function and waits for its answer (like a RequestResponse invoke).

        Args:
            event: A JSON-serialisable event, or its bytes.
            client_context: The base64 client context header, passed through to the runtime.

        Raises:
            ValueError: The event is over Lambda's 6 MB request limit (boto3 gets RequestTooLargeException).
        """
        payload = event if isinstance(event, bytes) else json.dumps(event).encode()
        if len(payload) > MAX_REQUEST_BYTES:
            raise ValueError(f"{len(payload)} bytes: Lambda takes at most {MAX_REQUEST_BYTES} for a synchronous invoke")
        with self._lock:
            process = self.start()
            cold = process.invocations == 0
            process.invocations += 1
            first_line = len(process.logs.lines)
            invocation = Invocation(str(uuid.uuid4()), payload, self.spec.timeout_s * 1000, self.spec.arn,
                                    _trace_id(), client_context)  # fmt: skip
            outcome = self._run(process, invocation)
            report, raw, error = self._outcome(process, invocation, outcome, cold)
            process.logs.add(f"END RequestId: {invocation.request_id}")
            process.logs.add(report.line())
            return InvokeResult(raw, report, tuple(process.logs.lines[first_line:]), error)

    def _run(self, process: FunctionProcess, invocation: Invocation) -> str:
        """Waits for the init phase (whose logs come before START, as in a Lambda log stream), then hands the
        event to the runtime and waits for its answer; returns how it ended."""
        invocation.submitted = time.monotonic()
        outcome = self._wait(process, None, process.spawned + INIT_LIMIT_S + self.spec.timeout_s)
        if outcome != "ready":
            return outcome
        process.logs.settle()
        process.logs.add(f"START RequestId: {invocation.request_id} Version: $LATEST")
        process.api.submit(invocation)
        return self._wait(process, invocation, None)

    def _outcome(
        self, process: FunctionProcess, invocation: Invocation, outcome: str, cold: bool
    ) -> tuple[Report, bytes, FunctionError | None]:
        """The REPORT figures, the payload and the error of an invocation that ended with ``outcome``."""
        memory = process.memory.sample()
        process.logs.settle()
        init_ms = process.init_ms if cold else None
        status = error_type = None
        if outcome == "answered":
            duration = (invocation.finished or 0.0) - (invocation.started or 0.0)
            raw = invocation.response
            error = None if invocation.error_type is None else _parse_error(raw, invocation.error_type)
        else:
            duration = time.monotonic() - (invocation.started or invocation.submitted)
            error, raw = self._failure(process, outcome, invocation.request_id)
            status = "timeout" if outcome == "timeout" else "error"
            error_type = None if outcome == "timeout" else error.error_type
            if invocation.started is None:  # it failed in the init phase
                process.logs.add(f"INIT_REPORT Init Duration: {duration * 1000:.2f} ms\tPhase: init\tStatus: {status}"
                                 f"\tError Type: {error.error_type}")  # fmt: skip
                process.logs.add(f"START RequestId: {invocation.request_id} Version: $LATEST")
                init_ms = None
            self._discard()
        duration_ms = duration * 1000
        # Since August 2025 Lambda bills the init phase of on-demand ZIP functions too: a cold start's Billed
        # Duration covers Init Duration + Duration, rounded up to the millisecond, as it long did for images.
        billed_ms = math.ceil(duration_ms + (init_ms or 0.0))
        restore_ms = process.restore_ms if cold and init_ms is not None else None
        report = Report(invocation.request_id, duration_ms, billed_ms, self.spec.memory_mb, memory,
                        init_ms, status, error_type, restore_ms)  # fmt: skip
        return report, raw, error

    def _wait(self, process: FunctionProcess, invocation: Invocation | None, limit: float | None) -> str:
        """Blocks until the runtime is ready (``invocation`` None) or has answered ``invocation``; returns how
        it ended: ready, answered, init_error, exited or timeout."""
        api = process.api
        with api.changed:
            while True:
                if invocation is None and api.ready.is_set():
                    return "ready"
                if invocation is not None and invocation.done.is_set():
                    return "answered"
                if api.init_error is not None:
                    return "init_error"
                if process.exited() is not None:
                    return "exited"
                if invocation is not None and invocation.started is not None:
                    limit = invocation.started + self.spec.timeout_s
                now = time.monotonic()
                if limit is not None and now >= limit:
                    return "timeout"
                api.changed.wait(0.25 if limit is None else min(limit - now, 0.25))

    def _failure(self, process: FunctionProcess, outcome: str, request_id: str) -> tuple[FunctionError, bytes]:
        """What Lambda answers when the runtime itself did not: an init error, a timeout, an exit."""
        init_error = process.api.init_error
        if outcome == "init_error" and init_error is not None:
            error = _parse_error(init_error.body, init_error.error_type)
            return error, init_error.body
        if outcome == "timeout":
            process.kill()
            seconds = f"{self.spec.timeout_s:.2f}"
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"
            process.logs.add(f"{stamp} {request_id} Task timed out after {seconds} seconds")
            error = FunctionError(
                "Sandbox.Timedout", f"RequestId: {request_id} Error: Task timed out after {seconds} seconds"
            )
        else:
            code = process.popen.wait()
            reason = f"signal: {signal.strsignal(-code) or -code}".lower() if code < 0 else f"exit status {code}"
            kind = "Runtime.OutOfMemory" if process.memory.exceeded else "Runtime.ExitError"
            error = FunctionError(kind, f"RequestId: {request_id} Error: Runtime exited with error: {reason}")
            process.logs.add(error.message)
            process.logs.add(kind)
        body = json.dumps({"errorType": error.error_type, "errorMessage": error.message}).encode()
        return error, body

    def _discard(self) -> None:
        if self._process is not None:
            self._process.close()
            self._process = None


def _parse_error(body: bytes, error_type: str) -> FunctionError:
    try:
        document = json.loads(body)
    except ValueError:
        return FunctionError(error_type, body.decode(errors="replace"))
    if not isinstance(document, dict):
        return FunctionError(error_type, str(document))
    trace = tuple(str(line) for line in document.get("stackTrace") or ())
    return FunctionError(str(document.get("errorType") or error_type), str(document.get("errorMessage", "")), trace)


def _trace_id() -> str:
    """An X-Ray trace header, marked unsampled: the SDK runs as on Lambda but sends nothing."""
    root = f"1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"
    return f"Root={root};Parent={uuid.uuid4().hex[:16]};Sampled=0;Lineage=local"
