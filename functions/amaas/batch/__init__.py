"""Batch classification: many images in, one JSON result per image out, nothing lost and nothing doubled.

The same code classifies a local folder (``amaas batch run``, ``local``) and S3 objects announced by S3 event
notifications through SQS (``sqs``, behind ``amaas.handlers.batch``); ``results`` holds what both share: the
per-image isolation and how results are named.
"""

from __future__ import annotations

from amaas.batch.results import (
    INPUT_PREFIX,
    OUTPUT_PREFIX,
    SUMMARY_DIR,
    Item,
    classify,
    is_result_key,
    job_of,
    job_summary_key,
    json_lines,
    result_key,
    summary_key,
)

__all__ = [
    "INPUT_PREFIX",
    "OUTPUT_PREFIX",
    "SUMMARY_DIR",
    "Item",
    "classify",
    "is_result_key",
    "job_of",
    "job_summary_key",
    "json_lines",
    "result_key",
    "summary_key",
]
