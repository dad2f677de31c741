"""``amaas batch start | status | results JOB``: classify images already in S3 with the stack's job state machine
(a Step Functions Distributed Map over the objects; the job function classifies each batch).

    amaas batch start --state-machine <BatchJobStateMachineArn> --bucket photos --prefix albums/2024/
    amaas batch status <job id>      # a progress bar from the map run's counters
    amaas batch results <job id>     # the table, and <output>/summary.jsonl

A job's id is its execution ARN. The state machine's tags say where jobs may read (``amaas:job-source``) and
where they write by default (``amaas:job-output``); a job outside them is refused here, before it starts (the
state machine and its roles refuse it too).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from amaas.batch.results import is_result_key, job_result_key, json_lines, summary_under

ENV_STATE_MACHINE = "AMAAS_BATCH_STATE_MACHINE"
TAG_SOURCE = "amaas:job-source"
TAG_OUTPUT = "amaas:job-output"
# Step Functions execution names: 1-80 characters, none of whitespace, brackets, wildcards or these
_EXECUTION_NAME = re.compile(r"[^\s<>{}\[\]?*\"#%\\^|~`$&,;:/]{1,80}")
BAR_WIDTH = 40
# arn:<partition>:states:<region>:<account>:<stateMachine|execution>:<name>[:<execution name>]
_ARN = re.compile(r"arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:(stateMachine|execution):[^:\s]+(:[^:\s]+)?")


class JobError(Exception):
    """A job that cannot be started or found, with a message a person can act on (exit status 2)."""


@dataclass(frozen=True)
class Location:
    """``s3://bucket/prefix``: a bucket and a key prefix, taken literally."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, uri: str, *, folder: bool = False) -> Location:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not uri.startswith("s3://") or not bucket:
            raise JobError(f"{uri!r} is not an s3://bucket/prefix location")
        if folder and prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(bucket, prefix)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class Progress:
    """A job as `amaas batch status` shows it: the execution, and its map run's counters if it has one."""

    name: str
    status: str
    items: dict[str, int] | None = None
    batches: dict[str, int] | None = None
    map_run_status: str | None = None
    max_concurrency: int | None = None
    tolerated_failure_percentage: float | None = None
    error: str | None = None
    cause: str | None = None


def add_parsers(commands: Any) -> None:
    """``start`` and ``status`` under ``amaas batch``; ``results JOB`` shares ``amaas batch results``."""
    start = commands.add_parser("start", help="classify images already in S3 with the stack's job state machine")
    start.add_argument("--bucket", required=True, help="the bucket the images are in (the stack's JobSourceBucket)")
    source = start.add_mutually_exclusive_group(required=True)
    source.add_argument("--prefix", help="every object under this prefix (a folder ends in /)")
    source.add_argument("--manifest", help="the key of an S3 Inventory manifest.json listing the objects")
    source.add_argument("--keys", help="the key of a key list: a JSON array of keys, or a CSV with one key per line")
    start.add_argument("--out", help="where results go, s3://bucket/prefix/ (default: the stack's, under the job name)")
    start.add_argument("--name", help="the job's name (default: job-<UTC time>-<random>)")
    _add_state_machine(start)
    status = commands.add_parser("status", help="a job's progress: images done, failed and left")
    status.add_argument("job", help="the job id `amaas batch start` printed (or its name, with --state-machine)")
    status.add_argument("--watch", type=float, metavar="SECONDS", help="refresh until the job ends")
    _add_state_machine(status)


def add_results_arguments(results: argparse.ArgumentParser) -> None:
    results.add_argument("job", nargs="?", help="a job id from `amaas batch start` (or use --bucket and --prefix)")
    _add_state_machine(results)


def _add_state_machine(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-machine", help=f"the stack's BatchJobStateMachineArn output (default: ${ENV_STATE_MACHINE})"
    )


