"""Response bodies, as pydantic models so the OpenAPI schema documents them."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ModelRef(BaseModel):
    name: str
    version: str


class ModelIdentity(ModelRef):
    sha256: str = Field(description="sha256 of the served model.onnx")


class Prediction(BaseModel):
    label: str
    index: int = Field(description="output index of the class")
    score: float = Field(description="softmax probability, 0..1")


class ClassifyResponse(BaseModel):
    model: ModelRef
    predictions: list[Prediction] = Field(description="top_k classes, most probable first")
    inference_ms: float = Field(description="time spent in ONNX Runtime")
    preprocess_ms: float = Field(description="time spent decoding and preprocessing the image")


class ImageResult(BaseModel):
    predictions: list[Prediction] = Field(description="top_k classes, most probable first")


class BatchResponse(BaseModel):
    model: ModelRef
    results: list[ImageResult] = Field(description="one entry per image, in request order")
    inference_ms: float = Field(description="time spent in ONNX Runtime for the whole batch")
    preprocess_ms: float = Field(description="time spent fetching, decoding and preprocessing the images")


class ExplainResponse(BaseModel):
    model: ModelRef
    label: str = Field(description="the explained class")
    index: int
    score: float = Field(description="its probability on the unoccluded image")
    grid_size: int
    grid: list[list[float]] = Field(description="probability drop when each cell is hidden, row-major from top-left")
    heatmap_png: str = Field(description="base64 PNG: red where the image supports the class, blue against")
    runs: int = Field(description="images run through the model")
    explain_ms: float


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
