"""Batch classification of the item batches a Step Functions Distributed Map hands the job function
(``amaas.handlers.batch_job``): the objects a job lists (an S3 prefix, an inventory, a key list), classified
by the same code as uploads announced through SQS, their results named and written the same way.

* One result per object, under the job's output prefix (``job_result_key``), recording the ETag and version
  id of the bytes read. An object whose stored result already records its ETag (and version, when the item
  names one) and the model serving now is skipped: no image read, no write. So a re-run after a partial
  failure, or Step Functions retrying a batch, redoes only what is missing.
* Permanent failures (unreadable, vanished, oversized, outside the job's bucket or prefix) are error results
  of their own, as on the SQS path. A transient S3 failure costs nothing already done: the other images are
  written and the batch then fails with ``UpstreamError``, which the state machine retries.
* S3 reads and writes run on a small thread pool while the previous chunk is classified, so S3's latency
  overlaps the CPU work instead of adding to it.
* Before the function's deadline the batch stops, writes what it has, and fails with
  ``BatchIncompleteError``; the retry picks up the rest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote_plus

from amaas import storage
from amaas.artifact.model import Model
from amaas.batch.results import BATCH, Item, classify, job_result_key, json_lines, summary_part_under
from amaas.batch.sqs import Announced, fetch_item, write_result
from amaas.errors import AmaasError, ForbiddenError, PayloadTooLargeError, UpstreamError
from amaas.observability import logger
from amaas.settings import Settings

# Time kept back at the end of an invocation for the summary part and the answer, beyond the slowest chunk
DEADLINE_RESERVE_MS = 3000
# S3 requests in flight at once: enough to cover S3's latency for a chunk being prefetched and one being written
IO_THREADS = 2 * BATCH
# How the keys of a job's items are spelled: as S3 stores them (listings, key lists), or URL-encoded as S3
# Inventory's CSV files hold them (the same encoding as S3 event notifications)
KEY_ENCODINGS = ("literal", "url")


class InvalidBatchError(Exception):
    """The event is not a Distributed Map item batch of a job; retrying cannot help."""


class BatchIncompleteError(Exception):
    """The function's time ran short: what was done is written, and the state machine's retry does the rest."""


@dataclass(frozen=True)
class Listed:
    """One object as the job's item reader names it. ``etag`` and ``version`` are known for listings and
    inventories, not for key lists."""

    bucket: str
    key: str
    etag: str | None = None
    version: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class ItemBatch:
    """One child execution's input: the job, where it reads and writes, and its objects.

    Attributes:
        scope: The prefix the job may read under (the stack's ``JobSourcePrefix``); objects elsewhere get an
            error result rather than an access-denied failure.
    """

    job: str
    bucket: str
    scope: str
    output_bucket: str
    output_prefix: str
    objects: tuple[Listed, ...]


@dataclass(frozen=True)
class _Pending:
    item: Item
    result_key: str
    stored: tuple[bytes, str] | None


@dataclass(frozen=True)
class _Skipped:
    reason: str  # "done" (an up-to-date result exists) or "folder" (a console folder marker, not an object)


@dataclass(frozen=True)
class _Failed:
    key: str
    error: UpstreamError


_Prepared = _Pending | _Skipped | _Failed


def parse_batch(event: Mapping[str, Any]) -> ItemBatch:
    """The Distributed Map event: ``{"Items": [...], "BatchInput": {"job", "source", "output"}}``.

    Items are S3 listing entries (``Key``, ``Etag`` or ``ETag``, ``Size``), inventory rows (``Bucket``, ``Key``,
    ``VersionId``, ``ETag``, ``Size``), ``{"Key": ...}`` rows of a CSV key list, or plain key strings of a JSON
    one.

    Raises:
        InvalidBatchError: Anything else.
    """
    try:
        batch_input, items = event["BatchInput"], event["Items"]
        job, source, output = batch_input["job"], batch_input["source"], batch_input["output"]
        bucket, scope, encoding = source["bucket"], source.get("scope", ""), source.get("keys", "literal")
        output_bucket, output_prefix = output["bucket"], output["prefix"]
    except (KeyError, TypeError) as exc:
        raise InvalidBatchError(f"not a Distributed Map item batch (missing {exc})") from None
    strings = (job, bucket, scope, output_bucket, output_prefix)
    if not all(isinstance(v, str) for v in strings) or not isinstance(items, list):
        raise InvalidBatchError("BatchInput's job, source and output must be strings and Items a list")
    if encoding not in KEY_ENCODINGS:
        raise InvalidBatchError(f"source.keys must be one of {', '.join(KEY_ENCODINGS)}")
    if output_prefix and not output_prefix.endswith("/"):
        raise InvalidBatchError("output.prefix must end with '/'")
    return ItemBatch(
        job, bucket, scope, output_bucket, output_prefix, tuple(_listed(i, bucket, encoding) for i in items)
    )


def _listed(item: Any, bucket: str, encoding: str) -> Listed:
    key: Any
    if isinstance(item, str):
        key, item = item, {}
    elif isinstance(item, dict):
        key = item.get("Key", item.get("key"))
    else:
        key = None
    if not isinstance(key, str) or not key:
        raise InvalidBatchError("every item must be a key or an object with a Key")
    if encoding == "url":
        key = unquote_plus(key)  # decoded once, here, then never treated as a URL again
    etag, version, size = item.get("ETag", item.get("Etag")), item.get("VersionId"), item.get("Size")
    return Listed(
        bucket=item["Bucket"] if isinstance(item.get("Bucket"), str) else bucket,
        key=key,
        etag=etag if isinstance(etag, str) and etag else None,
        version=version if isinstance(version, str) and version else None,
        size=int(size) if isinstance(size, int | str) and str(size).isdecimal() else None,
    )


def process_batch(
    batch: ItemBatch,
    model: Model,
    settings: Settings,
    remaining_ms: Callable[[], int] | None = None,
) -> dict[str, Any]:
    """Classifies one item batch and writes a result per object not done already; returns the batch's counts.

    Raises:
        UpstreamError: S3 failed for some objects; every other object's result is written.
        BatchIncompleteError: The deadline came first; the objects reached are written.
    """
    identity = {"name": model.manifest.name, "version": model.manifest.version}
    chunks = [batch.objects[i : i + BATCH] for i in range(0, len(batch.objects), BATCH)]
    counts = {"images": len(batch.objects), "classified": 0, "errors": 0, "skipped": 0, "folders": 0}
    written: list[dict[str, Any]] = []
    failed: list[_Failed] = []
    reached = 0
    writing: list[tuple[_Pending, dict[str, Any], Future[None]]] = []
    storage._client()  # made once here: boto3 must not build the shared client from several threads at once
    with ThreadPoolExecutor(IO_THREADS, thread_name_prefix="s3") as pool:
        ahead = [pool.submit(_prepare, batch, listed, identity, settings) for listed in chunks[0]] if chunks else []
        slowest_ms = 0.0
        for index in range(len(chunks)):
            if remaining_ms is not None and remaining_ms() < 2 * slowest_ms + DEADLINE_RESERVE_MS:
                for future in ahead:
                    future.cancel()
                break
            started = time.perf_counter()
            prepared = [future.result() for future in ahead]
            if index + 1 < len(chunks):  # the next chunk's reads overlap this chunk's classification
                ahead = [pool.submit(_prepare, batch, listed, identity, settings) for listed in chunks[index + 1]]
            pending = [p for p in prepared if isinstance(p, _Pending)]
            failed += [p for p in prepared if isinstance(p, _Failed)]
            for p in prepared:
                if isinstance(p, _Skipped):
                    counts["skipped" if p.reason == "done" else "folders"] += 1
            results = classify(model, [p.item for p in pending], settings.default_top_k)
            # the previous chunk's writes were in flight while this one was classified
            _settle(writing, written, failed, counts)
            writing = [(p, r, pool.submit(_write, batch, p, r)) for p, r in zip(pending, results, strict=True)]
            reached += len(prepared)
            slowest_ms = max(slowest_ms, (time.perf_counter() - started) * 1000)
        _settle(writing, written, failed, counts)
    _write_summary_part(batch, written)
    logger.info("job batch done", extra={"job": batch.job, **counts, "transient_failures": len(failed)})
    if failed:
        raise UpstreamError(
            f"S3 failed for {len(failed)} of {len(batch.objects)} images (first: {failed[0].error.message}); "
            "the retry redoes only those"
        )
    if reached < len(batch.objects):
        raise BatchIncompleteError(
            f"time ran short: {len(batch.objects) - reached} of {len(batch.objects)} images left for the retry"
        )
    return counts


def _settle(
    writing: Sequence[tuple[_Pending, dict[str, Any], Future[None]]],
    written: list[dict[str, Any]],
    failed: list[_Failed],
    counts: dict[str, int],
) -> None:
    """Waits for a chunk's result writes and counts them: written, or failed for the retry."""
    for pending, result, write in writing:
        try:
            write.result()
        except UpstreamError as exc:
            failed.append(_Failed(pending.item.key, exc))
            continue
        written.append(result)
        counts["classified" if result["status"] == "ok" else "errors"] += 1


def _prepare(batch: ItemBatch, listed: Listed, model: dict[str, str], settings: Settings) -> _Prepared:
    """Whether ``listed`` still needs classifying and, if so, its bytes (or why there are none)."""
    key = job_result_key(batch.output_prefix, listed.key)
    if listed.key.endswith("/") and not listed.size:
        return _Skipped("folder")
    try:
        stored = storage.get_if_exists(batch.output_bucket, key)
        if stored is not None and listed.etag and _up_to_date(stored[0], listed.etag, listed.version, model):
            return _Skipped("done")
        error: AmaasError
        if listed.bucket not in settings.s3_buckets or listed.bucket != batch.bucket:
            error = ForbiddenError(f"s3://{listed.bucket}/{listed.key} is not in the bucket this job may read")
            return _Pending(Item(listed.key, None, error=error), key, stored)
        if not listed.key.startswith(batch.scope):
            error = ForbiddenError(f"s3://{listed.bucket}/{listed.key} is outside the prefix this job may read")
            return _Pending(Item(listed.key, None, error=error), key, stored)
        if listed.size is not None and listed.size > settings.max_s3_image_bytes:  # the listing says so: no GET
            error = PayloadTooLargeError(f"s3://{listed.bucket}/{listed.key} is {listed.size} bytes; the limit is "
                                         f"{settings.max_s3_image_bytes}")  # fmt: skip
            return _Pending(Item(listed.key, None, listed.etag, listed.version, error=error), key, stored)
        item = fetch_item(Announced(storage.S3Object(listed.bucket, listed.key, listed.version), None), settings)
    except UpstreamError as exc:
        return _Failed(listed.key, exc)
    if item.etag is None and listed.etag:  # no bytes read (gone, too large): the result is the listed object's
        item = replace(item, etag=listed.etag, version=item.version or listed.version)
    # A key list names no ETag: the bytes just read tell whether the stored result is theirs
    if stored is not None and item.etag and _up_to_date(stored[0], item.etag, item.version, model):
        return _Skipped("done")
    return _Pending(item, key, stored)


def _up_to_date(stored: bytes, etag: str, version: str | None, model: dict[str, str]) -> bool:
    """Whether a stored result is this object's (same ETag, and same version when one is named) by the model
    serving now; a new model redoes everything."""
    try:
        result = json.loads(stored)
    except ValueError:
        return False  # an unreadable result is redone
    if not isinstance(result, dict) or not isinstance(result.get("etag"), str):
        return False
    same_version = version is None or result.get("version_id") == version
    return _bare(result["etag"]) == _bare(etag) and same_version and result.get("model") == model


def _bare(etag: str) -> str:
    """ETags with their quotes (GetObject, listings) and without (S3 Inventory) compare equal."""
    return etag.strip('"')


def _write(batch: ItemBatch, pending: _Pending, result: dict[str, Any]) -> None:
    write_result(batch.output_bucket, result, key=pending.result_key, existing=pending.stored)


def _write_summary_part(batch: ItemBatch, written: Sequence[dict[str, Any]]) -> None:
    if not written:
        return
    key = summary_part_under(batch.output_prefix, written)
    try:
        storage.put(batch.output_bucket, key, json_lines(written), "application/x-ndjson")
    except AmaasError as exc:  # the per-image results stand; the summary part is a convenience
        logger.warning("summary part not written", extra={"job": batch.job, "reason": exc.message})
