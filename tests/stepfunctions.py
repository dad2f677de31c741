"""A local Step Functions for tests: runs the part of the Amazon States Language the batch job state machine uses,
with the Distributed Map semantics its correctness depends on, against real code:

* states: Choice (And/Or/Not, IsPresent, StringEquals, StringMatches), Pass (Parameters with paths and the
  intrinsics States.Format and States.StringToJson), Fail, Succeed, Task (``arn:aws:states:::lambda:invoke``
  with Retry: ErrorEquals, IntervalSeconds, MaxAttempts, BackoffRate, MaxDelaySeconds) and Map in DISTRIBUTED mode;
* Distributed Map: an S3 ItemReader (ListObjectsV2 over every page, with items shaped as Step Functions hands them
  over; getObject of a JSON array, a CSV file, or an S3 Inventory manifest and its gzipped CSV data files),
  ItemBatcher (MaxItemsPerBatch[Path], MaxInputBytesPerBatch, BatchInput), MaxConcurrency[Path],
  ToleratedFailurePercentage[Path], one child execution per batch with the map run's item and execution
  counters, and the ResultWriter's manifest and SUCCEEDED/FAILED files;
* the API calls `amaas batch` makes (StartExecution, DescribeExecution, ListMapRuns, DescribeMapRun,
  ListTagsForResource), also over HTTP in AWS's JSON protocol, so boto3 clients reach it with
  ``AWS_ENDPOINT_URL_SFN``.

Anything outside that subset raises ``NotImplementedError`` rather than being skipped. Child executions run one
at a time (the handler's own concurrency is what is under test); retry waits are recorded, not slept.
"""

from __future__ import annotations

import copy
import csv
import gzip
import io
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REGION, ACCOUNT = "us-east-1", "123456789012"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
DEFAULT_MAX_BATCH_BYTES = 256 * 1024


class StatesError(Exception):
    """A state's failure: ``error`` is what Retry and Catch match (``States.Runtime``, ``UpstreamError``...)."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}")
        self.error, self.cause = error, cause


class LambdaError(StatesError):
    """What an ``invoke`` function raises for a failed invocation: the function's ``errorType`` (its exception
    class) or Lambda's own (``Lambda.TooManyRequestsException``)."""


Invoke = Callable[[str, Any], Any]


@dataclass
class MapRun:
    arn: str
    execution_arn: str
    max_concurrency: int
    tolerated_failure_percentage: float
    started: float = field(default_factory=time.time)
    stopped: float | None = None
    status: str = "RUNNING"
    items: dict[str, int] = field(default_factory=dict)
    executions: dict[str, int] = field(default_factory=dict)


@dataclass
class Execution:
    arn: str
    name: str
    input: str
    started: float = field(default_factory=time.time)
    stopped: float | None = None
    status: str = "RUNNING"
    output: str | None = None
    error: str | None = None
    cause: str | None = None
    map_runs: list[MapRun] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


def _counts(total: int) -> dict[str, int]:
    keys = ("pending", "running", "succeeded", "failed", "timedOut", "aborted", "resultsWritten")
    return {**dict.fromkeys(keys, 0), "pending": total, "total": total}


