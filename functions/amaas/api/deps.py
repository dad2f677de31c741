"""FastAPI dependencies: the app's one model and its settings, from ``app.state``, and the check that refuses
query parameters a route does not take.

They are ``async`` on purpose: FastAPI runs plain ``def`` dependencies in a worker thread, a hop that cost
more than the whole cifar-cnn inference (tests/bench/bench_serving.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from amaas.artifact.manifest import Manifest
from amaas.artifact.model import Model
from amaas.errors import InvalidParameterError, TaskNotServedError
from amaas.settings import Settings

T = TypeVar("T")


async def get_model(request: Request) -> Model:
    model: Model = request.app.state.model
    return model


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


ServedModel = Annotated[Model, Depends(get_model)]
AppSettings = Annotated[Settings, Depends(get_settings)]


async def loaded(request: Request, model: Model) -> Manifest:
    """The model's manifest once it is loaded (off the event loop: loading reads and hashes the artifact).

    Raises:
        ModelUnavailableError: It cannot be loaded (503).
    """
    await run_blocking(request, model.load)
    return model.manifest


async def loaded_for(request: Request, model: Model, task: str) -> Manifest:
    """As ``loaded``, for a route of one task.

    Raises:
        ModelUnavailableError: The model cannot be loaded (503).
        TaskNotServedError: The served model does another task (404), named with the route that serves it.
    """
    manifest = await loaded(request, model)
    if manifest.task != task:
        raise TaskNotServedError(
            f"this route is for {task} models; the served model does {manifest.task} (see GET /v1/model)"
        )
    return manifest


async def run_blocking(request: Request, fn: Callable[..., T], *args: object) -> T:
    """Runs CPU-bound work off the event loop, except on Lambda: a Lambda container serves one request at a
    time, so there the loop has nothing else to do and the thread hop is pure latency."""
    if "aws.event" in request.scope:
        return fn(*args)
    return await run_in_threadpool(fn, *args)


async def refuse_unknown_query(request: Request) -> None:
    """Every route refuses query parameters it does not take: ``topk=3`` is a typo to report, not a request to
    answer with the default five.

    Raises:
        InvalidParameterError: A parameter the route does not declare.
    """
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = _query_names(dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise InvalidParameterError(f"unknown query parameter {unknown[0]!r}; this route takes: {takes}")


def _query_names(dependant: Any) -> set[str]:
    """The query parameters a route and its dependencies declare (FastAPI's ``Dependant`` tree)."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names
