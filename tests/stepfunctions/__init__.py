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
* the API calls `amaas batch` makes (``tests.stepfunctions.api``: StartExecution, DescribeExecution,
  ListMapRuns, DescribeMapRun, ListTagsForResource), also over HTTP in AWS's JSON protocol, so boto3 clients
  reach it with ``AWS_ENDPOINT_URL_SFN``.

Anything outside that subset raises ``NotImplementedError`` rather than being skipped. Child executions run one
at a time (the handler's own concurrency is what is under test); retry waits are recorded, not slept.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.stepfunctions import api
from tests.stepfunctions.asl import StatesError, catches, csv_rows, evaluate, matches, path, place, state_field

REGION, ACCOUNT = "us-east-1", "123456789012"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
DEFAULT_MAX_BATCH_BYTES = 256 * 1024


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
    def call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """One API call in AWS's JSON shapes (``tests.stepfunctions.api``)."""
        return api.call(self, operation, request)

    @contextmanager
    def serve(self) -> Iterator[str]:
        """The API over HTTP; yields the endpoint URL."""
        with api.serve(self) as url:
            yield url

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

    # ------------------------------------------------------------------ the interpreter
    def _run(self, machine: dict[str, Any], data: Any, context: dict[str, Any], execution: Execution) -> Any:
        name = machine["StartAt"]
        while True:
            state = machine["States"][name]
            self.visited.add(name)
            kind = state["Type"]
            if kind == "Choice":
                name = next((c["Next"] for c in state["Choices"] if matches(c, data)), state.get("Default"))
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
            data = path(state.get("OutputPath", "$"), place(data, state.get("ResultPath", "$"), result), context)
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
                    ((i, r) for i, r in enumerate(state.get("Retry", [])) if catches(r["ErrorEquals"], exc.error)),
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
            max_concurrency=int(state_field(state, "MaxConcurrency", data, context, 0)),
            tolerated_failure_percentage=float(state_field(state, "ToleratedFailurePercentage", data, context, 0)),
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
            return csv_rows(body.decode(), config)
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
        most = int(state_field(batcher, "MaxItemsPerBatch", data, context, len(items) or 1))
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
