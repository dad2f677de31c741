"""Batch classification end to end against moto's S3 and SQS: `amaas batch submit` uploads a folder, S3
notifies the queue, a poller drives the real batch handler the way Lambda's SQS event source does
(partial batch responses, visibility timeout, three receives then the DLQ), and `amaas batch results`
gathers the table. Plus `amaas batch run`, the same classification on a local folder with no AWS."""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from amaas import storage
from amaas.artifact.model import Model
from amaas.batch import result_key
from amaas_cli.main import main
from amaas_export.data import synthetic
from tests.helpers import LambdaContext, encode_image

BUCKET = "amaas-batch-test"
GOOD = ("star", "ring", "heart", "cross", "circle", "bar")


def write_folder(folder: Path) -> None:
    """Six good images (two in a sub-folder, two as JPEG) and two that are not images at all."""
    for i, label in enumerate(GOOD):
        image = synthetic.sample(label, variant=1)
        target = folder / ("nested" if i < 2 else "") / f"{label}.{'jpg' if i % 3 == 2 else 'png'}"
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, quality=95) if target.suffix == ".jpg" else image.save(target)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not the rest of a png")
    (folder / "truncated.jpg").write_bytes(encode_image(synthetic.sample("star"), "JPEG")[:300])


@dataclass
class Aws:
    s3: Any
    sqs: Any
    queue: str
    dlq: str
    handler: Any
    rounds: list[list[str]] = field(default_factory=list)  # message ids reported for retry, per poll


@pytest.fixture
def aws(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AMAAS_MODEL_DIR", str(artifact))
    with mock_aws():
        storage._client.cache_clear()
        s3, sqs = boto3.client("s3"), boto3.client("sqs")
        dlq = sqs.create_queue(QueueName="batch-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})
        queue = sqs.create_queue(QueueName="batch", Attributes={"VisibilityTimeout": "1", "RedrivePolicy": redrive})[
            "QueueUrl"
        ]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_notification_configuration(
            Bucket=BUCKET,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"],
                     "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "incoming/"}]}}}
                ]
            },
        )  # fmt: skip
        sys.modules.pop("amaas.handlers.batch", None)
        handler = importlib.import_module("amaas.handlers.batch").handler
        yield Aws(s3, sqs, queue, dlq, handler)
        sys.modules.pop("amaas.handlers.batch", None)
        storage._client.cache_clear()


