"""Response bodies shared by several routes, as pydantic models so the OpenAPI schema documents them, and the
envelope every task's ``/v1`` answer shares. A task's own answers are documented beside its route
(``amaas.api.tasks``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from amaas.artifact.manifest import Manifest
from amaas.artifact.model import Inference
from amaas.artifact.tasks import task_for


class ModelRef(BaseModel):
    name: str
    version: str


class ModelIdentity(ModelRef):
    sha256: str = Field(description="sha256 of the served model.onnx")


class HealthResponse(BaseModel):
    status: str = "ok"
    model: ModelIdentity


class ErrorResponse(BaseModel):
    error: str = Field(description="stable machine-readable code, such as invalid_image")
    message: str = Field(description="what went wrong, safe to show to a user")
    request_id: str


class ProtocolError(BaseModel):
    """An Open Inference Protocol error: the protocol's clients read ``error`` as the message."""

    error: str = Field(description="what went wrong, safe to show to a user")


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool = Field(description="false (with a 503) until the model is loaded")


class ModelReady(BaseModel):
    name: str
    ready: bool


def task_answer(manifest: Manifest, result: Inference, *, batch: bool) -> dict[str, Any]:
    """A task route's JSON answer: the model, then one image's answer as its task writes it (``to_json``, as
    batch results carry it too) or ``results`` in request order for several, then where the time went."""
    task = task_for(manifest.task)
    answers = [task.to_json(one, manifest) for one in result.results]
    body: dict[str, Any] = {"model": {"name": manifest.name, "version": manifest.version}}
    if batch:
        body["results"] = answers
    else:
        body.update(answers[0])
    body.update(inference_ms=round(result.inference_ms, 3), preprocess_ms=round(result.preprocess_ms, 3))
    return body
