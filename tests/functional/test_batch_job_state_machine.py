"""The batch job state machine run end to end, offline: the definition template.yaml deploys (through the SAM
transform and the definition substitutions) executed by ``tests/stepfunctions.py`` (moto's Step Functions cannot
run a Distributed Map with an ItemBatcher) against moto's S3, its child executions invoking the real job
function in this process. Then `amaas batch start | status | results` against the same, over HTTP."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest

from amaas.batch.results import job_result_key
from amaas_cli.main import main
from amaas_export.data import synthetic
from tests.helpers import LambdaContext, encode_image, job_function
from tests.infra.cfn import deployed, state_machine_definition
from tests.infra.conftest import JOB_OVERRIDES, JOB_VALUES, job_values, translate
from tests.stepfunctions import LambdaError, LocalStepFunctions

SOURCE, SCOPE = JOB_OVERRIDES["JobSourceBucket"], JOB_OVERRIDES["JobSourcePrefix"]
OUTPUT = JOB_VALUES["BatchBucket"]
# Small batches and a low threshold, so a handful of images makes several child executions
OVERRIDES = {**JOB_OVERRIDES, "JobBatchSize": 4, "JobToleratedFailurePercentage": 10}
FUNCTION = JOB_VALUES["BatchJobFunction.Arn"]
KEYS = [f"{SCOPE}{name}" for name in (
    "with space.png", "pic#2.png", "ünïcødé 猫.png", "a?b=c.png", "50%41.png", "plus+sign.png", "a,comma.png",
    *(f"trip/{i:02d}.png" for i in range(10)),
)]  # fmt: skip


@dataclass(frozen=True)
class Deployed:
    definition: dict[str, Any]
    tags: dict[str, str]


@pytest.fixture(scope="module")
def deployed_machine() -> Deployed:
    template = translate(OVERRIDES)
    values = job_values(template, OVERRIDES)
    resource = template["Resources"]["BatchJobStateMachine"]
    tags = {t["Key"]: deployed(t["Value"], values) for t in resource["Properties"]["Tags"]}
    return Deployed(state_machine_definition(resource, values), tags)


@dataclass
class Stack:
    s3: Any
    sfn: LocalStepFunctions
    handler: Callable[[dict[str, Any], Any], Any]
    invocations: list[list[str]]  # the keys of each batch the function was invoked with
    fail_when: Callable[[list[str]], str | None]  # an invocation error to raise instead, by batch

    def run(self, document: dict[str, Any], name: str) -> Any:
        execution = self.sfn.start_execution(name, json.dumps(document))
        self.sfn.wait()
        return execution


@pytest.fixture
def stack(deployed_machine: Deployed, artifact: Path) -> Iterator[Stack]:
    with job_function(artifact, {}) as (s3, module):
        handler = module.handler
        invocations: list[list[str]] = []

        def invoke(function: str, payload: Any) -> Any:
            """Lambda's Invoke: the payload crosses as JSON, a raised exception comes back as its errorType."""
            assert function == FUNCTION
            keys = [i if isinstance(i, str) else i["Key"] for i in payload["Items"]]
            invocations.append(keys)
            error = built.fail_when(keys)
            if error is not None:
                raise LambdaError(error, "as Lambda would report it")
            try:
                return json.loads(json.dumps(handler(json.loads(json.dumps(payload)), LambdaContext())))
            except Exception as exc:
                raise LambdaError(type(exc).__name__, str(exc)) from exc

        machine = LocalStepFunctions(
            deployed_machine.definition, s3=s3, invoke=invoke, name="amaas-batch-job", tags=deployed_machine.tags
        )
        built = Stack(s3, machine, handler, invocations, lambda keys: None)
        yield built


def image(i: int) -> bytes:
    return encode_image(synthetic.sample(synthetic.LABELS[i % len(synthetic.LABELS)], variant=i), "PNG")


def upload(stack: Stack, keys: list[str]) -> dict[str, str]:
    return {key: stack.s3.put_object(Bucket=SOURCE, Key=key, Body=image(i))["ETag"] for i, key in enumerate(keys)}


def job(source: dict[str, str], name: str) -> dict[str, Any]:
    return {"source": {"bucket": SOURCE, **source}, "output": {"bucket": OUTPUT, "prefix": f"results/{name}/"}}


def result(stack: Stack, key: str, name: str) -> dict[str, Any]:
    body = stack.s3.get_object(Bucket=OUTPUT, Key=job_result_key(f"results/{name}/", key))["Body"].read()
    document: dict[str, Any] = json.loads(body)
    return document


