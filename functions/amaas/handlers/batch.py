"""Lambda entry point of batch classification: ``amaas.handlers.batch.handler``.

Triggered by the batch queue (S3 event notifications for uploads under ``incoming/``), with
``ReportBatchItemFailures`` so that only failed messages are retried. The model is loaded at import.
"""

from __future__ import annotations

from typing import Any

from amaas.batch import process_sqs
from amaas.errors import ModelUnavailableError
from amaas.model import ImageClassifier
from amaas.observability import logger, tracer
from amaas.settings import Settings

settings = Settings.from_env()
classifier = ImageClassifier(
    settings.model_dir, threads=settings.ort_threads, max_image_pixels=settings.max_image_pixels
)
try:
    classifier.load()
except ModelUnavailableError as exc:
    # every message will fail and be retried, then reach the DLQ: loud, and nothing is lost
    logger.error("model not loaded at init", extra={"reason": exc.message})


@tracer.capture_lambda_handler
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_sqs(event["Records"], classifier, settings)
