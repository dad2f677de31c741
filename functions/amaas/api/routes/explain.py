"""POST /v1/explain"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from amaas import explain
from amaas.api.deps import get_classifier, get_settings, run_blocking
from amaas.api.inputs import ImageRequest, image_request_body, load_images, read_images
from amaas.api.responses import ERRORS
from amaas.api.schemas import ExplainResponse, ModelRef
from amaas.api.untrusted import index_param
from amaas.errors import InvalidParameterError
from amaas.model import ImageClassifier
from amaas.settings import MAX_EXPLAIN_GRID, Settings

router = APIRouter(tags=["explain"])

PNG = "image/png"
_PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {PNG: {"schema": {"type": "string", "format": "binary"}}}}
}


@router.post(
    "/v1/explain",
    response_model=ExplainResponse,
    responses={**_PNG_RESPONSE, **ERRORS},
    openapi_extra={"requestBody": image_request_body(several=False)},
)
async def explain_image(
    request: Request,
    classifier: Annotated[ImageClassifier, Depends(get_classifier)],
    settings: Annotated[Settings, Depends(get_settings)],
    grid: Annotated[int | None, Query(ge=2, le=MAX_EXPLAIN_GRID, description="cells per side (default 8)")] = None,
    target: Annotated[str | None, Query(description="class to explain, by label or index (default: top class)")] = None,
) -> ExplainResponse | Response:
    """Occlusion sensitivity for one image: JSON with the grid and a base64 PNG heatmap, or the PNG alone
    when the request says `Accept: image/png`."""
    parsed = await read_images(request, settings)
    if parsed.batch or len(parsed.inputs) != 1:
        raise InvalidParameterError("explanations take exactly one image")
    index = _target_index(classifier, target)
    result = await run_blocking(request, _explain, classifier, settings, parsed, grid or settings.explain_grid, index)
    if prefers_png(request.headers.get("accept", "")):
        headers = {"x-amaas-label": result.label, "x-amaas-score": f"{result.score:.6f}"}
        return Response(content=result.heatmap_png, media_type=PNG, headers=headers)
    manifest = classifier.manifest
    return ExplainResponse(
        model=ModelRef(name=manifest.name, version=manifest.version),
        label=result.label,
        index=result.index,
        score=result.score,
        grid_size=result.grid_size,
        grid=result.grid,
        heatmap_png=base64.b64encode(result.heatmap_png).decode(),
        runs=result.runs,
        explain_ms=round(result.explain_ms, 3),
    )


def prefers_png(accept: str) -> bool:
    """Whether an Accept header ranks ``image/png`` above JSON, the default (RFC 9110 section 12.5.1).

    Each type takes the q of its most specific matching range; PNG wins on a higher q, or on an equal one when
    it is named more specifically (``image/png`` over ``*/*``). ``image/png;q=0`` refuses PNG.
    """
    png, json = _quality(accept, "image", "png"), _quality(accept, "application", "json")
    return png[0] > 0 and png > json


def _quality(accept: str, kind: str, subtype: str) -> tuple[float, int]:
    """(q, specificity) of the most specific range in ``accept`` that matches ``kind/subtype``; (0, 0) if none."""
    best = (0.0, 0)
    for media_range in accept.lower().split(","):
        media, *params = (part.strip() for part in media_range.split(";"))
        main, _, sub = media.partition("/")
        if (main, sub) == (kind, subtype):
            specificity = 3
        elif (main, sub) == (kind, "*"):
            specificity = 2
        elif (main, sub) == ("*", "*"):
            specificity = 1
        else:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        if specificity > best[1]:
            best = (q, specificity)
    return best


def _target_index(classifier: ImageClassifier, target: str | None) -> int | None:
    if target is None:
        return None
    labels = classifier.manifest.labels
    if target in labels:
        return labels.index(target)
    index = index_param(target, "target", len(labels))
    if index is None:
        raise InvalidParameterError(f"target {target!r} is neither a label nor an index below {len(labels)}")
    return index


def _explain(
    classifier: ImageClassifier, settings: Settings, parsed: ImageRequest, grid: int, target: int | None
) -> explain.Explanation:
    (image,) = load_images(parsed, settings)
    return explain.occlusion(classifier, image, grid=grid, target=target)
