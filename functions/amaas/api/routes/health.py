"""GET /v1/health and GET /v1/model"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from amaas.api.deps import ServedModel, loaded
from amaas.api.errors import documented
from amaas.api.schemas import HealthResponse, ModelIdentity
from amaas.errors import ModelUnavailableError

router = APIRouter(tags=["model"])

_UNAVAILABLE = documented(ModelUnavailableError)


@router.get("/v1/health", responses=_UNAVAILABLE)
async def health(request: Request, model: ServedModel) -> HealthResponse:
    """200 once the model is loaded and verified; 503 with the reason otherwise."""
    manifest = await loaded(request, model)
    return HealthResponse(
        model=ModelIdentity(name=manifest.name, version=manifest.version, sha256=manifest.model_sha256)
    )


@router.get("/v1/model", responses=_UNAVAILABLE)
async def model_card(request: Request, model: ServedModel) -> dict[str, Any]:
    """The served model's manifest: labels, input, preprocessing and metrics."""
    return (await loaded(request, model)).public_dict()