def poll_until_drained(aws: Aws, *, max_rounds: int = 12) -> None:
    """What Lambda's SQS event source does: receive up to 10, invoke, delete what succeeded; failures come
    back after the visibility timeout (1 s here)."""
    for _ in range(max_rounds):
        messages = aws.sqs.receive_message(
            QueueUrl=aws.queue, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            if not in_flight(aws):
                return
            time.sleep(1.1)
            continue
        event = {
            "Records": [
                {"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                 "attributes": m["Attributes"], "eventSource": "aws:sqs"}
                for m in messages
            ]
        }  # fmt: skip
        response = aws.handler(event, LambdaContext())
        failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
        aws.rounds.append(failed)
        for m in messages:
            if m["MessageId"] not in failed:
                aws.sqs.delete_message(QueueUrl=aws.queue, ReceiptHandle=m["ReceiptHandle"])
        time.sleep(1.1)
    pytest.fail("the queue did not drain")


def in_flight(aws: Aws) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = aws.sqs.get_queue_attributes(QueueUrl=aws.queue, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def result_keys(aws: Aws, job: str) -> list[str]:
    listing = aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"results/{job}/").get("Contents", [])
    return sorted(o["Key"] for o in listing if "/_summary/" not in o["Key"])


def test_nothing_lost_nothing_doubled(
    aws: Aws, artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a folder of good and corrupt images, submitted with the CLI
    folder = tmp_path / "photos"
    write_folder(folder)
    assert main(["batch", "submit", str(folder), "--bucket", BUCKET, "--prefix", "job1"]) == 0
    assert "submitted 8 images" in capsys.readouterr().out
    # AND an image deleted (say, expired) before its notification is worked
    aws.s3.put_object(Bucket=BUCKET, Key="incoming/job1/gone.png", Body=encode_image(synthetic.sample("star"), "PNG"))
    aws.s3.delete_object(Bucket=BUCKET, Key="incoming/job1/gone.png")
    # AND one notification delivered twice (SQS is at-least-once) and one message that is no S3 event
    first = next(
        m for m in aws.sqs.receive_message(QueueUrl=aws.queue, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
        if "Records" in m["Body"] and "gone.png" not in m["Body"]
    )  # fmt: skip
    duplicated = result_key(unquote_plus(json.loads(first["Body"])["Records"][0]["s3"]["object"]["key"]))
    aws.sqs.send_message(QueueUrl=aws.queue, MessageBody=first["Body"])
    aws.sqs.send_message(QueueUrl=aws.queue, MessageBody="definitely not an S3 event")
    # AND S3 failing once, transiently, for one image
    real_get = storage._client().get_object
    failed_once: list[str] = []

    def flaky_get(**kwargs: Any) -> Any:
        if kwargs["Key"].endswith("heart.jpg") and not failed_once:
            failed_once.append(kwargs["Key"])
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "reduce your request rate"}}, "GetObject")
        return real_get(**kwargs)

    monkeypatch.setattr(storage._client(), "get_object", flaky_get)
    writes: Counter[str] = Counter()
    real_put = storage.put

    def counting_put(bucket: str, key: str, body: bytes, content_type: str, **condition: Any) -> bool:
        writes[key] += 1
        return real_put(bucket, key, body, content_type, **condition)

    monkeypatch.setattr(storage, "put", counting_put)

    # WHEN the queue is worked until empty
    poll_until_drained(aws)

    # THEN every image has exactly one result: classified, or an error result for the corrupt and vanished ones
    keys = result_keys(aws, "job1")
    assert len(keys) == 9 and len(set(keys)) == 9
    results = {
        k.removeprefix("results/job1/"): json.loads(aws.s3.get_object(Bucket=BUCKET, Key=k)["Body"].read())
        for k in keys
    }
    classifier = Model(artifact)
    for name, result in results.items():
        if Path(name).stem.split(".")[0] in GOOD:  # the same answer the API gives for the same file
            (expected,) = classifier.infer([(folder / name.removesuffix(".json")).read_bytes()], k=1).results
            assert result["status"] == "ok" and result["predictions"][0]["label"] == expected[0].label, name
        elif name == "gone.png.json":
            assert result["status"] == "error" and result["error"] == "image_not_found", result
        else:
            assert result["status"] == "error" and result["error"] == "invalid_image", name
    # AND the duplicated delivery was worked twice and rewrote the same key; every other image was written once
    per_image = {key: count for key, count in writes.items() if key.endswith(".json")}
    assert per_image.pop(duplicated) == 2
    assert set(per_image.values()) == {1} and len(per_image) == 8
    # AND only two messages were ever sent back: the transient one once, the poison one three times
    retries = Counter(message for round_ in aws.rounds for message in round_)
    assert failed_once and sorted(retries.values()) == [1, 3]
    # AND the poison message ended in the DLQ (SQS moves it on the receive after the third)
    dead = aws.sqs.receive_message(QueueUrl=aws.dlq, MaxNumberOfMessages=10)
    assert [m["Body"] for m in dead["Messages"]] == ["definitely not an S3 event"]
    # AND the streamed summary parts, merged by image key, cover every image
    parts = [k for k in writes if "/_summary/" in k]
    lines = [json.loads(line) for k in parts for line in read(aws, k).splitlines()]
    assert {r["key"] for r in lines} == {f"incoming/job1/{name.removesuffix('.json')}" for name in results}
    # AND the gathered table and the job's summary.jsonl have one row per image, the duplicate counted once
    assert main(["batch", "results", "--bucket", BUCKET, "--prefix", "job1", "--out", str(tmp_path / "all.jsonl")]) == 0
    output = capsys.readouterr().out
    assert "9 images: 6 classified, 3 errors" in output and "no result yet" not in output
    assert "summary: s3://amaas-batch-test/results/job1/summary.jsonl" in output
    summary = read(aws, "results/job1/summary.jsonl").splitlines()
    assert [json.loads(line)["key"] for line in summary] == sorted(r["key"] for r in results.values())
    assert (tmp_path / "all.jsonl").read_text().splitlines() == summary
    with capsys.disabled():
        print(
            f"\nbatch figures: {len(results)} images in, {len(keys)} results out "
            f"({sum(r['status'] == 'ok' for r in results.values())} classified, "
            f"{sum(r['status'] != 'ok' for r in results.values())} error results), "
            f"{sum(len(r) for r in aws.rounds)} retries reported over {len(aws.rounds)} handler calls, "
            f"{sum(c - 1 for k, c in writes.items() if k.endswith('.json') and c > 1)} duplicate delivery "
            "(rewrote the same key), "
            f"{len(dead['Messages'])} message in the DLQ, {len(lines)} summary-part lines for {len(results)} images"
        )


def read(aws: Aws, key: str) -> str:
    body: bytes = aws.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return body.decode()


def test_poison_reason_is_logged(aws: Aws, capfd: pytest.CaptureFixture[str]) -> None:
    aws.sqs.send_message(QueueUrl=aws.queue, MessageBody="{not json")
    capfd.readouterr()

    poll_until_drained(aws)

    logged = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith('{"level"')]
    poison = [line for line in logged if line["message"] == "poison message"]
    assert len(poison) == 3 and "not JSON" in poison[0]["reason"]
    assert [p["receives"] for p in poison] == ["1", "2", "3"]


def test_local_run_needs_no_aws(artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "photos"
    write_folder(folder)

    code = main(["batch", "run", str(folder), "--model-dir", str(artifact), "--out", str(tmp_path / "out")])

    assert code == 0
    assert "8 images: 6 classified, 2 errors" in capsys.readouterr().out
    summary = [json.loads(line) for line in (tmp_path / "out" / "summary.jsonl").read_text().splitlines()]
    assert len(summary) == 8
    (expected,) = Model(artifact).infer([(folder / "nested" / "star.png").read_bytes()], k=1).results
    assert (
        json.loads((tmp_path / "out" / "nested" / "star.png.json").read_text())["predictions"][0]["label"]
        == expected[0].label
    )