def child_outputs(stack: Stack, execution: Any) -> list[dict[str, Any]]:
    """What the ResultWriter wrote for the execution's map run: each child's output, from its SUCCEEDED files."""
    details = json.loads(execution.output)["map_run"]["ResultWriterDetails"]

    def read(key: str) -> Any:
        return json.loads(stack.s3.get_object(Bucket=details["Bucket"], Key=key)["Body"].read())

    records = [r for f in read(details["Key"])["ResultFiles"]["SUCCEEDED"] for r in read(f["Key"])]
    return [json.loads(r["Output"]) for r in records]


def test_a_prefix_job_classifies_every_object_once_and_a_rerun_redoes_only_what_is_missing(stack: Stack) -> None:
    # GIVEN 17 images under the job's folder, and one outside it
    etags = upload(stack, KEYS)
    stack.s3.put_object(Bucket=SOURCE, Key="private/diary.png", Body=image(0))

    # WHEN a job classifies the folder
    execution = stack.run(job({"prefix": SCOPE}, "first"), "first")

    # THEN it succeeds, in batches of JobBatchSize, each image with one result and nothing outside the folder
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert sorted(len(batch) for batch in stack.invocations) == [1, 4, 4, 4, 4]
    assert sorted(k for batch in stack.invocations for k in batch) == sorted(KEYS)
    for key in KEYS:
        stored = result(stack, key, "first")
        assert (stored["key"], stored["etag"], stored["status"]) == (key, etags[key], "ok")
    (run,) = execution.map_runs
    assert run.items == {"pending": 0, "running": 0, "succeeded": 17, "failed": 0, "timedOut": 0, "aborted": 0,
                         "resultsWritten": 17, "total": 17}  # fmt: skip
    assert run.max_concurrency == 100 and run.tolerated_failure_percentage == 10
    assert sum(o["classified"] for o in child_outputs(stack, execution)) == 17

    # GIVEN two results lost since
    for key in KEYS[:2]:
        stack.s3.delete_object(Bucket=OUTPUT, Key=job_result_key("results/first/", key))
    stack.invocations.clear()

    # WHEN the job runs again into the same output
    again = stack.run(job({"prefix": SCOPE}, "first"), "first-again")

    # THEN only those two are classified; every other image is skipped, its result untouched
    assert again.status == "SUCCEEDED"
    outputs = child_outputs(stack, again)
    assert (sum(o["classified"] for o in outputs), sum(o["skipped"] for o in outputs)) == (2, 15)
    assert [result(stack, k, "first")["etag"] for k in KEYS[:2]] == [etags[k] for k in KEYS[:2]]


def test_throttled_invocations_are_retried_with_backoff(stack: Stack) -> None:
    upload(stack, KEYS[:3])
    throttled = Counter[str]()

    def throttle_twice(keys: list[str]) -> str | None:
        throttled["n"] += 1
        return "Lambda.TooManyRequestsException" if throttled["n"] <= 2 else None

    stack.fail_when = throttle_twice

    execution = stack.run(job({"prefix": SCOPE}, "busy"), "busy")

    assert execution.status == "SUCCEEDED"
    assert stack.sfn.retry_delays == [("Lambda.TooManyRequestsException", 2), ("Lambda.TooManyRequestsException", 4)]
    assert all(result(stack, k, "busy")["status"] == "ok" for k in KEYS[:3])


def test_a_batch_failing_past_the_threshold_fails_the_job_and_a_rerun_finishes_only_it(stack: Stack) -> None:
    # GIVEN 17 images (batches of 4, 4, 4, 4 and 1 in listing order), and a function that crashes on the fourth
    # batch (4 of 17 images: 24%)
    upload(stack, KEYS)
    listing = sorted(KEYS, key=str.encode)
    doomed = listing[12]
    stack.fail_when = lambda keys: "Runtime.ExitError" if doomed in keys else None

    # WHEN the job runs, with 10% of images allowed to fail
    execution = stack.run(job({"prefix": SCOPE}, "crash"), "crash")

    # THEN the job fails on the threshold: the failed batch's images and those never started have no result
    assert (execution.status, execution.error) == ("FAILED", "States.ExceedToleratedFailureThreshold")
    (run,) = execution.map_runs
    (failed_batch,) = [batch for batch in stack.invocations if doomed in batch]
    assert failed_batch == listing[12:16]
    assert (run.items["succeeded"], run.items["failed"], run.items["aborted"]) == (12, 4, 1)
    stored = {o["Key"] for o in stack.s3.list_objects_v2(Bucket=OUTPUT, Prefix="results/crash/")["Contents"]}
    missing = [k for k in listing if job_result_key("results/crash/", k) not in stored]
    assert missing == listing[12:]

    # WHEN the cause is fixed and the job runs again
    stack.fail_when = lambda keys: None
    again = stack.run(job({"prefix": SCOPE}, "crash"), "crash-again")

    # THEN it succeeds, classifying just the five images that were missing
    assert again.status == "SUCCEEDED"
    assert sum(o["classified"] for o in child_outputs(stack, again)) == len(missing)
    assert all(result(stack, k, "crash")["status"] == "ok" for k in KEYS)


