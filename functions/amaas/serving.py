"""The served model: the artifact's ``Model`` built from the runtime settings, in this one place, with its
steps traced (X-Ray subsegments) and its identity on every log line and metric once it loads."""

from __future__ import annotations

from amaas.artifact.model import Model
from amaas.observability import bind_model, logger, traced
from amaas.settings import Settings


def serving_model(settings: Settings) -> Model:
    """The model every route, the batch handler and the local tools serve; not loaded yet."""
    return Model(
        settings.model_dir,
        threads=settings.ort_threads,
        limits=settings.decode_limits,
        span=traced,
        on_load=_loaded,
    )


def _loaded(model: Model) -> None:
    bind_model(model.manifest)
    logger.info("model loaded", extra={"load_ms": round(model.load_ms, 1)})
