"""GET /v1/health and GET /v1/model"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from amaas.api.deps import get_classifier, run_blocking
from amaas.api.responses import INTERNAL, UNAVAILABLE
from amaas.api.schemas import HealthResponse, ModelIdentity
from amaas.model import ImageClassifier

router = APIRouter(tags=["model"])

_UNAVAILABLE: dict[int | str, dict[str, Any]] = {**UNAVAILABLE, **INTERNAL}


@router.get("/v1/health", responses=_UNAVAILABLE)
async def health(request: Request, classifier: Annotated[ImageClassifier, Depends(get_classifier)]) -> HealthResponse:
    """200 once the model is loaded and verified; 503 with the reason otherwise."""
    await run_blocking(request, classifier.load)
    manifest = classifier.manifest
    return HealthResponse(
        model=ModelIdentity(name=manifest.name, version=manifest.version, sha256=manifest.model_sha256)
    )


@router.get("/v1/model", responses=_UNAVAILABLE)
async def model(request: Request, classifier: Annotated[ImageClassifier, Depends(get_classifier)]) -> dict[str, Any]:
    """The served model's manifest: labels, input, preprocessing and metrics."""
    await run_blocking(request, classifier.load)
    return classifier.manifest.public_dict()
