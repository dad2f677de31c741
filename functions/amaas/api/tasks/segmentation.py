"""Segmentation, as the API serves it: ``POST /v1/segment`` and its Open Inference Protocol outputs.

One image answers with its class mask at the ORIGINAL size (EXIF orientation applied) as a palette PNG whose
pixel values are label indices (``Accept: image/png``), or with the pixels and fraction of the image each class
covers as JSON (the default, and the only form for several images). ``overlay=true`` answers the original
image with the mask tinted over it, as a PNG. Full-size images are bounded by ``max_mask_pixels``: a mask costs
one byte per pixel, an overlay four plus the decoded original.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from amaas.api.accept import PNG, prefers_png
from amaas.api.deps import AppSettings, ServedModel, loaded_for, run_blocking
from amaas.api.errors import documented
from amaas.api.inputs import IMAGE_ROUTE_ERRORS, image_request_body, load_images, read_images
from amaas.api.oip import InferRequest, Tensor
from amaas.api.schemas import ModelRef, task_answer
from amaas.artifact import imaging
from amaas.artifact.manifest import Manifest
from amaas.artifact.tasks.segmentation import (
    Segmentation,
    SegmentationConfig,
    dominant,
    mask_png,
    overlay,
    png,
)
from amaas.errors import InvalidRequestError, NotAcceptableError, PayloadTooLargeError
from amaas.observability import record_segmentation
from amaas.settings import Settings

router = APIRouter(tags=["segment"])
_DOCS_ONLY = ConfigDict(defer_build=True)


class ClassArea(BaseModel):
    model_config = _DOCS_ONLY
    label: str
    index: int = Field(description="label index: the value of this class's pixels in the PNG mask")
    pixels: int = Field(description="pixels of the original image in this class")
    fraction: float = Field(description="share of the image, 0..1")


class ImageSegments(BaseModel):
    model_config = _DOCS_ONLY
    size: list[int] = Field(description="[width, height] of the original image, upright")
    classes: list[ClassArea] = Field(description="the classes present, largest first")


class SegmentResponse(ImageSegments):
    model: ModelRef
    inference_ms: float = Field(description="time spent in ONNX Runtime")
    preprocess_ms: float = Field(description="time spent decoding and preprocessing the image")


class SegmentBatchResponse(BaseModel):
    model_config = _DOCS_ONLY
    model: ModelRef
    results: list[ImageSegments] = Field(description="one entry per image, in request order")
    inference_ms: float = Field(description="time spent in ONNX Runtime for the whole batch")
    preprocess_ms: float = Field(description="time spent fetching, decoding and preprocessing the images")


_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "model": SegmentResponse | SegmentBatchResponse,
        "description": "per-class areas as JSON; or, for one image, the mask (or overlay) as a PNG",
        "content": {PNG: {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post(
    "/v1/segment",
    response_class=JSONResponse,
    responses={**_ANSWER, **IMAGE_ROUTE_ERRORS, **documented(NotAcceptableError)},
    openapi_extra={"requestBody": image_request_body(several=True)},
)
async def segment(
    request: Request,
    model: ServedModel,
    settings: AppSettings,
    overlay: Annotated[bool, Query(description="answer the image with the mask drawn over it (a PNG)")] = False,
) -> Response:
    """Segment one image (raw body, JSON `image`, JSON `s3`, multipart `image`) or several (JSON `images`,
    multipart `images`, answered as JSON `results` in request order). `Accept: image/png` answers one image's
    mask at its original size, a palette PNG of label indices."""
    parsed = await read_images(request, settings)
    manifest = await loaded_for(request, model, "segmentation")
    png = overlay or prefers_png(request.headers.get("accept", ""))
    if png and parsed.batch:
        raise NotAcceptableError("a PNG answer holds one image; ask for application/json to segment several")
    images = await run_blocking(request, load_images, parsed, settings)
    result = await run_blocking(request, model.infer, images)
    _record(manifest, result.results)
    if not png:
        return JSONResponse(task_answer(manifest, result, batch=parsed.batch))
    (segmentation,) = result.results
    body = await run_blocking(request, _png, manifest, settings, segmentation, images[0] if overlay else None)
    headers = {"x-amaas-model": manifest.name, "x-amaas-version": manifest.version}
    return Response(content=body, media_type=PNG, headers=headers)


def _png(manifest: Manifest, settings: Settings, segmentation: Segmentation, original: bytes | None) -> bytes:
    width, height = segmentation.size
    if width * height > settings.max_mask_pixels:
        raise PayloadTooLargeError(
            f"a {width}x{height} mask is {width * height} pixels; this server draws at most {settings.max_mask_pixels}"
            " (ask for JSON, or send a smaller image)"
        )
    mask = segmentation.full_mask()
    if original is None:
        return mask_png(mask)
    image = imaging.decode(original, settings.decode_limits)
    background = SegmentationConfig.from_manifest(manifest).background
    return png(overlay(image, mask, background))


def _record(manifest: Manifest, results: Sequence[Segmentation]) -> None:
    background = SegmentationConfig.from_manifest(manifest).background
    labels, foreground = [], []
    for segmentation in results:
        counts = segmentation.pixel_counts(len(manifest.labels))
        labels.append(manifest.labels[dominant(counts, background)])
        total = max(1, int(counts.sum()))
        foreground.append(1.0 - (counts[background] / total if background is not None else 0.0))
    record_segmentation(labels, foreground)


def oip_outputs(manifest: Manifest, parsed: InferRequest, outputs: Sequence[np.ndarray]) -> list[tuple[Tensor, bool]]:
    """The ``/v2`` outputs asked for: what the graph ends at, as the model answered it: the uint8 label maps
    ``[N, side, side]`` of a finished graph, or logits ``[N, classes, h, w]``."""
    name = manifest.output.name
    classes = SegmentationConfig.from_manifest(manifest).output == "classes"
    value = np.ascontiguousarray(outputs[0], dtype=np.uint8 if classes else np.float32)
    tensor = Tensor(name, "UINT8" if classes else "FP32", tuple(value.shape), value)
    if not parsed.outputs:
        return [(tensor, parsed.binary_outputs)]
    answered = []
    for out in parsed.outputs:
        if out.name != name:
            raise InvalidRequestError(f"unknown output {out.name}; this model outputs {name}")
        if out.classification:
            raise InvalidRequestError("the classification extension is for classification models")
        answered.append((tensor, parsed.binary_outputs if out.binary is None else out.binary))
    return answered
