"""Batch results always belong to their image: for every key S3 allows, for deliveries out of order and
twice, and whatever one image in a batch does to memory or time. Against moto's S3, through the real batch
handler, with S3 event notifications built the way S3 writes them (keys URL-encoded, spaces as '+')."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from moto import mock_aws

from amaas import storage
from amaas.artifact.model import Model
from amaas.batch import result_key
from amaas_cli.main import main
from amaas_export.data import synthetic
from tests.helpers import Deadline, LambdaContext, encode_image

BUCKET = "amaas-batch-keys"
LONGEST = "incoming/job/" + "k" * (1024 - len("incoming/job/"))
KEYS = [
    "incoming/job/pic#2.png",
    "incoming/job/pic",
    "incoming/job/a?b=c.png",
    "incoming/job/50%41.png",
    "incoming/job/50A.png",
    "incoming/job/with space.png",
    "incoming/job/plus+sign.png",
    "incoming/job/tab\there.png",
    "incoming/job/new\nline.png",
    "incoming/job/ünïcødé 猫.png",
    "incoming/job/_summary/inside.png",
    LONGEST[:-5] + ".png.",
    LONGEST,
]


@dataclass
class Batch:
    s3: Any
    handler: Any
    classifier: Model


@pytest.fixture
def batch(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Batch]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AMAAS_MODEL_DIR", str(artifact))
    monkeypatch.setenv("AMAAS_DECODE_MEMORY_MB", "128")  # as a 768 MB function would derive
    with mock_aws():
        storage._client.cache_clear()
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        sys.modules.pop("amaas.handlers.batch", None)
        module = importlib.import_module("amaas.handlers.batch")
        yield Batch(s3, module.handler, module.model)
        sys.modules.pop("amaas.handlers.batch", None)
        storage._client.cache_clear()


def image(i: int) -> bytes:
    """A different image (bytes and, mostly, class) for each index."""
    return encode_image(synthetic.sample(synthetic.LABELS[i % len(synthetic.LABELS)], variant=i), "PNG")


def notification(key: str, *, sequencer: str | None = None, version: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/"), "size": 1}
    if sequencer:
        obj["sequencer"] = sequencer
    if version:
        obj["versionId"] = version
    body = {"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": BUCKET}, "object": obj}}]}
    return {"messageId": f"m-{key[-12:]!r}-{sequencer}", "body": json.dumps(body), "attributes": {}}


def deliver(batch: Batch, messages: list[dict[str, Any]], context: Any = None) -> list[str]:
    response = batch.handler({"Records": messages}, context or LambdaContext())
    return [f["itemIdentifier"] for f in response["batchItemFailures"]]


def stored_result(batch: Batch, key: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(batch.s3.get_object(Bucket=BUCKET, Key=result_key(key))["Body"].read())
    return document


def top1(batch: Batch, data: bytes) -> str:
    (ranked,) = batch.classifier.infer([data], k=1).results
    return ranked[0].label


def test_every_key_s3_allows_gets_exactly_one_result_with_its_own_etag(
    batch: Batch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN one different image under each awkward key: '#', '?', '%41' beside 'A', '+', spaces, tabs, newlines,
    # Unicode, a folder named _summary, and keys of 1,019 and 1,024 bytes (a result key cannot just add ".json")
    etags = {key: batch.s3.put_object(Bucket=BUCKET, Key=key, Body=image(i))["ETag"] for i, key in enumerate(KEYS)}

    # WHEN their S3 notifications arrive, in two SQS batches of the sizes Lambda sends
    failed = deliver(batch, [notification(k) for k in KEYS[:10]]) + deliver(batch, [notification(k) for k in KEYS[10:]])

    # THEN each key has one result naming exactly that key and the ETag of its own bytes, with their answer
    assert failed == []
    for i, key in enumerate(KEYS):
        result = stored_result(batch, key)
        assert (result["key"], result["etag"], result["status"]) == (key, etags[key], "ok"), key
        assert result["predictions"][0]["label"] == top1(batch, image(i)), key
    assert len({result_key(k) for k in KEYS}) == len(KEYS)
    # AND gathering the job reports every one of them, the _summary folder and the longest keys included
    assert main(["batch", "results", "--bucket", BUCKET, "--prefix", "job", "--out", str(tmp_path / "all.jsonl")]) == 0
    assert f"{len(KEYS)} images: {len(KEYS)} classified, 0 errors" in capsys.readouterr().out
    gathered = [json.loads(line)["key"] for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert sorted(gathered) == sorted(KEYS)


def test_out_of_order_and_repeated_deliveries_keep_the_newest_upload(batch: Batch) -> None:
    # GIVEN a versioned bucket where one key was uploaded twice: a star, then a ring
    batch.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    key = "incoming/job/again.png"
    first = batch.s3.put_object(Bucket=BUCKET, Key=key, Body=image(0))
    second = batch.s3.put_object(Bucket=BUCKET, Key=key, Body=image(1))
    older = notification(key, sequencer="0055AED6DCD90281E5", version=first["VersionId"])
    newer = notification(key, sequencer="0055AED6DCD9028200", version=second["VersionId"])

    # WHEN the newer upload's notification arrives first, then the older one, then the newer one again
    for message in (newer, older, newer):
        assert deliver(batch, [message]) == []

    # THEN the result is the newer upload's: its version, its ETag and its answer, never mixed
    result = stored_result(batch, key)
    assert (result["version_id"], result["etag"]) == (second["VersionId"], second["ETag"])
    assert result["predictions"][0]["label"] == top1(batch, image(1))


def test_an_older_notification_for_an_overwritten_key_reads_the_bytes_now_there(batch: Batch) -> None:
    # GIVEN an unversioned key overwritten before either notification was worked
    key = "incoming/job/overwritten.png"
    batch.s3.put_object(Bucket=BUCKET, Key=key, Body=image(2))
    current = batch.s3.put_object(Bucket=BUCKET, Key=key, Body=image(3))

    # WHEN the first upload's notification is worked last
    deliver(batch, [notification(key, sequencer="0A")])

    # THEN the answer and the ETag both describe the bytes that were read
    result = stored_result(batch, key)
    assert result["etag"] == current["ETag"] and result["predictions"][0]["label"] == top1(batch, image(3))


def test_one_image_exhausting_memory_or_time_costs_only_its_own_result(
    batch: Batch, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN ten images: a 40 MP RGBA PNG (160 MB to decode, over the 128 MB budget), one on which decoding runs
    # out of memory anyway
    keys = [f"incoming/job/{i}.png" for i in range(10)]
    for i, key in enumerate(keys[2:], start=2):
        batch.s3.put_object(Bucket=BUCKET, Key=key, Body=image(i))
    from PIL import Image

    bomb = encode_image(Image.new("RGBA", (8000, 5000)), "PNG", compress_level=9)
    batch.s3.put_object(Bucket=BUCKET, Key=keys[0], Body=bomb)
    batch.s3.put_object(Bucket=BUCKET, Key=keys[1], Body=b"exhausts memory")
    real_decode = batch.classifier.decode

    def decode(data: bytes) -> Any:
        if data == b"exhausts memory":
            raise MemoryError
        return real_decode(data)

    monkeypatch.setattr(batch.classifier, "decode", decode)
    messages = [notification(k) for k in keys]

    # WHEN they arrive in one batch and the function's time runs short after six messages
    retried = deliver(batch, messages, Deadline(checks=6))

    # THEN the last four are handed back for retry rather than timing the whole batch out
    assert retried == [m["messageId"] for m in messages[6:]]
    # AND once redelivered, every image has exactly one result: the two culprits an error each, the rest answers
    assert deliver(batch, messages[6:]) == []
    results = [stored_result(batch, key) for key in keys]
    assert [r["error"] for r in results[:2]] == ["payload_too_large", "payload_too_large"]
    assert "memory" in results[1]["message"]
    assert all(r["status"] == "ok" for r in results[2:])
