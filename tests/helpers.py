"""Shared test helpers: API Gateway events from tests/events/, a Lambda context, and the batch job function in
moto's S3."""

from __future__ import annotations

import base64
import importlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "tests" / "events"


def load_event(name: str) -> dict[str, Any]:
    """The event file tests/events/<name>.json, the same one `sam local invoke -e` takes."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return event


def event_image(event: dict[str, Any]) -> bytes:
    """The image bytes an event carries, raw or inside a JSON body."""
    if event["isBase64Encoded"]:
        return base64.b64decode(event["body"])
    return base64.b64decode(json.loads(event["body"])["image"])


@dataclass
class LambdaContext:
    """What the Lambda runtime passes as ``context``, with the attributes handlers read."""

    function_name: str = "amaas-api"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:amaas-api:live"
    aws_request_id: str = "6f9c1a3e-lambda-request"

    def get_remaining_time_in_millis(self) -> int:
        return 25_000


class Deadline(LambdaContext):
    """A Lambda context whose remaining time runs out after a number of checks."""

    def __init__(self, checks: int) -> None:
        super().__init__()
        self.checks = checks

    def get_remaining_time_in_millis(self) -> int:
        self.checks -= 1
        return 60_000 if self.checks >= 0 else 1_000


def encode_image(image: Any, fmt: str = "PNG", **options: Any) -> bytes:
    """A PIL image encoded in memory."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def changed_by_training(model: Any) -> set[str]:
    """Trains a 10-class, 32 px ``model`` for one epoch on 200 synthetic images and returns the state-dict
    entries that changed: what tests of a frozen backbone look at."""
    import torch

    from amaas.artifact.manifest import Preprocessing
    from amaas_export import data
    from amaas_export.train import train

    dataset = data.load("synthetic:200", Preprocessing(32, 32, (0, 0, 0), (1, 1, 1)), seed=0)
    prep = Preprocessing(32, 32, *data.mean_std(dataset.train))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, dataset.train, dataset.test, prep, epochs=1, batch_size=32, learning_rate=0.01, seed=0, report=print)
    after = model.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


# The job function's source bucket (the stack's JobSourceBucket), its output bucket, and a bucket it may not read
JOB_SOURCE, JOB_OUTPUT, ELSEWHERE = "amaas-photos", "amaas-batch-jobs", "someone-else"


@contextmanager
def job_function(artifact: Path, env: dict[str, str]) -> Iterator[tuple[Any, Any]]:
    """moto's S3 with the job buckets, and ``amaas.handlers.batch_job`` imported as Lambda imports it, with the
    environment template.yaml sets plus ``env``; yields an S3 client and the handler module."""
    import boto3
    import pytest
    from moto import mock_aws

    from amaas import storage

    with pytest.MonkeyPatch.context() as patch, mock_aws():
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AMAAS_MODEL_DIR", str(artifact))
        patch.setenv("AMAAS_S3_BUCKETS", JOB_SOURCE)
        for name, value in env.items():
            patch.setenv(name, value)
        storage._client.cache_clear()
        s3 = boto3.client("s3")
        for bucket in (JOB_SOURCE, JOB_OUTPUT, ELSEWHERE):
            s3.create_bucket(Bucket=bucket)
        sys.modules.pop("amaas.handlers.batch_job", None)
        try:
            yield s3, importlib.import_module("amaas.handlers.batch_job")
        finally:
            sys.modules.pop("amaas.handlers.batch_job", None)
            storage._client.cache_clear()
