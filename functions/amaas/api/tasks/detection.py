"""Detection, as the API serves it: ``POST /v1/detect``, its answers, and its Open Inference Protocol outputs
(the raw output tensors with their shapes).

Boxes are ``[x0, y0, x1, y1]`` in the ORIGINAL image's pixels (upright, EXIF orientation applied): the image
was stretched to the model's square input and every box is stretched back. ``score_threshold`` and
``max_detections`` default to the manifest's ``task_config`` (``max_detections`` can lower its cap, never raise
it: the cap bounds the work NMS may do).
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
from amaas.errors import InvalidRequestError
from amaas.observability import record_detections
from amaas.settings import Settings

router = APIRouter(tags=["detect"])
_DOCS_ONLY = ConfigDict(defer_build=True)
_DTYPES = {"float32": "FP32", "int64": "INT64"}


class DetectionBody(BaseModel):
    model_config = _DOCS_ONLY
    label: str
    index: int = Field(description="the class's index in the model's labels")
    score: float = Field(description="the model's confidence, 0..1")
    box: list[float] = Field(description="[x0, y0, x1, y1] in the original image's pixels", min_length=4, max_length=4)


class DetectResponse(BaseModel):
    model_config = _DOCS_ONLY
    model: ModelRef
    detections: list[DetectionBody] = Field(description="objects found, most confident first")
    inference_ms: float = Field(description="time spent in ONNX Runtime")
    preprocess_ms: float = Field(description="time spent decoding and preprocessing the image")


class ImageDetections(BaseModel):
    model_config = _DOCS_ONLY
    detections: list[DetectionBody] = Field(description="objects found, most confident first")


class DetectBatchResponse(BaseModel):
    model_config = _DOCS_ONLY
    model: ModelRef
    results: list[ImageDetections] = Field(description="one entry per image, in request order")
    inference_ms: float = Field(description="time spent in ONNX Runtime for the whole batch")
    preprocess_ms: float = Field(description="time spent fetching, decoding and preprocessing the images")


_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "model": DetectResponse | DetectBatchResponse,
        "description": "the objects found; for several images, one entry per image in request order",
    }
}


@router.post(
    "/v1/detect",
    response_class=JSONResponse,
    responses={**_ANSWER, **IMAGE_ROUTE_ERRORS},
    openapi_extra={"requestBody": image_request_body(several=True)},
)
async def detect(
    request: Request,
    model: ServedModel,
    settings: AppSettings,
    score_threshold: Annotated[
        float | None, Query(ge=0.0, le=1.0, description="lowest score returned (default: the model's, often 0.3)")
    ] = None,
    max_detections: Annotated[
        int | None, Query(ge=1, le=1000, description="most detections per image (default and cap: the model's)")
    ] = None,
) -> JSONResponse:
    """Find objects in one image (raw body, JSON `image`, JSON `s3`, multipart `image`) or several in one batch
    (JSON `images`, multipart `images`), answered as `results` in request order."""
    parsed = await read_images(request, settings)
    manifest = await loaded_for(request, model, "detection")
    options = {"score_threshold": score_threshold, "max_detections": max_detections}
    result = await run_blocking(request, _infer, model, settings, parsed, options)
    record_detections(result.results)
    return JSONResponse(task_answer(manifest, result, batch=parsed.batch))


def _infer(model: Model, settings: Settings, parsed: ImageRequest, options: dict[str, Any]) -> Inference:
    return model.infer(load_images(parsed, settings), **options)


def oip_outputs(manifest: Manifest, parsed: InferRequest, outputs: Sequence[np.ndarray]) -> list[tuple[Tensor, bool]]:
    """The ``/v2`` outputs asked for (all by default): the graph's raw tensors with their shapes (SSD: box
    regressions and class logits against the manifest's default boxes; whole-graph detectors: padded boxes in
    input pixels, scores, labels)."""
    tensors = {}
    for spec, value in zip(manifest.outputs, outputs, strict=False):
        dtype = _DTYPES.get(str(value.dtype), "FP32")
        array = value.astype(np.int64 if dtype == "INT64" else np.float32)
        tensors[spec.name] = Tensor(spec.name, dtype, tuple(array.shape), array)
    if not parsed.outputs:
        return [(tensor, parsed.binary_outputs) for tensor in tensors.values()]
    answered = []
    for out in parsed.outputs:
        if out.name not in tensors:
            raise InvalidRequestError(f"unknown output {out.name}; this model outputs {', '.join(tensors)}")
        if out.classification:
            raise InvalidRequestError("the classification parameter applies to classifiers, not to a detector")
        answered.append((tensors[out.name], parsed.binary_outputs if out.binary is None else out.binary))
    return answered