def main(args: argparse.Namespace) -> int:
    """Runs ``start``, ``status`` or ``results JOB`` against AWS; errors are one line on stderr."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        # the ARN names the region: no AWS configuration is needed beyond credentials
        arn = _state_machine(args) if args.batch_command == "start" else _job_arn(args)
        region = arn.split(":")[3]
        sfn = boto3.client("stepfunctions", region_name=region)
        if args.batch_command == "start":
            return start(args, sfn)
        if args.batch_command == "status":
            return status(args, sfn)
        return results(args, sfn, boto3.client("s3", region_name=region))
    except JobError as exc:
        print(f"amaas batch {args.batch_command}: {exc}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as exc:
        print(f"amaas batch {args.batch_command}: AWS refused or could not be reached: {exc}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------------- start


def start(args: argparse.Namespace, sfn: Any) -> int:
    machine = _state_machine(args)
    tags = {t["key"]: t["value"] for t in sfn.list_tags_for_resource(resourceArn=machine)["tags"]}
    if TAG_SOURCE not in tags or TAG_OUTPUT not in tags:
        raise JobError(f"{machine} is not an AMaaS job state machine (it has no {TAG_SOURCE} tag)")
    scope, default_output = Location.parse(tags[TAG_SOURCE]), Location.parse(tags[TAG_OUTPUT])
    name = args.name or f"job-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    if not _EXECUTION_NAME.fullmatch(name):
        raise JobError(f"{name!r} cannot name a job: 1-80 characters, no spaces, slashes or punctuation like #%&:,")
    source = job_source(args, scope)
    output = (
        Location.parse(args.out, folder=True)
        if args.out
        else Location(default_output.bucket, f"{default_output.prefix}{name}/")
    )
    if output.bucket != default_output.bucket or not output.prefix.startswith(default_output.prefix):
        raise JobError(f"this stack writes job results only under {default_output}; {output} is outside it")
    if len(output.prefix.encode()) > 512:
        raise JobError("the output prefix is longer than 512 bytes; results need the rest of S3's 1,024 for keys")
    document = {"source": source, "output": {"bucket": output.bucket, "prefix": output.prefix}}
    execution = sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps(document))
    job = execution["executionArn"]
    print(job)
    print(f"results go to {output}")
    print(f"follow with: amaas batch status {job}")
    print(f"gather with: amaas batch results {job}")
    return 0


def job_source(args: argparse.Namespace, scope: Location) -> dict[str, str]:
    """The execution input's ``source``, checked against where the stack may read."""
    if args.bucket != scope.bucket:
        raise JobError(f"this stack's jobs read only bucket {scope.bucket} (under {scope}), not {args.bucket}")
    if args.prefix is not None:
        kind, value = "prefix", args.prefix
    elif args.manifest is not None:
        kind, value = "manifest", args.manifest
        if not value.endswith("manifest.json"):
            raise JobError("--manifest is the key of an S3 Inventory manifest.json")
    else:
        kind, value = "keys", args.keys
        if not value.endswith((".json", ".csv")):
            raise JobError("--keys is the key of a .json (array of keys) or .csv (one key per line) key list")
    if not value.startswith(scope.prefix):
        raise JobError(f"this stack's jobs read only under {scope}; {args.bucket}/{value} is outside it")
    return {"bucket": args.bucket, kind: value}


# ---------------------------------------------------------------------- status


def status(args: argparse.Namespace, sfn: Any) -> int:
    job = _job_arn(args)
    while True:
        progress = describe(sfn, job)
        print(render(progress))
        if not args.watch or progress.status != "RUNNING":
            return 0 if progress.status in ("RUNNING", "SUCCEEDED") else 1
        time.sleep(args.watch)


def describe(sfn: Any, job: str) -> Progress:
    """The job's execution status and its map run's item and batch counters."""
    execution = sfn.describe_execution(executionArn=job)
    progress = Progress(
        name=execution["name"], status=execution["status"], error=execution.get("error"), cause=execution.get("cause")
    )
    runs = sfn.list_map_runs(executionArn=job)["mapRuns"]
    if not runs:
        return progress
    run = sfn.describe_map_run(mapRunArn=runs[-1]["mapRunArn"])
    return Progress(
        name=progress.name,
        status=progress.status,
        items=run["itemCounts"],
        batches=run["executionCounts"],
        map_run_status=run["status"],
        max_concurrency=run.get("maxConcurrency"),
        tolerated_failure_percentage=run.get("toleratedFailurePercentage"),
        error=progress.error,
        cause=progress.cause,
    )


