"""Classification, as the API serves it: ``POST /v1/classify``, its answers, and its Open Inference Protocol
outputs (the ``classification`` extension).

Answers are built as plain JSON from the task's one ``Prediction`` form. The pydantic models below only document
them in the OpenAPI schema, and build their validators only when ``/openapi.json`` is asked for (``defer_build``):
nothing here costs a cold start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from amaas.api.deps import AppSettings, ServedModel, loaded_for, run_blocking
from amaas.api.inputs import IMAGE_ROUTE_ERRORS, ImageRequest, image_request_body, load_images, read_images
from amaas.api.oip import InferRequest, Tensor
from amaas.api.schemas import ModelRef, task_answer
from amaas.artifact.manifest import Manifest
from amaas.artifact.model import Inference, Model
from amaas.artifact.tasks.classification import Prediction, top_k
from amaas.errors import InvalidRequestError
from amaas.observability import record_predictions
from amaas.settings import Settings

router = APIRouter(tags=["classify"])
_DOCS_ONLY = ConfigDict(defer_build=True)


class PredictionBody(BaseModel):
    model_config = _DOCS_ONLY
    label: str
    index: int = Field(description="output index of the class")
    score: float = Field(description="softmax probability, 0..1")


class ClassifyResponse(BaseModel):
    model_config = _DOCS_ONLY
    model: ModelRef
    predictions: list[PredictionBody] = Field(description="top_k classes, most probable first")
    inference_ms: float = Field(description="time spent in ONNX Runtime")
    preprocess_ms: float = Field(description="time spent decoding and preprocessing the image")


class ImageResult(BaseModel):
    model_config = _DOCS_ONLY
    predictions: list[PredictionBody] = Field(description="top_k classes, most probable first")


class BatchResponse(BaseModel):
    model_config = _DOCS_ONLY
    model: ModelRef
    results: list[ImageResult] = Field(description="one entry per image, in request order")
    inference_ms: float = Field(description="time spent in ONNX Runtime for the whole batch")
    preprocess_ms: float = Field(description="time spent fetching, decoding and preprocessing the images")


_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "model": ClassifyResponse | BatchResponse,
        "description": "the top classes; for several images, one entry per image in request order",
    }
}


@router.post(
    "/v1/classify",
    response_class=JSONResponse,
    responses={**_ANSWER, **IMAGE_ROUTE_ERRORS},
    openapi_extra={"requestBody": image_request_body(several=True)},
)
async def classify(
    request: Request,
    model: ServedModel,
    settings: AppSettings,
    top_k: Annotated[int | None, Query(ge=1, description="how many classes to return (default 5)")] = None,
) -> JSONResponse:
    """Classify one image (raw body, JSON `image`, JSON `s3`, multipart `image`) or several in one batch
    (JSON `images`, multipart `images`), answered as `results` in request order."""
    parsed = await read_images(request, settings)
    manifest = await loaded_for(request, model, "classification")
    result = await run_blocking(request, _infer, model, settings, parsed, top_k or settings.default_top_k)
    record_predictions(result.results)
    return JSONResponse(task_answer(manifest, result, batch=parsed.batch))


def _infer(model: Model, settings: Settings, parsed: ImageRequest, k: int) -> Inference:
    return model.infer(load_images(parsed, settings), k=k)


def oip_outputs(manifest: Manifest, parsed: InferRequest, outputs: Sequence[np.ndarray]) -> list[tuple[Tensor, bool]]:
    """The ``/v2`` outputs asked for: the logits, or with ``parameters.classification`` Triton's top-k strings."""
    record_predictions(_finite_top1(outputs[0], manifest.labels))
    name = manifest.output.name
    logits = outputs[0].astype(np.float32)
    if not parsed.outputs:
        return [(Tensor(name, "FP32", tuple(logits.shape), logits), parsed.binary_outputs)]
    answered = []
    for out in parsed.outputs:
        if out.name != name:
            raise InvalidRequestError(f"unknown output {out.name}; this model outputs {name}")
        binary = parsed.binary_outputs if out.binary is None else out.binary
        tensor = (
            _classification(name, logits, manifest.labels, out.classification)
            if out.classification
            else Tensor(name, "FP32", tuple(logits.shape), logits)
        )
        answered.append((tensor, binary))
    return answered


def _finite_top1(logits: np.ndarray, labels: Sequence[str]) -> list[list[Prediction]]:
    """Rows a broken model answered with NaN or inf have no meaningful top class; they would poison the metrics."""
    return top_k(logits[np.isfinite(logits).all(axis=1)], labels, 1)


def _classification(name: str, logits: np.ndarray, labels: Sequence[str], k: int) -> Tensor:
    """Triton's classification extension: the top ``k`` as ``"<value>:<index>:<label>"`` strings, where value
    is the output's own value (here the logit), highest first."""
    k = min(k, logits.shape[1])
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    items = [f"{logits[row, i]:f}:{i}:{labels[i]}".encode() for row in range(len(logits)) for i in order[row]]
    return Tensor(name, "BYTES", (len(logits), k), items)
