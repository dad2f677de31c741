"""Many images in, exactly one JSON result per image out, whatever any one image does.

A result belongs to its image by construction: it carries the image's key as given (never re-parsed), the
ETag and version id of the bytes that were actually read, and where it lands is a function of the key alone,
injective over every key S3 allows (long keys included), so two images can never share a result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from amaas.artifact.imaging import Decoded
from amaas.artifact.model import Model
from amaas.errors import AmaasError, PayloadTooLargeError
from amaas.observability import logger

INPUT_PREFIX = "incoming/"
OUTPUT_PREFIX = "results/"
RESULT_SUFFIX = ".json"
# Results of keys too long to extend (S3 keys are at most 1,024 bytes) are named by the key's sha256 with a
# suffix no ordinary result key can end with, so the two namings never meet.
HASHED_SUFFIX = ".key-sha256.json~"
SUMMARY_DIR = "_summary"
SUMMARY_SUFFIX = ".jsonl"
MAX_KEY_BYTES = 1024
BATCH = 16


@dataclass(frozen=True)
class Item:
    """One image to classify: its key, its bytes (or why there are none) and where the bytes came from.

    Attributes:
        key: The S3 key (decoded once from the event) or the local relative path.
        etag, version: Of the bytes read, as S3 returned them with the bytes.
        sequencer: The S3 event's ordering token for this key (later uploads have greater ones).
    """

    key: str
    data: bytes | None
    etag: str | None = None
    version: str | None = None
    sequencer: str | None = None
    error: AmaasError | None = None


def classify(model: Model, items: Sequence[Item], top_k: int) -> list[dict[str, Any]]:
    """A result per item, in order: the task's answer (``Task.to_json``: classification ``predictions``,
    segmentation ``size`` and ``classes``), or the error that made the image unusable.

    Each image is decoded on its own and any failure, MemoryError included, costs only its own result;
    decodable images run through the model in batches, and a batch that fails is retried image by image.
    """
    manifest = model.manifest
    results: list[dict[str, Any] | None] = [None] * len(items)
    pending: list[tuple[int, Decoded]] = []
    for i, item in enumerate(items):
        try:
            if item.error is not None:
                raise item.error
            pending.append((i, model.decode(item.data or b"")))
        except Exception as exc:  # noqa: BLE001 - one image's failure must not take its neighbours' results
            results[i] = _result(item, manifest.name, manifest.version, error=_as_error(exc, item))
    for start in range(0, len(pending), BATCH):
        chunk = pending[start : start + BATCH]
        for (i, _), outcome in zip(chunk, _predict(model, [p for _, p in chunk], top_k), strict=True):
            if isinstance(outcome, AmaasError):
                results[i] = _result(items[i], manifest.name, manifest.version, error=outcome)
            else:
                results[i] = _result(items[i], manifest.name, manifest.version, answer=outcome)
    assert all(r is not None for r in results), "every item has a result"
    return [r for r in results if r is not None]


def _predict(model: Model, images: list[Decoded], top_k: int) -> list[dict[str, Any] | AmaasError]:
    try:
        outputs = model.predict_pixels(np.stack([image.pixels for image in images]))
    except Exception:  # noqa: BLE001 - find the one image to blame rather than fail them all
        if len(images) == 1:
            return [AmaasError("the model failed on this image")]
        return [outcome for one in images for outcome in _predict(model, [one], top_k)]
    answers = model.postprocess(outputs, [image.size for image in images], k=top_k)
    return [model.task.to_json(answer, model.manifest) for answer in answers]


def _as_error(exc: Exception, item: Item) -> AmaasError:
    if isinstance(exc, AmaasError):
        return exc
    if isinstance(exc, MemoryError):
        return PayloadTooLargeError("the image could not be decoded within this function's memory")
    logger.exception("unexpected failure on one batch image", extra={"key": item.key})
    return AmaasError("internal error")


def _result(
    item: Item,
    model: str,
    version: str,
    *,
    answer: dict[str, Any] | None = None,
    error: AmaasError | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {"key": item.key, "etag": item.etag, "version_id": item.version}
    if item.sequencer is not None:
        result["sequencer"] = item.sequencer
    result["model"] = {"name": model, "version": version}
    if error is not None:
        result.update(status="error", error=error.code, message=error.message)
    else:
        result.update(status="ok", **(answer or {}))
    return result


def result_key(input_key: str) -> str:
    """``incoming/job/a/b.png`` -> ``results/job/a/b.png.json``: one result key per image key, always.

    A key too long to extend within S3's 1,024 bytes gets ``results/<job>/<sha256 of the key>`` plus
    ``HASHED_SUFFIX``; the result inside still names the key in full.
    """
    return _named(OUTPUT_PREFIX + input_key.removeprefix(INPUT_PREFIX), _job_prefix(job_of(input_key)), input_key)


def job_result_key(output_prefix: str, source_key: str) -> str:
    """A Step Functions job's result for one object: ``<output prefix><source key>.json``, the object's whole
    key kept (jobs read any prefix, inventory or key list, so no part of it can be assumed), and the same
    hashed name as ``result_key`` for keys too long to extend."""
    return _named(output_prefix + source_key, output_prefix, source_key)


def _named(stem: str, hashed_under: str, key: str) -> str:
    plain = stem + RESULT_SUFFIX
    if len(plain.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES:
        return plain
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{hashed_under}{digest}{HASHED_SUFFIX}"


def is_result_key(key: str) -> bool:
    """Whether a key under ``results/`` holds one image's result (not a summary)."""
    return key.endswith((RESULT_SUFFIX, HASHED_SUFFIX))


def job_of(input_key: str) -> str:
    """The job an image belongs to: the first path segment under the input prefix."""
    relative = input_key.removeprefix(INPUT_PREFIX)
    return relative.split("/", 1)[0] if "/" in relative else ""


def summary_key(job: str, results: Iterable[dict[str, Any]]) -> str:
    """A JSON-lines part per job and delivery batch, named by what it holds, so a retried batch with the
    same content rewrites the same part. Parts stream results as they come; a redelivery in another batch
    can repeat an image in a second part, so readers merge parts by image key. The job's one-line-per-image
    ``summary.jsonl`` is written by ``amaas batch results`` from the per-image results (see ``job_summary_key``).
    Summary keys end in ``.jsonl``, which no result key does, so an image under a folder named ``_summary``
    is still an image.
    """
    return summary_part_under(_job_prefix(job), results)


def summary_part_under(prefix: str, results: Iterable[dict[str, Any]]) -> str:
    """``summary_key`` for results kept under ``prefix`` (a Step Functions job's output location)."""
    digest = hashlib.sha256("\n".join(sorted(f"{r['key']}@{r.get('etag')}" for r in results)).encode()).hexdigest()
    return f"{prefix}{SUMMARY_DIR}/{digest[:32]}{SUMMARY_SUFFIX}"


def job_summary_key(job: str) -> str:
    """``results/<job>/summary.jsonl``: every image of the job once, in key order."""
    return summary_under(_job_prefix(job))


def summary_under(prefix: str) -> str:
    """The one-line-per-image summary of the results kept under ``prefix``."""
    return f"{prefix}summary{SUMMARY_SUFFIX}"


def json_lines(results: Iterable[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in results).encode()


def _job_prefix(job: str) -> str:
    return f"{OUTPUT_PREFIX}{job}/" if job else OUTPUT_PREFIX
