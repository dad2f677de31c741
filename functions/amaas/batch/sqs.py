"""Batch classification from S3 event notifications delivered by SQS (``amaas.handlers.batch``).

* A key is decoded exactly once from the event (``unquote_plus``: S3 URL-encodes keys, spaces as ``+``) and
  never parsed as a URL again, so ``#``, ``?``, ``%41``, tabs and newlines stay part of it.
* The image is read by its version when the event names one, and its result records the ETag and version id
  of the bytes read; a result is written only over an older one (S3 event sequencers order uploads to one key),
  with a conditional write, so an out-of-order or concurrent delivery can never leave an older upload's
  answer in place of a newer one's.
* An unreadable, vanished or oversized image gets an error result; a transient S3 failure raises, so only that
  message is retried; a message that is not an S3 event raises too, and after three receives SQS moves it to
  the DLQ.
* The function stops taking messages before its deadline and reports the rest for retry, rather than time out
  with all of them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import unquote_plus

from amaas import storage
from amaas.artifact.model import Model
from amaas.batch.results import Item, classify, job_of, json_lines, result_key, summary_key
from amaas.errors import ForbiddenError, ImageNotFoundError, PayloadTooLargeError, PoisonMessageError, UpstreamError
from amaas.observability import logger, record_batch
from amaas.settings import Settings

# Time kept back at the end of an invocation for writing summaries and answering, beyond the slowest message
DEADLINE_RESERVE_MS = 3000
WRITE_ATTEMPTS = 3


class Unread(Enum):
    """``write_result`` has not been given the stored result: it reads it."""

    UNREAD = "unread"


UNREAD = Unread.UNREAD


@dataclass(frozen=True)
class Announced:
    """One object an S3 event announces, exactly as the event names it."""

    obj: storage.S3Object
    sequencer: str | None


def s3_objects(body: str) -> Iterator[Announced]:
    """The objects an SQS message's S3 event notification announces, keys decoded once.

    Raises:
        PoisonMessageError: The body is not an S3 event notification.
    """
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
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
            bucket, obj = record["s3"]["bucket"]["name"], record["s3"]["object"]
            key = unquote_plus(obj["key"])  # S3 URL-encodes keys in notifications, spaces as '+'
            version, sequencer = obj.get("versionId"), obj.get("sequencer")
        except (KeyError, TypeError, AttributeError) as exc:
            raise PoisonMessageError(f"S3 event record lacks {exc}") from None
        if not all(isinstance(v, str) for v in (bucket, key)) or not key:
            raise PoisonMessageError("S3 event record names no bucket or key")
        yield Announced(
            storage.S3Object(bucket, key, version if isinstance(version, str) else None),
            sequencer if isinstance(sequencer, str) else None,
        )


def process_sqs(
    records: Sequence[dict[str, Any]],
    model: Model,
    settings: Settings,
    remaining_ms: Callable[[], int] | None = None,
) -> dict[str, Any]:
    """Classifies the images a batch of SQS messages announces; returns Lambda's partial batch response.

    Only the messages that failed, or were not reached before the deadline, are listed in
    ``batchItemFailures``, so SQS redelivers just those.
    """
    failures: list[dict[str, str]] = []
    written: dict[tuple[str, str], list[dict[str, Any]]] = {}
    slowest_ms = 0.0
    for index, record in enumerate(records):
        if remaining_ms is not None and remaining_ms() < 2 * slowest_ms + DEADLINE_RESERVE_MS:
            rest = [r["messageId"] for r in records[index:]]
            logger.warning("deadline near; messages returned for retry", extra={"messages": len(rest)})
            failures.extend({"itemIdentifier": message_id} for message_id in rest)
            break
        started = time.perf_counter()
        message_id = record["messageId"]
        receives = record.get("attributes", {}).get("ApproximateReceiveCount")
        try:
            announced = list(s3_objects(record["body"]))
            items = [fetch_item(a, settings) for a in announced]
            for a, result in zip(announced, classify(model, items, settings.default_top_k), strict=True):
                if write_result(a.obj.bucket, result):
                    written.setdefault((a.obj.bucket, job_of(a.obj.key)), []).append(result)
        except PoisonMessageError as exc:
            logger.error("poison message", extra={"message_id": message_id, "reason": str(exc), "receives": receives})
            failures.append({"itemIdentifier": message_id})
        except Exception as exc:  # noqa: BLE001 - any other failure is retried, for this message alone
            logger.warning(
                "message failed; SQS will redeliver it",
                extra={"message_id": message_id, "reason": f"{exc.__class__.__name__}: {exc}", "receives": receives},
            )
            failures.append({"itemIdentifier": message_id})
        slowest_ms = max(slowest_ms, (time.perf_counter() - started) * 1000)
    for (bucket, job), results in written.items():
        try:
            storage.put(bucket, summary_key(job, results), json_lines(results), "application/x-ndjson")
        except UpstreamError as exc:  # the per-image results stand; the summary part is a convenience
            logger.warning("summary part not written", extra={"job": job, "reason": exc.message})
    record_batch(len(records), len(failures), [r for results in written.values() for r in results])
    return {"batchItemFailures": failures}


def write_result(
    bucket: str,
    result: dict[str, Any],
    *,
    key: str | None = None,
    existing: tuple[bytes, str] | Unread | None = UNREAD,
) -> bool:
    """Writes one image's result unless a newer upload's result is already there; returns whether it wrote.

    "Newer" is S3's event sequencer for the key. The write is conditional on the result it replaces (or on
    there being none), so a concurrent writer makes this one re-read and decide again.

    Args:
        key: Where the result goes; ``result_key`` of the image's key unless given (a Step Functions job's
            results live under its own output prefix).
        existing: The stored result (bytes and ETag, or ``None`` for none) if the caller has just read it, so
            the first attempt does not read it again.

    Raises:
        UpstreamError: S3 failed, or kept changing under three attempts (the message is retried).
    """
    key = key or result_key(result["key"])
    body = json.dumps(result).encode()
    for _ in range(WRITE_ATTEMPTS):
        if isinstance(existing, Unread):
            existing = storage.get_if_exists(bucket, key)
        if existing is not None and _newer(_sequencer(existing[0]), result.get("sequencer")):
            return False
        if storage.put(bucket, key, body, "application/json", only_over=existing[1] if existing else ""):
            return True
        existing = UNREAD
    raise UpstreamError(f"the result for s3://{bucket}/{result['key']} kept changing while being written")


def _sequencer(body: bytes) -> str | None:
    try:
        value = json.loads(body).get("sequencer")
    except (ValueError, AttributeError):
        return None  # an unreadable result is replaced
    return value if isinstance(value, str) else None


def _newer(existing: str | None, ours: str | None) -> bool:
    """Whether the stored result comes from a later upload than ours (S3: compare sequencers as hex numbers
    of equal length). Without sequencers on both sides there is no order to keep: ours is written."""
    if existing is None or ours is None:
        return False
    width = max(len(existing), len(ours))
    return existing.upper().rjust(width, "0") > ours.upper().rjust(width, "0")


def fetch_item(announced: Announced, settings: Settings) -> Item:
    """The image's bytes with their own ETag and version, or the permanent reason there are none (gone, too
    large, unreadable). Transient S3 failures raise, so the message is retried."""
    obj, sequencer = announced.obj, announced.sequencer
    try:
        fetched = storage.fetch(obj, allowed_buckets=(obj.bucket,), max_bytes=settings.max_s3_image_bytes)
    except (ImageNotFoundError, PayloadTooLargeError, ForbiddenError) as exc:
        # permanent: retrying cannot make the image appear, shrink or become readable, so it gets an error result
        return Item(key=obj.key, data=None, version=obj.version, sequencer=sequencer, error=exc)
    return Item(obj.key, fetched.data, fetched.etag, fetched.version, sequencer)
