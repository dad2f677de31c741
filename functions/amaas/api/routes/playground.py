"""GET /: the playground page, self-contained (no external scripts, fonts or CDNs) and locked down.

The page's one inline script and one inline style are allowed by their sha256 in a Content-Security-Policy
that allows nothing else (no other script, no plugin, no form target, no framing by another site); images are
the user's own file (a blob: URL) and the heatmap the API returns (a data: URL); requests go to this origin.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from amaas.api.errors import documented

router = APIRouter(tags=["playground"])


@functools.cache
def _page() -> tuple[str, dict[str, str]]:
    page = resources.files("amaas").joinpath("static/playground.html").read_text(encoding="utf-8")
    return page, security_headers(page)


def security_headers(page: str) -> dict[str, str]:
    """The headers that let exactly this page's inline script and style run, and nothing else."""

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks)

    policy = (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "img-src blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "content-security-policy": policy,
        "x-frame-options": "DENY",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-cache",
    }


@router.get("/", response_class=HTMLResponse, responses=documented())
async def playground() -> HTMLResponse:
    """Choose or drop an image; see the top 5 with bars and the explanation heatmap."""
    page, headers = _page()
    return HTMLResponse(page, headers=headers)