def inventory(stack: Stack, keys: list[str]) -> str:
    """An S3 Inventory report of ``keys`` in the job's folder: manifest.json plus one gzipped CSV, keys
    URL-encoded as S3 Inventory writes them. Returns the manifest's key."""
    folder = f"{SCOPE}inventory/{SOURCE}/all/2026-01-01T00-00Z"
    rows = io.StringIO()
    writer = csv.writer(rows, quoting=csv.QUOTE_ALL)
    for key in keys:
        head = stack.s3.head_object(Bucket=SOURCE, Key=key)
        writer.writerow([SOURCE, quote_plus(key, safe="/"), head["ContentLength"], head["ETag"].strip('"')])
    data_key = f"{SCOPE}inventory/{SOURCE}/all/data/part-0.csv.gz"
    stack.s3.put_object(Bucket=SOURCE, Key=data_key, Body=gzip.compress(rows.getvalue().encode()))
    manifest = {
        "sourceBucket": SOURCE,
        "destinationBucket": f"arn:aws:s3:::{SOURCE}",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size, ETag",
        "files": [{"key": data_key, "size": 1, "MD5checksum": "x"}],
    }
    stack.s3.put_object(Bucket=SOURCE, Key=f"{folder}/manifest.json", Body=json.dumps(manifest).encode())
    return f"{folder}/manifest.json"


def test_every_kind_of_source_and_every_refusal_runs_through_its_own_states(stack: Stack) -> None:
    keys = KEYS[:5]
    upload(stack, keys)
    lists = {"json": f"{SCOPE}lists/some.json", "csv": f"{SCOPE}lists/some.csv"}
    stack.s3.put_object(Bucket=SOURCE, Key=lists["json"], Body=json.dumps(keys).encode())
    stack.s3.put_object(Bucket=SOURCE, Key=lists["csv"], Body="".join(f'"{k}"\n' for k in keys).encode())
    manifest = inventory(stack, keys)

    # WHEN jobs name a JSON key list, a CSV key list (a key with a comma, quoted) and an S3 Inventory manifest
    runs = {
        "json": stack.run(job({"keys": lists["json"]}, "json"), "json"),
        "csv": stack.run(job({"keys": lists["csv"]}, "csv"), "csv"),
        "inventory": stack.run(job({"manifest": manifest}, "inventory"), "inventory"),
    }

    # THEN each classifies exactly the images named, under the same result names
    for name, execution in runs.items():
        assert execution.status == "SUCCEEDED", (name, execution.error, execution.cause)
        assert [result(stack, k, name)["key"] for k in keys] == keys
        assert all(result(stack, k, name)["status"] == "ok" for k in keys), name

    # WHEN jobs name another bucket, a folder outside the stack's, a key list of another kind, or another output
    stack.invocations.clear()
    refused = {
        "SourceOutsideScope": [
            {**job({"prefix": SCOPE}, "x"), "source": {"bucket": "someone-else", "prefix": SCOPE}},
            job({"prefix": "private/"}, "x"),
            job({"keys": f"{SCOPE}lists/some.txt"}, "x"),
        ],
        "OutputOutsideScope": [
            {**job({"prefix": SCOPE}, "x"), "output": {"bucket": "someone-else", "prefix": "results/x/"}},
            {**job({"prefix": SCOPE}, "x"), "output": {"bucket": OUTPUT, "prefix": "incoming/x/"}},
            {**job({"prefix": SCOPE}, "x"), "output": {"bucket": OUTPUT, "prefix": "results/"}},
        ],
    }
    for error, documents in refused.items():
        for i, document in enumerate(documents):
            execution = stack.run(document, f"refused-{error}-{i}")
            # THEN the job fails at once, naming the scope, before anything is listed or classified
            assert (execution.status, execution.error) == ("FAILED", error), document
            assert SOURCE in execution.cause or OUTPUT in execution.cause
            assert not execution.map_runs
    assert stack.invocations == []

    # AND together with the prefix job, every state of the definition has run
    stack.run(job({"prefix": SCOPE}, "prefix"), "prefix")
    definition = stack.sfn.definition
    every = set(definition["States"]) | {"Classify"}
    assert stack.sfn.visited == every


