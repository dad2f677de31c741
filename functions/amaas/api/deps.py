"""FastAPI dependencies: the app's one classifier and settings, from ``app.state``.

They are ``async`` on purpose: FastAPI runs plain ``def`` dependencies in a worker thread, a hop that cost
more than the whole cifar-cnn inference (tests/bench/bench_serving.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from amaas.model import ImageClassifier
from amaas.settings import Settings

T = TypeVar("T")


async def get_classifier(request: Request) -> ImageClassifier:
    classifier: ImageClassifier = request.app.state.classifier
    return classifier


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def run_blocking(request: Request, fn: Callable[..., T], *args: object) -> T:
    """Runs CPU-bound work off the event loop, except on Lambda: a Lambda container serves one request at a
    time, so there the loop has nothing else to do and the thread hop is pure latency."""
    if "aws.event" in request.scope:
        return fn(*args)
    return await run_in_threadpool(fn, *args)
