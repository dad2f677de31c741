"""Lambda entry point of the HTTP API: ``amaas.handlers.api.handler``.

The model is loaded here, at import, so it happens once per container and inside the init phase that
SnapStart snapshots. A failed load is not fatal: the API answers 503 with the reason until it succeeds.
"""

from __future__ import annotations

import logging

from mangum import Mangum

from amaas import memory, snapstart, storage
from amaas.api.app import create_app
from amaas.api.events import guarded
from amaas.errors import ModelUnavailableError
from amaas.observability import logger, tracer

memory.configure_allocator()  # before the model and the first request allocate
# Our access line carries the request id, status and latency; Mangum's own one is noise.
logging.getLogger("mangum").setLevel(logging.WARNING)

app = create_app()
try:
    app.state.model.load()
except ModelUnavailableError as exc:
    logger.error("model not loaded at init", extra={"reason": exc.message})
snapstart.register(storage._client)  # published versions are restored from a snapshot of this init

# Responses stay out of X-Ray: they carry predictions and heatmaps drawn from users' images. Errors are kept;
# the app turns its own into responses, and events Mangum could not read are answered with a 400 before it.
handler = tracer.capture_lambda_handler(
    logger.inject_lambda_context(guarded(Mangum(app, lifespan="off"))), capture_response=False, capture_error=True
)
