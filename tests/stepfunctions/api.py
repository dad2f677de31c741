"""The Step Functions API calls `amaas batch` makes (StartExecution, DescribeExecution, ListMapRuns,
DescribeMapRun, ListTagsForResource) against a ``LocalStepFunctions``, in AWS's JSON shapes, and over HTTP in
AWS's JSON 1.0 protocol so that boto3 clients reach it with ``AWS_ENDPOINT_URL_SFN``."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from tests.stepfunctions.asl import StatesError

if TYPE_CHECKING:
    from tests.stepfunctions import Execution, LocalStepFunctions


def call(machine: LocalStepFunctions, operation: str, request: dict[str, Any]) -> dict[str, Any]:
    """One API call in AWS's JSON shapes."""
    if operation == "StartExecution":
        if request["stateMachineArn"] != machine.arn:
            raise StatesError(
                "StateMachineDoesNotExist", f"State Machine Does Not Exist: '{request['stateMachineArn']}'"
            )
        execution = machine.start_execution(request.get("name") or str(uuid.uuid4()), request.get("input", "{}"))
        return {"executionArn": execution.arn, "startDate": execution.started}
    if operation == "DescribeExecution":
        e = _execution(machine, request["executionArn"])
        answer = {"executionArn": e.arn, "stateMachineArn": machine.arn, "name": e.name, "status": e.status,
                  "startDate": e.started, "input": e.input}  # fmt: skip
        optional = {"stopDate": e.stopped, "output": e.output, "error": e.error, "cause": e.cause}
        return answer | {k: v for k, v in optional.items() if v is not None}
    if operation == "ListMapRuns":
        e = _execution(machine, request["executionArn"])
        runs = [{"executionArn": e.arn, "mapRunArn": r.arn, "stateMachineArn": machine.arn, "startDate": r.started}
                | ({"stopDate": r.stopped} if r.stopped else {}) for r in e.map_runs]  # fmt: skip
        return {"mapRuns": runs}
    if operation == "DescribeMapRun":
        run = next((r for e in machine.executions.values() for r in e.map_runs if r.arn == request["mapRunArn"]), None)
        if run is None:
            raise StatesError("ResourceNotFound", f"Map Run Does Not Exist: '{request['mapRunArn']}'")
        return {"mapRunArn": run.arn, "executionArn": run.execution_arn, "status": run.status,
                "startDate": run.started, "maxConcurrency": run.max_concurrency,
                "toleratedFailurePercentage": run.tolerated_failure_percentage, "toleratedFailureCount": 0,
                "itemCounts": dict(run.items), "executionCounts": dict(run.executions),
                "redriveCount": 0} | ({"stopDate": run.stopped} if run.stopped else {})  # fmt: skip
    if operation == "ListTagsForResource":
        if request["resourceArn"] != machine.arn:
            raise StatesError("ResourceNotFound", f"Resource not found: '{request['resourceArn']}'")
        return {"tags": [{"key": k, "value": v} for k, v in machine.tags.items()]}
    raise NotImplementedError(f"Step Functions API {operation}")


def _execution(machine: LocalStepFunctions, arn: str) -> Execution:
    if arn not in machine.executions:
        raise StatesError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
    return machine.executions[arn]


@contextmanager
def serve(machine: LocalStepFunctions) -> Iterator[str]:
    """The API over HTTP (AWS JSON 1.0, as boto3 speaks it to Step Functions); yields the endpoint URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            operation = self.headers["X-Amz-Target"].split(".", 1)[1]
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            try:
                status, answer = 200, machine.call(operation, request)
            except StatesError as exc:
                status, answer = 400, {"__type": exc.error, "message": exc.cause}
            body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
