"""Batch classification: many images in, one JSON result per image out, nothing lost and nothing doubled.

The same code classifies a local folder (``amaas batch run``) and S3 objects announced by S3 event
notifications through SQS (``amaas.handlers.batch``):

* an image that cannot be classified (corrupt, too large) gets an error *result*, never a silent drop;
* a result's key is derived from the image's key alone, so a redelivered message rewrites the same key;
* a transient failure (S3 unreachable, throttled) raises, so only that message is retried;
* a message that is not an S3 event raises too, and after three receives SQS moves it to the DLQ.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import numpy as np

from amaas import storage
from amaas.errors import AmaasError, ForbiddenError, ImageNotFoundError, PayloadTooLargeError, UpstreamError
from amaas.model import ImageClassifier
from amaas.observability import logger, record_batch
from amaas.settings import Settings

INPUT_PREFIX = "incoming/"
OUTPUT_PREFIX = "results/"
SUMMARY_DIR = "_summary"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
BATCH = 16


class PoisonMessageError(Exception):
    """A queue message that is not an S3 event notification; retrying cannot help, the DLQ will hold it."""


@dataclass(frozen=True)
class Item:
    """One image to classify: where it came from and its bytes (or why there are none)."""

    key: str
    data: bytes | None
    etag: str | None = None
    version: str | None = None
    error: AmaasError | None = None


def classify(classifier: ImageClassifier, items: Sequence[Item], top_k: int) -> list[dict[str, Any]]:
    """A result per item, in order: predictions, or the error that made the image unclassifiable.

    Decodable images run through the model in batches; a corrupt one only costs its own result.
    """
    manifest = classifier.manifest
    results: list[dict[str, Any] | None] = [None] * len(items)
    pending: list[tuple[int, np.ndarray]] = []
    for i, item in enumerate(items):
        try:
            if item.error is not None:
                raise item.error
            assert item.data is not None
            pending.append((i, classifier.pixels(item.data)))
        except AmaasError as exc:
            results[i] = _result(item, manifest.name, manifest.version, error=exc)
    for start in range(0, len(pending), BATCH):
        chunk = pending[start : start + BATCH]
        logits = classifier.predict_pixels(np.stack([pixels for _, pixels in chunk]))
        for (i, _), ranked in zip(chunk, classifier.postprocess(logits, top_k), strict=True):
            predictions = [{"label": p.label, "index": p.index, "score": round(p.score, 6)} for p in ranked]
            results[i] = _result(items[i], manifest.name, manifest.version, predictions=predictions)
    return [r for r in results if r is not None]


def _result(
    item: Item,
    model: str,
    version: str,
    *,
    predictions: list[dict[str, Any]] | None = None,
    error: AmaasError | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {"key": item.key, "etag": item.etag, "version_id": item.version}
    result["model"] = {"name": model, "version": version}
    if error is not None:
        result.update(status="error", error=error.code, message=error.message)
    else:
        result.update(status="ok", predictions=predictions)
    return result


def result_key(input_key: str) -> str:
    """``incoming/job/a/b.png`` → ``results/job/a/b.png.json``: one result key per image key, always."""
    return OUTPUT_PREFIX + input_key.removeprefix(INPUT_PREFIX) + ".json"


def job_of(input_key: str) -> str:
    """The job an image belongs to: the first path segment under the input prefix."""
    relative = input_key.removeprefix(INPUT_PREFIX)
    return relative.split("/", 1)[0] if "/" in relative else ""


def summary_key(job: str, results: Iterable[dict[str, Any]]) -> str:
    """A JSON-lines part per job and delivery batch, named by what it holds, so a retried batch with the
    same content rewrites the same part. Parts stream results as they come; a redelivery in another batch
    can repeat an image in a second part, so readers merge parts by image key. The job's one-line-per-image
    ``summary.jsonl`` is written by ``amaas batch results`` from the per-image results (see ``job_summary_key``).
    """
    digest = hashlib.sha256("\n".join(sorted(f"{r['key']}@{r.get('etag')}" for r in results)).encode()).hexdigest()
    return f"{_job_prefix(job)}{SUMMARY_DIR}/{digest[:32]}.jsonl"


def job_summary_key(job: str) -> str:
    """``results/<job>/summary.jsonl``: every image of the job once, in key order."""
    return f"{_job_prefix(job)}summary.jsonl"


def _job_prefix(job: str) -> str:
    return f"{OUTPUT_PREFIX}{job}/" if job else OUTPUT_PREFIX


def s3_objects(body: str) -> Iterator[tuple[str, str, str | None, str | None]]:
    """(bucket, key, etag, version id) of each object an SQS message's S3 event notification announces.

    Raises:
        PoisonMessageError: The body is not an S3 event notification.
    """
    try:
        document = json.loads(body)
    except json.JSONDecodeError as exc:
        raise PoisonMessageError(f"message body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise PoisonMessageError("message body is not a JSON object")
    if document.get("Event") == "s3:TestEvent":
        return  # S3 sends one when the notification is configured; nothing to classify
    records = document.get("Records")
    if not isinstance(records, list):
        raise PoisonMessageError("message is not an S3 event notification (no Records)")
    for record in records:
        try:
            bucket = record["s3"]["bucket"]["name"]
            obj = record["s3"]["object"]
            key = unquote_plus(obj["key"])  # S3 URL-encodes keys in notifications, spaces as '+'
        except (KeyError, TypeError) as exc:
            raise PoisonMessageError(f"S3 event record lacks {exc}") from None
        yield bucket, key, obj.get("eTag"), obj.get("versionId")


def process_sqs(records: Sequence[dict[str, Any]], classifier: ImageClassifier, settings: Settings) -> dict[str, Any]:
    """Classifies the images a batch of SQS messages announces; returns Lambda's partial batch response.

    Only the messages that failed are listed in ``batchItemFailures``, so SQS redelivers just those.
    """
    failures: list[dict[str, str]] = []
    written: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        message_id = record["messageId"]
        receives = record.get("attributes", {}).get("ApproximateReceiveCount")
        try:
            objects = list(s3_objects(record["body"]))
            items = [_fetch(bucket, key, etag, version, settings) for bucket, key, etag, version in objects]
            results = classify(classifier, items, settings.default_top_k)
            for (bucket, key, _, _), result in zip(objects, results, strict=True):
                storage.put(bucket, result_key(key), json.dumps(result).encode(), "application/json")
                written.setdefault((bucket, job_of(key)), []).append(result)
        except PoisonMessageError as exc:
            logger.error("poison message", extra={"message_id": message_id, "reason": str(exc), "receives": receives})
            failures.append({"itemIdentifier": message_id})
        except Exception as exc:  # noqa: BLE001 - any other failure is retried, for this message alone
            logger.warning(
                "message failed; SQS will redeliver it",
                extra={"message_id": message_id, "reason": f"{exc.__class__.__name__}: {exc}", "receives": receives},
            )
            failures.append({"itemIdentifier": message_id})
    for (bucket, job), results in written.items():
        lines = "".join(json.dumps(r) + "\n" for r in results).encode()
        try:
            storage.put(bucket, summary_key(job, results), lines, "application/x-ndjson")
        except UpstreamError as exc:  # the per-image results stand; the summary part is a convenience
            logger.warning("summary part not written", extra={"job": job, "reason": exc.message})
    record_batch(len(records), len(failures), [r for results in written.values() for r in results])
    return {"batchItemFailures": failures}


def _fetch(bucket: str, key: str, etag: str | None, version: str | None, settings: Settings) -> Item:
    """The image's bytes, or the permanent reason there are none (gone, too large, unreadable). Transient S3
    failures raise, so the message is retried."""
    try:
        data = storage.fetch(
            f"s3://{bucket}/{key}", allowed_buckets=(bucket,), max_bytes=settings.max_s3_image_bytes, version=version
        )
    except (ImageNotFoundError, PayloadTooLargeError, ForbiddenError) as exc:
        # permanent: retrying cannot make the image appear, shrink or become readable, so it gets an error result
        return Item(key=key, data=None, etag=etag, version=version, error=exc)
    return Item(key=key, data=data, etag=etag, version=version)


def local_items(folder: Path) -> list[Item]:
    """Every image file under ``folder`` (recursively, in sorted order), keyed by its relative path."""
    items = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        items.append(Item(key=path.relative_to(folder).as_posix(), data=path.read_bytes()))
    return items


def run_local(classifier: ImageClassifier, folder: Path, out: Path, top_k: int) -> list[dict[str, Any]]:
    """``amaas batch run``: classifies a folder with no AWS at all; a JSON per image plus summary.jsonl."""
    results = classify(classifier, local_items(folder), top_k)
    out.mkdir(parents=True, exist_ok=True)
    for result in results:
        target = out / (result["key"] + ".json")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(result, indent=2) + "\n")
    (out / "summary.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    return results