def render(progress: Progress) -> str:
    """A few lines: the job and its state, a bar of images done (``#``) and in failed batches (``x``), counts."""
    lines = [f"{progress.name}  {progress.status}"]
    if progress.items is None or progress.batches is None:
        lines.append("no map run yet: the job has not started reading its objects")
    else:
        items, batches = progress.items, progress.batches
        total = items["total"]
        done, failed = items["succeeded"], items["failed"] + items["timedOut"] + items["aborted"]
        filled = round(BAR_WIDTH * done / total) if total else BAR_WIDTH
        broken = min(BAR_WIDTH - filled, round(BAR_WIDTH * failed / total)) if total else 0
        bar = "#" * filled + "x" * broken + "-" * (BAR_WIDTH - filled - broken)
        share = 100 * (done + failed) / total if total else 100.0
        lines.append(f"[{bar}] {share:5.1f}%  {done + failed:,} / {total:,} images")
        lines.append(
            f"images: {done:,} done, {failed:,} in failed batches, {items['running']:,} running, "
            f"{items['pending']:,} waiting"
        )
        lines.append(
            f"batches: {batches['succeeded']:,} done, {batches['failed'] + batches['timedOut'] + batches['aborted']:,} "
            f"failed, {batches['running']:,} running, {batches['pending']:,} waiting of {batches['total']:,} "
            f"(map run {progress.map_run_status}, {progress.max_concurrency} at once, "
            f"stops past {progress.tolerated_failure_percentage:g}% failed)"
        )
    if progress.error:
        lines.append(f"error: {progress.error}: {progress.cause or ''}".rstrip(": "))
    return "\n".join(lines)


# ---------------------------------------------------------------------- results


def results(args: argparse.Namespace, sfn: Any, s3: Any) -> int:
    from amaas_cli import jobs

    job = _job_arn(args)
    execution = sfn.describe_execution(executionArn=job)
    output = _output_of(execution)
    gathered = gather(s3, output)
    print(jobs.table(gathered))
    progress = describe(sfn, job)
    if progress.items is not None and progress.items["total"] > len(gathered):
        missing = progress.items["total"] - len(gathered)
        print(f"{missing:,} of {progress.items['total']:,} listed objects have no result (yet): batches running or "
              f"failed, or folder markers")  # fmt: skip
    key = summary_under(output.prefix)
    s3.put_object(Bucket=output.bucket, Key=key, Body=json_lines(gathered), ContentType="application/x-ndjson")
    print(f"summary: s3://{output.bucket}/{key}")
    if args.out:
        Path(args.out).write_bytes(json_lines(gathered))
    return 0


def gather(s3: Any, output: Location) -> list[dict[str, Any]]:
    """Every image result under the job's output prefix, in key order. A file counts only if it is where its
    own ``key`` puts it, so summary parts and the map run's result-writer files never pass for results."""
    found = []
    for key in _keys(s3, output):
        if not is_result_key(key):
            continue
        try:
            result = json.loads(s3.get_object(Bucket=output.bucket, Key=key)["Body"].read())
        except ValueError:
            continue
        named = isinstance(result, dict) and isinstance(result.get("key"), str)
        if named and job_result_key(output.prefix, result["key"]) == key:
            found.append(result)
    return sorted(found, key=lambda r: str(r["key"]))


def _keys(s3: Any, location: Location) -> Iterator[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=location.prefix):
        yield from (item["Key"] for item in page.get("Contents", []))


def _output_of(execution: dict[str, Any]) -> Location:
    try:
        output = json.loads(execution["input"])["output"]
        return Location(output["bucket"], output["prefix"])
    except (KeyError, TypeError, ValueError):
        raise JobError(f"{execution['executionArn']} names no output location: is it an AMaaS job?") from None


# ---------------------------------------------------------------------- naming


def _state_machine(args: argparse.Namespace) -> str:
    machine = args.state_machine or os.environ.get(ENV_STATE_MACHINE)
    if not machine:
        raise JobError(f"give --state-machine (the stack's BatchJobStateMachineArn output) or set {ENV_STATE_MACHINE}")
    if not _ARN.fullmatch(machine) or machine.split(":")[5] != "stateMachine":
        raise JobError(f"{machine} is not a state machine ARN (arn:aws:states:<region>:<account>:stateMachine:<name>)")
    return str(machine)


def _job_arn(args: argparse.Namespace) -> str:
    """A job id is its execution ARN; a bare name is looked up under the state machine."""
    job: str = args.job
    if job.startswith("arn:"):
        if not _ARN.fullmatch(job) or job.split(":")[5] != "execution" or job.count(":") != 7:
            raise JobError(f"{job} is not a job id (an execution ARN)")
        return job
    if not _EXECUTION_NAME.fullmatch(job):
        raise JobError(f"{job!r} is neither a job id (an execution ARN) nor a job name")
    return _state_machine(args).replace(":stateMachine:", ":execution:", 1) + f":{job}"
