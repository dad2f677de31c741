"""POST /v1/classify"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from amaas.api.deps import get_classifier, get_settings, run_blocking
from amaas.api.inputs import ImageRequest, image_request_body, load_images, read_images
from amaas.api.responses import ERRORS
from amaas.api.schemas import BatchResponse, ClassifyResponse, ImageResult, ModelRef, Prediction
from amaas.model import Classification, ImageClassifier
from amaas.observability import record_predictions
from amaas.settings import Settings

router = APIRouter(tags=["classify"])


@router.post("/v1/classify", responses=ERRORS, openapi_extra={"requestBody": image_request_body(several=True)})
async def classify(
    request: Request,
    classifier: Annotated[ImageClassifier, Depends(get_classifier)],
    settings: Annotated[Settings, Depends(get_settings)],
    top_k: Annotated[int | None, Query(ge=1, description="how many classes to return (default 5)")] = None,
) -> ClassifyResponse | BatchResponse:
    """Classify one image (raw body, JSON `image`, JSON `s3`, multipart `image`) or several in one batch
    (JSON `images`, multipart `images`), answered as `results` in request order."""
    parsed = await read_images(request, settings)
    result = await run_blocking(request, _classify, classifier, settings, parsed, top_k or settings.default_top_k)
    record_predictions(result.predictions)
    manifest = classifier.manifest
    model = ModelRef(name=manifest.name, version=manifest.version)
    timing = {"inference_ms": round(result.inference_ms, 3), "preprocess_ms": round(result.preprocess_ms, 3)}
    ranked = [[Prediction(label=p.label, index=p.index, score=p.score) for p in image] for image in result.predictions]
    if parsed.batch:
        return BatchResponse(model=model, results=[ImageResult(predictions=r) for r in ranked], **timing)
    return ClassifyResponse(model=model, predictions=ranked[0], **timing)


def _classify(classifier: ImageClassifier, settings: Settings, parsed: ImageRequest, k: int) -> Classification:
    return classifier.classify(load_images(parsed, settings), k)
