"""The FastAPI application: the same app runs under Mangum on Lambda and under uvicorn locally."""

from __future__ import annotations

from fastapi import FastAPI

from amaas.api.context import RequestContextMiddleware
from amaas.api.errors import add_exception_handlers
from amaas.api.routes import classify, health
from amaas.model import ImageClassifier
from amaas.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Builds the app and its (not yet loaded) classifier; call ``app.state.classifier.load()`` to load it
    eagerly, otherwise the first request does."""
    settings = settings or Settings.from_env()
    app = FastAPI(
        title="AMaaS inference API",
        version="1",
        description="Image classification with an INT8 ONNX model.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.classifier = ImageClassifier(
        settings.model_dir, threads=settings.ort_threads, max_image_pixels=settings.max_image_pixels
    )
    app.include_router(classify.router)
    app.include_router(health.router)
    add_exception_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    return app
