"""POST /v1/classify"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from amaas.api.deps import get_classifier, get_settings, run_blocking
from amaas.api.inputs import CLASSIFY_REQUEST_BODY, read_image
from amaas.api.responses import ERRORS
from amaas.api.schemas import ClassifyResponse, ModelRef, Prediction
from amaas.model import ImageClassifier
from amaas.settings import Settings

router = APIRouter(tags=["classify"])


@router.post(
    "/v1/classify",
    responses=ERRORS,
    openapi_extra={"requestBody": CLASSIFY_REQUEST_BODY},
)
async def classify(
    request: Request,
    classifier: Annotated[ImageClassifier, Depends(get_classifier)],
    settings: Annotated[Settings, Depends(get_settings)],
    top_k: Annotated[int | None, Query(ge=1, description="how many classes to return (default 5)")] = None,
) -> ClassifyResponse:
    """Classify one image, sent as the raw body (image/* or octet-stream) or as JSON {"image": "<base64>"}."""
    image = await read_image(request, settings.max_body_bytes)
    result = await run_blocking(request, classifier.classify, [image], top_k or settings.default_top_k)
    manifest = classifier.manifest
    return ClassifyResponse(
        model=ModelRef(name=manifest.name, version=manifest.version),
        predictions=[Prediction(label=p.label, index=p.index, score=p.score) for p in result.predictions[0]],
        inference_ms=round(result.inference_ms, 3),
        preprocess_ms=round(result.preprocess_ms, 3),
    )
