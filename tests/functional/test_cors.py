"""CORS: only the configured origin may call the API from a browser; none by default."""

from __future__ import annotations

from pathlib import Path

import httpx
from mangum import Mangum

from amaas.api.app import create_app
from amaas.settings import Settings
from tests.gateway import api_gateway

ORIGIN = "https://app.example.com"


def test_the_configured_origin_gets_cors_headers_and_others_do_not(artifact: Path) -> None:
    app = Mangum(create_app(Settings(model_dir=artifact, cors_origins=(ORIGIN,))), lifespan="off")
    with api_gateway(app) as url:
        allowed = httpx.get(f"{url}/v1/health", headers={"Origin": ORIGIN})
        other = httpx.get(f"{url}/v1/health", headers={"Origin": "https://evil.example"})
        preflight = httpx.options(
            f"{url}/v1/classify",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key",
            },
        )

    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in allowed.headers["access-control-expose-headers"]
    assert "access-control-allow-origin" not in other.headers
    assert preflight.status_code == 200 and "x-api-key" in preflight.headers["access-control-allow-headers"]


def test_no_cors_by_default(artifact: Path) -> None:
    app = Mangum(create_app(Settings(model_dir=artifact)), lifespan="off")
    with api_gateway(app) as url:
        response = httpx.get(f"{url}/v1/health", headers={"Origin": ORIGIN})

    assert "access-control-allow-origin" not in response.headers
