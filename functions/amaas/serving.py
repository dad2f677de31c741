"""The served model: the artifact's ``Model`` built from the runtime settings, in this one place, with its
steps traced (X-Ray subsegments) and its identity on every log line and metric once it loads."""

from __future__ import annotations

from amaas.artifact.model import Model
from amaas.errors import ModelUnavailableError
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


def init_model(settings: Settings) -> Model:
    """The served model, loaded in a function's init phase. A model that cannot load is logged, not raised:
    the function then fails every batch it is given (retried, then in the DLQ or counted failed by the map run),
    loudly, and nothing is lost."""
    model = serving_model(settings)
    try:
        model.load()
    except ModelUnavailableError as exc:
        logger.error("model not loaded at init", extra={"reason": exc.message})
    return model


def _loaded(model: Model) -> None:
    bind_model(model.manifest)
    logger.info("model loaded", extra={"load_ms": round(model.load_ms, 1)})
