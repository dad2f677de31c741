"""The job function (``amaas.handlers.batch_job``) against moto's S3, with the events a Step Functions
Distributed Map hands it: ``Items`` as the S3 item readers produce them (listings, inventory rows, key lists)
and the ``BatchInput`` the state machine adds. One result per object, named and shaped as on the SQS path, and a
re-run that redoes exactly what is missing."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
from botocore.exceptions import ClientError

from amaas import storage
from amaas.artifact.model import Model
from amaas.batch.distributed_map import BatchIncompleteError, InvalidBatchError
from amaas.batch.results import job_result_key
from amaas.errors import UpstreamError
from amaas_export.data import synthetic
from tests.helpers import JOB_OUTPUT, JOB_SOURCE, Deadline, LambdaContext, encode_image, job_function
from tests.stepfunctions import listed_items

SOURCE, OUTPUT, SCOPE = JOB_SOURCE, JOB_OUTPUT, "albums/"
MAX_BYTES = 100_000  # the job function's largest image here (AMAAS_MAX_S3_IMAGE_BYTES)
LONGEST = SCOPE + "k" * (1024 - len(SCOPE))  # a result key cannot just add ".json" to this one
KEYS = [
    f"{SCOPE}with space.png",
    f"{SCOPE}pic#2.png",
    f"{SCOPE}ünïcødé 猫.png",
    f"{SCOPE}a?b=c&d.png",
    f"{SCOPE}50%41.png",
    f"{SCOPE}plus+sign.png",
    f"{SCOPE}deep/nested/star.png",
    LONGEST,
]


@dataclass
class Job:
    s3: Any
    handler: Any
    model: Model
    reads: Counter[str] = field(default_factory=Counter)  # image GETs, by key
    writes: Counter[str] = field(default_factory=Counter)  # PUTs, by key

    def run(self, items: list[Any], *, job: str = "job1", keys: str = "literal", context: Any = None) -> Any:
        event = {
            "Items": items,
            "BatchInput": {
                "job": job,
                "source": {"bucket": SOURCE, "scope": SCOPE, "keys": keys},
                "output": {"bucket": OUTPUT, "prefix": f"results/{job}/"},
            },
        }
        return self.handler(json.loads(json.dumps(event)), context or LambdaContext())

    def result(self, key: str, job: str = "job1") -> dict[str, Any]:
        body = self.s3.get_object(Bucket=OUTPUT, Key=job_result_key(f"results/{job}/", key))["Body"].read()
        document: dict[str, Any] = json.loads(body)
        return document

    def top1(self, data: bytes) -> str:
        (ranked,) = self.model.infer([data], k=1).results
        label: str = ranked[0].label
        return label


@pytest.fixture
def job(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Job]:
    with job_function(artifact, {"AMAAS_MAX_S3_IMAGE_BYTES": str(MAX_BYTES)}) as (s3, module):
        recorded = Job(s3, module.handler, module.model)
        real_fetch, real_put = storage.fetch, storage.put

        def counting_fetch(obj: storage.S3Object, **kwargs: Any) -> storage.Fetched:
            recorded.reads[obj.key] += 1
            return real_fetch(obj, **kwargs)

        def counting_put(bucket: str, key: str, body: bytes, content_type: str, **kwargs: Any) -> bool:
            recorded.writes[key] += 1
            return real_put(bucket, key, body, content_type, **kwargs)

        monkeypatch.setattr(storage, "fetch", counting_fetch)
        monkeypatch.setattr(storage, "put", counting_put)
        yield recorded


def image(i: int) -> bytes:
    return encode_image(synthetic.sample(synthetic.LABELS[i % len(synthetic.LABELS)], variant=i), "PNG")


def result_writes(job: Job) -> Counter[str]:
    return Counter({k: n for k, n in job.writes.items() if not k.endswith(".jsonl")})


def test_a_listing_batch_gets_one_result_per_object_and_a_rerun_redoes_only_what_is_missing(job: Job) -> None:
    # GIVEN images under awkward keys ('#', '?', '%41', '+', spaces, Unicode, a 1,024-byte key), a corrupt one, an
    # oversized one, one deleted after the listing was taken, a console folder marker, and an image outside the
    # job's prefix that the listing does not name
    etags = {key: job.s3.put_object(Bucket=SOURCE, Key=key, Body=image(i))["ETag"] for i, key in enumerate(KEYS)}
    broken = {f"{SCOPE}corrupt.png": "invalid_image", f"{SCOPE}huge.png": "payload_too_large",
              f"{SCOPE}gone.png": "image_not_found"}  # fmt: skip
    job.s3.put_object(Bucket=SOURCE, Key=f"{SCOPE}corrupt.png", Body=b"\x89PNG\r\n\x1a\nnot the rest of a png")
    job.s3.put_object(Bucket=SOURCE, Key=f"{SCOPE}huge.png", Body=image(0) + bytes(MAX_BYTES))
    job.s3.put_object(Bucket=SOURCE, Key=f"{SCOPE}gone.png", Body=image(1))
    job.s3.put_object(Bucket=SOURCE, Key=f"{SCOPE}deep/", Body=b"")
    job.s3.put_object(Bucket=SOURCE, Key="elsewhere/star.png", Body=image(0))
    items = listed_items(job.s3, Bucket=SOURCE, Prefix=SCOPE)
    job.s3.delete_object(Bucket=SOURCE, Key=f"{SCOPE}gone.png")

    # WHEN the map hands the listing over as one batch
    counts = job.run(items)

    # THEN each object has one result under the job's prefix, with the ETag of its bytes and the API's answer
    assert counts == {"images": 12, "classified": 8, "errors": 3, "skipped": 0, "folders": 1}
    for i, key in enumerate(KEYS):
        result = job.result(key)
        assert (result["key"], result["etag"], result["status"]) == (key, etags[key], "ok"), key
        assert result["predictions"][0]["label"] == job.top1(image(i)), key
        assert set(result) == {"key", "etag", "version_id", "model", "status", "predictions"}  # the SQS shape
    assert {key: job.result(key)["error"] for key in broken} == broken
    # AND neither the image outside the prefix nor the one the listing says is too large was downloaded
    assert "elsewhere/star.png" not in job.reads and f"{SCOPE}huge.png" not in job.reads
    assert job_result_key("results/job1/", LONGEST).endswith(".key-sha256.json~")
    # AND a summary part of the batch lists every result written, once
    (part,) = [k for k in job.writes if k.endswith(".jsonl")]
    assert part.startswith("results/job1/_summary/")
    summary = job.s3.get_object(Bucket=OUTPUT, Key=part)["Body"].read().decode().splitlines()
    assert sorted(json.loads(line)["key"] for line in summary) == sorted([*KEYS, *broken])

    # GIVEN one result lost and one image replaced since (a new ETag)
    job.s3.delete_object(Bucket=OUTPUT, Key=job_result_key("results/job1/", KEYS[0]))
    replaced = job.s3.put_object(Bucket=SOURCE, Key=KEYS[1], Body=image(5))["ETag"]
    job.reads.clear()
    job.writes.clear()

    # WHEN the job runs again over a fresh listing
    counts = job.run(listed_items(job.s3, Bucket=SOURCE, Prefix=SCOPE))

    # THEN only those two images are read and written again; every other image (and the corrupt and oversized
    # ones, whose error results are up to date) is skipped without a GET or a PUT
    assert counts == {"images": 11, "classified": 2, "errors": 0, "skipped": 8, "folders": 1}
    assert set(job.reads) == {KEYS[0], KEYS[1]}
    assert set(result_writes(job)) == {job_result_key("results/job1/", k) for k in KEYS[:2]}
    assert job.result(KEYS[1])["etag"] == replaced
    assert job.result(KEYS[1])["predictions"][0]["label"] == job.top1(image(5))


def test_key_lists_and_inventory_rows_name_their_objects_and_nothing_outside_the_job_is_read(job: Job) -> None:
    keys = KEYS[:4]
    for i, key in enumerate(keys):
        job.s3.put_object(Bucket=SOURCE, Key=key, Body=image(i))
    job.s3.put_object(Bucket="someone-else", Key=f"{SCOPE}theirs.png", Body=image(1))
    job.s3.put_object(Bucket=SOURCE, Key="private/diary.png", Body=image(2))

    # WHEN a JSON key list (plain keys) names the images, plus one outside the job's prefix
    counts = job.run([*keys, "private/diary.png"], job="listed")

    # THEN the images are classified, and the one outside the prefix gets an error result without being read
    assert counts["classified"] == 4 and counts["errors"] == 1
    assert [job.result(k, "listed")["status"] for k in keys] == ["ok"] * 4
    assert job.result("private/diary.png", "listed")["error"] == "forbidden"
    assert "private/diary.png" not in job.reads

    # WHEN the same list runs again: a key list names no ETag, so each image is read to learn it...
    job.reads.clear()
    job.writes.clear()
    counts = job.run([*keys, "private/diary.png"], job="listed")
    # THEN ...but no result is rewritten
    assert counts["skipped"] == 4 and set(job.reads) == set(keys)
    assert set(result_writes(job)) == {job_result_key("results/listed/", "private/diary.png")}

    # WHEN S3 Inventory rows (keys URL-encoded, ETags unquoted, sizes as text) name them, one in another bucket
    etags = {k: job.s3.head_object(Bucket=SOURCE, Key=k)["ETag"] for k in keys}
    rows = [{"Bucket": SOURCE, "Key": quote_plus(k, safe="/"), "Size": "99", "ETag": etags[k].strip('"')} for k in keys]
    rows.append({"Bucket": "someone-else", "Key": quote_plus(f"{SCOPE}theirs.png"), "Size": "99", "ETag": "x"})
    job.reads.clear()
    counts = job.run(rows, job="inventory", keys="url")

    # THEN the keys are decoded once and found; the other bucket's object is refused, never read
    assert counts == {"images": 5, "classified": 4, "errors": 1, "skipped": 0, "folders": 0}
    assert [job.result(k, "inventory")["key"] for k in keys] == keys
    assert job.result(f"{SCOPE}theirs.png", "inventory")["error"] == "forbidden"
    assert set(job.reads) == set(keys)
    # AND the listing's ETag (here unquoted) is enough to skip them next time, without a read
    job.reads.clear()
    assert job.run(rows, job="inventory", keys="url")["skipped"] == 4 and not job.reads


def test_a_transient_s3_failure_fails_the_batch_after_writing_the_rest_and_the_retry_redoes_only_it(
    job: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [f"{SCOPE}{i:02d}.png" for i in range(6)]
    for i, key in enumerate(keys):
        job.s3.put_object(Bucket=SOURCE, Key=key, Body=image(i))
    real_get = storage._client().get_object

    def slow_down_once(**kwargs: Any) -> Any:
        if kwargs["Key"] == keys[3] and not job.reads[keys[3]] > 1:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "reduce your request rate"}}, "GetObject")
        return real_get(**kwargs)

    monkeypatch.setattr(storage._client(), "get_object", slow_down_once)
    items = listed_items(job.s3, Bucket=SOURCE, Prefix=SCOPE)

    # WHEN S3 fails once for one image: the batch fails as UpstreamError, which the state machine retries
    with pytest.raises(UpstreamError, match="1 of 6 images"):
        job.run(items)
    assert {k for k in keys if k != keys[3]} == {r.removeprefix("results/job1/").removesuffix(".json")
                                                 for r in result_writes(job)}  # fmt: skip

    # AND the retry reads and writes that one image only
    job.writes.clear()
    assert job.run(items) == {"images": 6, "classified": 1, "errors": 0, "skipped": 5, "folders": 0}
    assert set(result_writes(job)) == {job_result_key("results/job1/", keys[3])}


def test_a_batch_stops_before_its_deadline_and_the_retry_finishes_it(job: Job) -> None:
    keys = [f"{SCOPE}{i:02d}.png" for i in range(40)]  # three chunks of 16, 16 and 8
    for i, key in enumerate(keys):
        job.s3.put_object(Bucket=SOURCE, Key=key, Body=image(i))
    items = listed_items(job.s3, Bucket=SOURCE, Prefix=SCOPE)

    # WHEN the function's time runs short after the first chunk
    with pytest.raises(BatchIncompleteError, match="24 of 40 images left"):
        job.run(items, context=Deadline(checks=1))

    # THEN the first chunk's results are written, and the retry does the other 24 and nothing twice
    assert len(result_writes(job)) == 16
    assert job.run(items)["skipped"] == 16
    assert len(result_writes(job)) == 40 and set(result_writes(job).values()) == {1}


def batch_input(source: dict[str, Any], prefix: str = "r/") -> dict[str, Any]:
    return {"job": "j", "source": {"bucket": SOURCE, **source}, "output": {"bucket": OUTPUT, "prefix": prefix}}


@pytest.mark.parametrize(
    "event",
    [
        {"Records": [{"body": "an SQS message"}]},
        {"Items": [{"Size": 3}], "BatchInput": batch_input({})},  # an item without a key
        {"Items": [], "BatchInput": batch_input({}, prefix="no-slash")},
        {"Items": [], "BatchInput": batch_input({"keys": "base64"})},
    ],
)
def test_an_event_that_is_no_item_batch_is_refused_whole(job: Job, event: dict[str, Any]) -> None:
    with pytest.raises(InvalidBatchError):
        job.handler(event, LambdaContext())
    assert not job.writes
