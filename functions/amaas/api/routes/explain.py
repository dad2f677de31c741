"""POST /v1/explain: occlusion sensitivity, for classification models."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from amaas import explain
from amaas.api.accept import PNG, prefers_png
from amaas.api.deps import AppSettings, ServedModel, loaded_for, run_blocking
from amaas.api.inputs import IMAGE_ROUTE_ERRORS, ImageRequest, image_request_body, load_images, read_images
from amaas.api.schemas import ModelRef
from amaas.api.untrusted import index_param
from amaas.artifact.manifest import Manifest
from amaas.artifact.model import Model
from amaas.errors import InvalidParameterError
from amaas.settings import MAX_EXPLAIN_GRID, Settings

router = APIRouter(tags=["explain"])


class ExplainResponse(BaseModel):
    """Documents the JSON answer (built as plain JSON; validators only built for /openapi.json)."""

    model_config = ConfigDict(defer_build=True)
    model: ModelRef
    label: str = Field(description="the explained class")
    index: int
    score: float = Field(description="its probability on the unoccluded image")
    grid_size: int
    grid: list[list[float]] = Field(description="probability drop when each cell is hidden, row-major from top-left")
    heatmap_png: str = Field(description="base64 PNG: red where the image supports the class, blue against")
    runs: int = Field(description="images run through the model")
    explain_ms: float


_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"model": ExplainResponse, "content": {PNG: {"schema": {"type": "string", "format": "binary"}}}}
}


@router.post(
    "/v1/explain",
    response_class=JSONResponse,
    responses={**_ANSWER, **IMAGE_ROUTE_ERRORS},
    openapi_extra={"requestBody": image_request_body(several=False)},
)
async def explain_image(
    request: Request,
    model: ServedModel,
    settings: AppSettings,
    grid: Annotated[int | None, Query(ge=2, le=MAX_EXPLAIN_GRID, description="cells per side (default 8)")] = None,
    target: Annotated[str | None, Query(description="class to explain, by label or index (default: top class)")] = None,
) -> Response:
    """Occlusion sensitivity for one image: JSON with the grid and a base64 PNG heatmap, or the PNG alone
    when the request says `Accept: image/png`."""
    parsed = await read_images(request, settings)
    if parsed.batch or len(parsed.inputs) != 1:
        raise InvalidParameterError("explanations take exactly one image")
    manifest = await loaded_for(request, model, "classification")
    index = _target_index(manifest, target)
    result = await run_blocking(request, _explain, model, settings, parsed, grid or settings.explain_grid, index)
    if prefers_png(request.headers.get("accept", "")):
        headers = {"x-amaas-label": result.label, "x-amaas-score": f"{result.score:.6f}"}
        return Response(content=result.heatmap_png, media_type=PNG, headers=headers)
    return JSONResponse(
        {
            "model": {"name": manifest.name, "version": manifest.version},
            "label": result.label,
            "index": result.index,
            "score": result.score,
            "grid_size": result.grid_size,
            "grid": result.grid,
            "heatmap_png": base64.b64encode(result.heatmap_png).decode(),
            "runs": result.runs,
            "explain_ms": round(result.explain_ms, 3),
        }
    )


def _target_index(manifest: Manifest, target: str | None) -> int | None:
    if target is None:
        return None
    labels = manifest.labels
    if target in labels:
        return labels.index(target)
    index = index_param(target, "target", len(labels))
    if index is None:
        raise InvalidParameterError(f"target {target!r} is neither a label nor an index below {len(labels)}")
    return index


def _explain(
    model: Model, settings: Settings, parsed: ImageRequest, grid: int, target: int | None
) -> explain.Explanation:
    (image,) = load_images(parsed, settings)
    return explain.occlusion(model, image, grid=grid, target=target)
