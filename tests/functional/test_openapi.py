"""The OpenAPI schema documents every route, its request bodies and its errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute

from amaas.api.app import create_app
from amaas.settings import Settings


@pytest.fixture(scope="module")
def schema(artifact: Path) -> dict[str, Any]:
    app = create_app(Settings(model_dir=artifact))
    document: dict[str, Any] = app.openapi()
    document["x-routes"] = [(route.path, sorted(route.methods)) for route in app.routes if isinstance(route, APIRoute)]
    return document


def test_every_route_is_documented(schema: dict[str, Any]) -> None:
    for path, methods in schema["x-routes"]:
        for method in methods:
            assert method.lower() in schema["paths"][path], f"{method} {path}"


@pytest.mark.parametrize("path", ["/v1/classify", "/v1/explain"])
def test_image_routes_document_bodies_and_errors(schema: dict[str, Any], path: str) -> None:
    operation = schema["paths"][path]["post"]

    assert {"image/png", "image/jpeg", "application/json", "multipart/form-data"} <= set(
        operation["requestBody"]["content"]
    )
    assert {"200", "400", "403", "404", "413", "415", "422", "502", "503"} <= set(operation["responses"])
    assert operation["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")


def test_explain_documents_its_png_answer(schema: dict[str, Any]) -> None:
    assert "image/png" in schema["paths"]["/v1/explain"]["post"]["responses"]["200"]["content"]


def test_open_inference_protocol_routes_are_listed(schema: dict[str, Any]) -> None:
    assert {
        "/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{name}", "/v2/models/{name}/ready",
        "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer",
    } <= set(schema["paths"])  # fmt: skip


def test_infer_documents_json_and_binary_bodies(schema: dict[str, Any]) -> None:
    operation = schema["paths"]["/v2/models/{name}/infer"]["post"]

    assert {"application/json", "application/octet-stream"} <= set(operation["requestBody"]["content"])
    assert {"200", "400", "404", "413"} <= set(operation["responses"])