class LocalStepFunctions:
    """One state machine, its executions run on background threads.

    Args:
        definition: The ASL document, definition substitutions already applied.
        s3: A boto3 S3 client (the item readers and the result writer use it).
        invoke: Calls a Lambda function by ARN with a payload; returns the response payload or raises
            ``LambdaError``.
        tags: The state machine's tags.
    """

    def __init__(
        self,
        definition: dict[str, Any],
        *,
        s3: Any,
        invoke: Invoke,
        name: str = "amaas-local-batch-job",
        tags: dict[str, str] | None = None,
    ) -> None:
        self.definition, self.s3, self.invoke = definition, s3, invoke
        self.arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"
        self.tags = dict(tags or {})
        self.executions: dict[str, Execution] = {}
        self.retry_delays: list[tuple[str, float]] = []  # (error, nominal wait) for every retry taken
        self.visited: set[str] = set()
        self.invocations = 0

    # ------------------------------------------------------------------ the API
    def start_execution(self, name: str, input: str) -> Execution:
        arn = self.arn.replace(":stateMachine:", ":execution:") + f":{name}"
        if arn in self.executions:
            raise StatesError("ExecutionAlreadyExists", f"Execution Already Exists: '{arn}'")
        execution = Execution(arn, name, input)
        self.executions[arn] = execution
        threading.Thread(target=self._run_execution, args=(execution,), daemon=True).start()
        return execution

    def wait(self, timeout: float = 120) -> None:
        """Until every execution started so far has ended."""
        for execution in list(self.executions.values()):
            assert execution.done.wait(timeout), f"{execution.name} did not finish"

    def _run_execution(self, execution: Execution) -> None:
        context = {
            "Execution": {"Id": execution.arn, "Name": execution.name, "Input": json.loads(execution.input)},
            "StateMachine": {"Id": self.arn},
        }
        try:
            output = self._run(self.definition, json.loads(execution.input), context, execution)
            execution.status, execution.output = "SUCCEEDED", json.dumps(output)
        except StatesError as exc:
            execution.status, execution.error, execution.cause = "FAILED", exc.error, exc.cause
        except Exception as exc:  # noqa: BLE001 - a bug here, or an ASL feature it lacks: the execution says so
            execution.status, execution.error, execution.cause = "FAILED", "LocalStepFunctions.Bug", repr(exc)
        execution.stopped = time.time()
        execution.done.set()

    def call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """One API call in AWS's JSON shapes."""
        if operation == "StartExecution":
            if request["stateMachineArn"] != self.arn:
                raise StatesError(
                    "StateMachineDoesNotExist", f"State Machine Does Not Exist: '{request['stateMachineArn']}'"
                )
            execution = self.start_execution(request.get("name") or str(uuid.uuid4()), request.get("input", "{}"))
            return {"executionArn": execution.arn, "startDate": execution.started}
        if operation == "DescribeExecution":
            e = self._execution(request["executionArn"])
            answer = {"executionArn": e.arn, "stateMachineArn": self.arn, "name": e.name, "status": e.status,
                      "startDate": e.started, "input": e.input}  # fmt: skip
            optional = {"stopDate": e.stopped, "output": e.output, "error": e.error, "cause": e.cause}
            return answer | {k: v for k, v in optional.items() if v is not None}
        if operation == "ListMapRuns":
            e = self._execution(request["executionArn"])
            runs = [{"executionArn": e.arn, "mapRunArn": r.arn, "stateMachineArn": self.arn, "startDate": r.started}
                    | ({"stopDate": r.stopped} if r.stopped else {}) for r in e.map_runs]  # fmt: skip
            return {"mapRuns": runs}
        if operation == "DescribeMapRun":
            run = next((r for e in self.executions.values() for r in e.map_runs if r.arn == request["mapRunArn"]), None)
            if run is None:
                raise StatesError("ResourceNotFound", f"Map Run Does Not Exist: '{request['mapRunArn']}'")
            return {"mapRunArn": run.arn, "executionArn": run.execution_arn, "status": run.status,
                    "startDate": run.started, "maxConcurrency": run.max_concurrency,
                    "toleratedFailurePercentage": run.tolerated_failure_percentage, "toleratedFailureCount": 0,
                    "itemCounts": dict(run.items), "executionCounts": dict(run.executions),
                    "redriveCount": 0} | ({"stopDate": run.stopped} if run.stopped else {})  # fmt: skip
        if operation == "ListTagsForResource":
            if request["resourceArn"] != self.arn:
                raise StatesError("ResourceNotFound", f"Resource not found: '{request['resourceArn']}'")
            return {"tags": [{"key": k, "value": v} for k, v in self.tags.items()]}
        raise NotImplementedError(f"Step Functions API {operation}")

    def _execution(self, arn: str) -> Execution:
        if arn not in self.executions:
            raise StatesError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
        return self.executions[arn]

    @contextmanager
    def serve(self) -> Iterator[str]:
        """The API over HTTP (AWS JSON 1.0, as boto3 speaks it to Step Functions); yields the endpoint URL."""
        machine = self

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

    # ------------------------------------------------------------------ the interpreter
    def _run(self, machine: dict[str, Any], data: Any, context: dict[str, Any], execution: Execution) -> Any:
        name = machine["StartAt"]
        while True:
            state = machine["States"][name]
            self.visited.add(name)
            kind = state["Type"]
            if kind == "Choice":
                name = next((c["Next"] for c in state["Choices"] if _matches(c, data)), state.get("Default"))
                if name is None:
                    raise StatesError("States.NoChoiceMatched", "no choice rule matched and there is no Default")
                continue
            if kind == "Fail":
                raise StatesError(state.get("Error", ""), state.get("Cause", ""))
            if kind == "Succeed":
                return data
            effective = path(state.get("InputPath", "$"), data, context)
            if kind == "Pass":
                result = evaluate(state["Parameters"], effective, context) if "Parameters" in state else effective
            elif kind == "Task":
                result = self._task(state, effective, context)
            elif kind == "Map":
                result = self._map(state, name, effective, context, execution)
            else:
                raise NotImplementedError(f"state type {kind}")
            if "ResultSelector" in state:
                result = evaluate(state["ResultSelector"], result, context)
            data = path(state.get("OutputPath", "$"), _place(data, state.get("ResultPath", "$"), result), context)
            if state.get("End"):
                return data
            name = state["Next"]

    def _task(self, state: dict[str, Any], data: Any, context: dict[str, Any]) -> Any:
        if state["Resource"] != LAMBDA_INVOKE:
            raise NotImplementedError(f"task resource {state['Resource']}")
        parameters = evaluate(state["Parameters"], data, context)
        attempts: dict[int, int] = {}
        while True:
            try:
                self.invocations += 1
                payload = self.invoke(parameters["FunctionName"], parameters["Payload"])
                return {"ExecutedVersion": "$LATEST", "Payload": payload, "StatusCode": 200}
            except LambdaError as exc:
                index, retrier = next(
                    ((i, r) for i, r in enumerate(state.get("Retry", [])) if _catches(r["ErrorEquals"], exc.error)),
                    (-1, None),
                )
                if retrier is None or attempts.get(index, 0) >= retrier.get("MaxAttempts", 3):
                    raise
                wait = retrier.get("IntervalSeconds", 1) * retrier.get("BackoffRate", 2.0) ** attempts.get(index, 0)
                self.retry_delays.append((exc.error, min(wait, retrier.get("MaxDelaySeconds", wait))))
                attempts[index] = attempts.get(index, 0) + 1

    def _map(self, state: dict[str, Any], name: str, data: Any, context: dict[str, Any], execution: Execution) -> Any:
        processor = state["ItemProcessor"]
        if processor.get("ProcessorConfig", {}).get("Mode") != "DISTRIBUTED":
            raise NotImplementedError("inline Map")
        items = self._read_items(state["ItemReader"], data, context)
        batches = self._batches(state.get("ItemBatcher"), items, data, context)
        run = MapRun(
            arn=f"arn:aws:states:{REGION}:{ACCOUNT}:mapRun:{execution.arn.split(':')[-2]}/{name}:{uuid.uuid4()}",
            execution_arn=execution.arn,
            max_concurrency=int(_field(state, "MaxConcurrency", data, context, 0)),
            tolerated_failure_percentage=float(_field(state, "ToleratedFailurePercentage", data, context, 0)),
            items=_counts(len(items)),
            executions=_counts(len(batches)),
        )
        execution.map_runs.append(run)
        children: list[dict[str, Any]] = []
        failure: StatesError | None = None
        for index, (child_input, size) in enumerate(batches):
            if failure is not None:  # past the failure threshold: nothing more starts
                for counts, n in ((run.items, size), (run.executions, 1)):
                    counts["pending"] -= n
                    counts["aborted"] += n
                continue
            child_name = str(uuid.uuid4())
            child_arn = f"{self.arn.replace(':stateMachine:', ':execution:')}/{name}:{child_name}"
            child_context = {**context, "Execution": {"Id": child_arn, "Name": child_name, "Input": child_input}}
            record: dict[str, Any] = {"ExecutionArn": child_arn, "Input": json.dumps(child_input), "Name": child_name}
            try:
                output = self._run(processor, child_input, child_context, execution)
                outcome = "succeeded"
                record |= {"Status": "SUCCEEDED", "Output": json.dumps(output)}
            except StatesError as exc:
                outcome = "failed"
                record |= {"Status": "FAILED", "Error": exc.error, "Cause": exc.cause}
            children.append(record)
            for counts, n in ((run.items, size), (run.executions, 1)):
                counts["pending"] -= n
                counts[outcome] += n
            if run.items["failed"] * 100 > run.tolerated_failure_percentage * run.items["total"]:
                failure = StatesError(
                    "States.ExceedToleratedFailureThreshold",
                    f"The specified tolerated failure threshold was exceeded (batch {index})",
                )
        details = self._write_results(state.get("ResultWriter"), run, children, data, context)
        run.items["resultsWritten"] = run.items["succeeded"] + run.items["failed"] if details else 0
        run.status, run.stopped = ("FAILED" if failure else "SUCCEEDED"), time.time()
        if failure is not None:
            raise failure
        return {"MapRunArn": run.arn} | ({"ResultWriterDetails": details} if details else {})

    def _read_items(self, reader: dict[str, Any], data: Any, context: dict[str, Any]) -> list[Any]:
        parameters = evaluate(reader["Parameters"], data, context)
        if reader["Resource"] == "arn:aws:states:::s3:listObjectsV2":
            return listed_items(self.s3, **parameters)
        if reader["Resource"] != "arn:aws:states:::s3:getObject":
            raise NotImplementedError(f"item reader {reader['Resource']}")
        config = reader.get("ReaderConfig", {})
        body = self.s3.get_object(**parameters)["Body"].read()
        kind = config.get("InputType")
        if kind == "JSON":
            items = json.loads(body)
            if not isinstance(items, list):
                raise StatesError("States.ItemReaderFailed", "the JSON file does not hold an array")
            return items
        if kind == "CSV":
            return _csv_rows(body.decode(), config)
        if kind == "MANIFEST":
            manifest = json.loads(body)
            bucket = manifest["destinationBucket"].removeprefix("arn:aws:s3:::")
            schema = [c.strip() for c in manifest["fileSchema"].split(",")]
            rows = []
            for data_file in manifest["files"]:
                raw = gzip.decompress(self.s3.get_object(Bucket=bucket, Key=data_file["key"])["Body"].read())
                rows += [dict(zip(schema, row, strict=True)) for row in csv.reader(io.StringIO(raw.decode()))]
            return rows
        raise NotImplementedError(f"ReaderConfig.InputType {kind}")

    def _batches(
        self, batcher: dict[str, Any] | None, items: list[Any], data: Any, context: dict[str, Any]
    ) -> list[tuple[Any, int]]:
        """Each child's input and how many items it holds."""
        if batcher is None:
            return [(item, 1) for item in items]
        most = int(_field(batcher, "MaxItemsPerBatch", data, context, len(items) or 1))
        most_bytes = int(batcher.get("MaxInputBytesPerBatch", DEFAULT_MAX_BATCH_BYTES))
        batch_input = evaluate(batcher.get("BatchInput", {}), data, context)
        batches: list[list[Any]] = [[]]
        for item in items:
            candidate = [*batches[-1], item]
            too_big = len(json.dumps({"BatchInput": batch_input, "Items": candidate}).encode()) > most_bytes
            if batches[-1] and (len(candidate) > most or too_big):
                batches.append([item])
            else:
                batches[-1] = candidate
        return [({"BatchInput": batch_input, "Items": b}, len(b)) for b in batches if b]

    def _write_results(
        self, writer: dict[str, Any] | None, run: MapRun, children: list[dict[str, Any]], data: Any, context: Any
    ) -> dict[str, str] | None:
        if writer is None:
            return None
        if writer["Resource"] != "arn:aws:states:::s3:putObject":
            raise NotImplementedError(f"result writer {writer['Resource']}")
        parameters = evaluate(writer["Parameters"], data, context)
        bucket, folder = parameters["Bucket"], f"{parameters.get('Prefix', '')}/{run.arn.rsplit(':', 1)[1]}"
        files: dict[str, list[dict[str, Any]]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
        for status in ("SUCCEEDED", "FAILED"):
            records = [c for c in children if c["Status"] == status]
            if records:
                body = json.dumps(records).encode()
                key = f"{folder}/{status}_0.json"
                self.s3.put_object(Bucket=bucket, Key=key, Body=body)
                files[status].append({"Key": key, "Size": len(body)})
        manifest = {"DestinationBucket": bucket, "MapRunArn": run.arn, "ResultFiles": files}
        self.s3.put_object(Bucket=bucket, Key=f"{folder}/manifest.json", Body=json.dumps(manifest).encode())
        return {"Bucket": bucket, "Key": f"{folder}/manifest.json"}


def listed_items(s3: Any, **parameters: Any) -> list[dict[str, Any]]:
    """Every object a ListObjectsV2 item reader hands over, every page, shaped as Step Functions shapes them:
    ``Etag`` (not ``ETag``, quotes kept) and ``LastModified`` in epoch seconds."""
    items = []
    for page in s3.get_paginator("list_objects_v2").paginate(**parameters):
        items += [{"Etag": o["ETag"], "Key": o["Key"], "LastModified": int(o["LastModified"].timestamp()),
                   "Size": o["Size"], "StorageClass": o.get("StorageClass", "STANDARD")}
                  for o in page.get("Contents", [])]  # fmt: skip
    return items


# ---------------------------------------------------------------------- paths, templates, choice rules


def path(expression: str, data: Any, context: dict[str, Any]) -> Any:
    """``$``, ``$.a.b`` and ``$$.a.b`` (the context object); a missing field is States.Runtime, as on AWS."""
    if expression == "$":
        return data
    if expression.startswith("$$."):
        node, rest = context, expression[3:]
    elif expression.startswith("$."):
        node, rest = data, expression[2:]
    else:
        raise NotImplementedError(f"path {expression}")
    for part in rest.split("."):
        if not isinstance(node, dict) or part not in node:
            raise StatesError("States.Runtime", f"The JSONPath '{expression}' could not be found in the input")
        node = node[part]
    return node


def _present(expression: str, data: Any) -> bool:
    try:
        path(expression, data, {})
    except StatesError:
        return False
    return True


def _place(data: Any, result_path: str | None, result: Any) -> Any:
    if result_path == "$":
        return result
    if result_path is None:
        return data
    if not result_path.startswith("$.") or not isinstance(data, dict):
        raise NotImplementedError(f"ResultPath {result_path}")
    placed = copy.deepcopy(data)
    node = placed
    *parents, last = result_path[2:].split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = result
    return placed


def evaluate(template: Any, data: Any, context: dict[str, Any]) -> Any:
    """A payload template: keys ending in ``.$`` take a path or an intrinsic function; the rest are literal."""
    if isinstance(template, dict):
        return {
            k.removesuffix(".$"): _expression(v, data, context) if k.endswith(".$") else evaluate(v, data, context)
            for k, v in template.items()
        }
    if isinstance(template, list):
        return [evaluate(v, data, context) for v in template]
    return template


_INTRINSIC = re.compile(r"^(States\.\w+)\((.*)\)$", re.DOTALL)
_ARGUMENT = re.compile(r"\s*(?:'((?:[^'\\]|\\.)*)'|(\$\$?[^,\s]*))\s*(?:,|$)")


def _expression(expression: str, data: Any, context: dict[str, Any]) -> Any:
    call = _INTRINSIC.match(expression)
    if call is None:
        return path(expression, data, context)
    function, raw = call.groups()
    arguments: list[Any] = []
    position = 0
    while position < len(raw):
        argument = _ARGUMENT.match(raw, position)
        if argument is None:
            raise NotImplementedError(f"intrinsic arguments {raw!r}")
        literal, reference = argument.groups()
        arguments.append(re.sub(r"\\(.)", r"\1", literal) if literal is not None else path(reference, data, context))
        position = argument.end()
    if function == "States.StringToJson":
        return json.loads(arguments[0])
    if function == "States.Format":
        template, *values = arguments
        pieces = template.split("{}")
        if len(pieces) != len(values) + 1:
            raise StatesError("States.IntrinsicFailure", f"{function}: arguments do not match the template")
        return pieces[0] + "".join(str(value) + piece for value, piece in zip(values, pieces[1:], strict=True))
    raise NotImplementedError(f"intrinsic {function}")


def _matches(rule: dict[str, Any], data: Any) -> bool:
    if "And" in rule:
        return all(_matches(r, data) for r in rule["And"])  # short-circuits, as AWS's evaluation does
    if "Or" in rule:
        return any(_matches(r, data) for r in rule["Or"])
    if "Not" in rule:
        return not _matches(rule["Not"], data)
    variable = rule["Variable"]
    if "IsPresent" in rule:
        return _present(variable, data) == rule["IsPresent"]
    value = path(variable, data, {})
    if "StringEquals" in rule:
        return isinstance(value, str) and value == rule["StringEquals"]
    if "StringMatches" in rule:
        return isinstance(value, str) and _wildcard(rule["StringMatches"]).fullmatch(value) is not None
    raise NotImplementedError(f"choice rule {sorted(rule)}")


def _wildcard(pattern: str) -> re.Pattern[str]:
    """StringMatches: ``*`` is any run of characters, ``\\*`` a literal star."""
    parts = re.split(r"(\\\*|\*)", pattern)
    return re.compile("".join(".*" if p == "*" else re.escape("*" if p == "\\*" else p) for p in parts), re.DOTALL)


def _catches(errors: list[str], error: str) -> bool:
    return error in errors or "States.ALL" in errors or ("States.TaskFailed" in errors and error != "States.Timeout")


def _field(state: dict[str, Any], name: str, data: Any, context: dict[str, Any], default: Any) -> Any:
    if name in state:
        return state[name]
    if f"{name}Path" in state:
        return path(state[f"{name}Path"], data, context)
    return default


def _csv_rows(text: str, config: dict[str, Any]) -> list[dict[str, str]]:
    rows = list(csv.reader(io.StringIO(text)))
    if config.get("CSVHeaderLocation", "FIRST_ROW") == "FIRST_ROW":
        header, rows = rows[0], rows[1:]
    else:
        header = config["CSVHeaders"]
    return [dict(zip(header, row, strict=False)) for row in rows if row]
