"""``amaas batch``: submit a folder to the deployed batch path, gather its results, or run it locally."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from amaas.batch import INPUT_PREFIX, OUTPUT_PREFIX, is_result_key, job_summary_key, json_lines
from amaas_cli.batch_local import local_items


@dataclass(frozen=True)
class Gathered:
    results: list[dict[str, Any]]
    pending: list[str]


def default_prefix(folder: Path) -> str:
    return f"{folder.resolve().name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"


def submit(folder: Path, bucket: str, prefix: str, s3: Any) -> int:
    """Uploads every image under ``folder`` to ``incoming/<prefix>/``; S3 notifies the batch queue."""
    items = local_items(folder)
    for item in items:
        s3.put_object(Bucket=bucket, Key=f"{INPUT_PREFIX}{prefix}/{item.key}", Body=item.data)
    return len(items)


def gather(bucket: str, prefix: str, s3: Any) -> Gathered:
    """Every result under ``results/<prefix>/``, one per image key, and the images still waiting for one."""
    results = []
    for key in _keys(s3, bucket, f"{OUTPUT_PREFIX}{prefix}/"):
        if not is_result_key(key):
            continue
        results.append(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    done = {r["key"] for r in results}
    pending = [key for key in _keys(s3, bucket, f"{INPUT_PREFIX}{prefix}/") if key not in done]
    return Gathered(sorted(results, key=lambda r: str(r["key"])), pending)


def write_summary(bucket: str, prefix: str, results: Sequence[dict[str, Any]], s3: Any) -> str:
    """Writes the job's ``summary.jsonl`` (one line per image, in key order) next to its results; returns its
    key. Rewriting it is harmless: it is built from the per-image results, which redelivery never doubles."""
    key = job_summary_key(prefix)
    s3.put_object(Bucket=bucket, Key=key, Body=json_lines(results), ContentType="application/x-ndjson")
    return key


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return keys


def table(results: Sequence[dict[str, Any]]) -> str:
    """One line per image: key, status, top-1 label and score (a segmentation's largest class and the fraction
    of the image it covers), or the error."""
    width = max([len(str(r["key"])) for r in results] + [5])
    lines = [f"{'image':<{width}}  {'status':<6}  {'top-1':<14} {'score':>6}  error"]
    for r in results:
        if r["status"] == "ok":
            label, score = _top(r)
            lines.append(f"{r['key']:<{width}}  {'ok':<6}  {label:<14} {score:>6.3f}")
        else:
            lines.append(f"{r['key']:<{width}}  {'error':<6}  {'':<14} {'':>6}  {r['error']}: {r['message']}")
    ok = sum(1 for r in results if r["status"] == "ok")
    lines.append(f"{len(results)} images: {ok} classified, {len(results) - ok} errors")
    return "\n".join(lines)


def _top(result: dict[str, Any]) -> tuple[str, float]:
    if "predictions" in result:
        return result["predictions"][0]["label"], result["predictions"][0]["score"]
    largest = result["classes"][0]
    return largest["label"], largest["fraction"]
