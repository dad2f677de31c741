"""GET /: the playground page, self-contained (no external scripts, fonts or CDNs)."""

from __future__ import annotations

import functools
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from amaas.api.responses import INTERNAL

router = APIRouter(tags=["playground"])


@functools.cache
def _page() -> str:
    return resources.files("amaas").joinpath("static/playground.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, responses=INTERNAL)
async def playground() -> HTMLResponse:
    """Choose or drop an image; see the top 5 with bars and the explanation heatmap."""
    return HTMLResponse(_page(), headers={"cache-control": "no-cache"})