def test_the_cli_starts_a_job_shows_its_progress_and_gathers_its_results(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    upload(stack, KEYS)
    stack.s3.put_object(Bucket=SOURCE, Key=f"{SCOPE}corrupt.png", Body=b"not an image")
    with stack.sfn.serve() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", url)
        monkeypatch.setenv("AMAAS_BATCH_STATE_MACHINE", stack.sfn.arn)

        # WHEN a job is started on a bucket and folder outside the stack's, nothing starts
        assert main(["batch", "start", "--bucket", "someone-else", "--prefix", SCOPE]) == 2
        assert "read only bucket amaas-photos" in capsys.readouterr().err
        assert not stack.sfn.executions
        # nor is a job id or state machine that is not one asked about
        assert main(["batch", "status", "arn:aws:states:us-east-1:123456789012:stateMachine:x"]) == 2
        assert main(["batch", "status", "job1", "--state-machine", "amaas-batch-job"]) == 2
        assert capsys.readouterr().err.splitlines() == [
            "amaas batch status: arn:aws:states:us-east-1:123456789012:stateMachine:x is not a job id "
            "(an execution ARN)",
            "amaas batch status: amaas-batch-job is not a state machine ARN "
            "(arn:aws:states:<region>:<account>:stateMachine:<name>)",
        ]

        # WHEN it is started on the stack's folder
        assert main(["batch", "start", "--bucket", SOURCE, "--prefix", SCOPE, "--name", "photos-2026"]) == 0
        started = capsys.readouterr().out.splitlines()

        # THEN it prints the job's id first, and where the results go
        job_id = started[0]
        assert job_id == f"{stack.sfn.arn.replace(':stateMachine:', ':execution:')}:photos-2026"
        assert f"results go to s3://{OUTPUT}/results/photos-2026/" in started
        stack.sfn.wait()
        capsys.readouterr()  # the job function's log lines

        # WHEN its status is asked for, by id and by name
        assert main(["batch", "status", job_id]) == 0
        by_id = capsys.readouterr().out
        assert main(["batch", "status", "photos-2026"]) == 0
        assert capsys.readouterr().out == by_id

        # THEN the bar and the counters come from the map run
        assert "photos-2026  SUCCEEDED" in by_id
        assert f"[{'#' * 40}] 100.0%  18 / 18 images" in by_id
        assert "images: 18 done, 0 in failed batches, 0 running, 0 waiting" in by_id
        assert "batches: 5 done, 0 failed, 0 running, 0 waiting of 5" in by_id
        assert "100 at once, stops past 10% failed" in by_id

        # WHEN its results are gathered
        assert main(["batch", "results", job_id, "--out", str(tmp_path / "all.jsonl")]) == 0
        gathered = capsys.readouterr().out

    # THEN the table has one row per image (the map run's own files are not results) and the summary is written
    assert "18 images: 17 classified, 1 errors" in gathered and "no result" not in gathered
    assert f"summary: s3://{OUTPUT}/results/photos-2026/summary.jsonl" in gathered
    summary = stack.s3.get_object(Bucket=OUTPUT, Key="results/photos-2026/summary.jsonl")["Body"].read()
    assert [json.loads(line)["key"] for line in summary.splitlines()] == sorted([*KEYS, f"{SCOPE}corrupt.png"])
    assert (tmp_path / "all.jsonl").read_bytes() == summary


def test_status_renders_a_job_part_way_and_a_failed_one() -> None:
    from amaas_cli.batch_jobs import Progress, render

    counts = {"pending": 500, "running": 100, "succeeded": 350, "failed": 50, "timedOut": 0, "aborted": 0,
              "resultsWritten": 0, "total": 1000}  # fmt: skip
    batches = {k: v // 100 for k, v in counts.items()}
    running = render(Progress("big", "RUNNING", counts, batches, "RUNNING", 100, 5.0))

    assert running.splitlines()[1] == f"[{'#' * 14}{'x' * 2}{'-' * 24}]  40.0%  400 / 1,000 images"
    assert "images: 350 done, 50 in failed batches, 100 running, 500 waiting" in running

    failed = render(Progress("early", "FAILED", error="SourceOutsideScope", cause="A job reads only bucket b"))
    assert failed.splitlines() == [
        "early  FAILED",
        "no map run yet: the job has not started reading its objects",
        "error: SourceOutsideScope: A job reads only bucket b",
    ]
