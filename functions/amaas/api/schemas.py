"""Response bodies shared by several routes, as pydantic models so the OpenAPI schema documents them. A task's
own answers are documented beside its route (``amaas.api.tasks``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


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
