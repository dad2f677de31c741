"""Lambda entry point of batch classification: ``amaas.handlers.batch.handler``.

Triggered by the batch queue (S3 event notifications for uploads under ``incoming/``), with
``ReportBatchItemFailures`` so that only failed messages are retried. The model is loaded at import.
"""

from __future__ import annotations

from typing import Any

from amaas import memory, snapstart, storage
from amaas.batch.sqs import process_sqs
from amaas.observability import logger, tracer
from amaas.serving import init_model
from amaas.settings import Settings

memory.configure_allocator()  # before the model and the first request allocate
settings = Settings.from_env()
model = init_model(settings)
snapstart.register(storage._client)


@tracer.capture_lambda_handler
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        return process_sqs(event["Records"], model, settings, context.get_remaining_time_in_millis)
    finally:
        memory.release()
