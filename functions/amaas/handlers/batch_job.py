"""Lambda entry point of Step Functions batch jobs: ``amaas.handlers.batch_job.handler``.

Invoked by the job state machine's Distributed Map with one batch of items (``amaas.batch.distributed_map``);
its exceptions are the errors the state machine retries (``UpstreamError``, ``BatchIncompleteError``) or counts
as failed items. The model is loaded at import, as in the other handlers.
"""

from __future__ import annotations

from typing import Any

from amaas import memory, snapstart, storage
from amaas.batch.distributed_map import parse_batch, process_batch
from amaas.observability import logger, tracer
from amaas.serving import init_model
from amaas.settings import Settings

memory.configure_allocator()  # before the model and the first batch allocate
settings = Settings.from_env()
model = init_model(settings)
snapstart.register(storage._client)


@tracer.capture_lambda_handler
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        return process_batch(parse_batch(event), model, settings, context.get_remaining_time_in_millis)
    finally:
        memory.release()
