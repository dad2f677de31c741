"""The OpenAPI schema documents every route, its request bodies and its errors, and the errors it documents are
the ones the server really sends, in the shape it really sends them."""

from __future__ import annotations

import base64
import importlib
import json
import math
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from mangum import Mangum

from amaas.api import routes
from amaas.api.app import create_app
from amaas.api.oip import NUMPY_DATATYPES
from amaas.api.tasks import ROUTERS
from amaas.artifact.imaging import Decoded
from amaas.artifact.manifest import read_manifest
from amaas.settings import Settings
from tests.gateway import api_gateway

IMAGE_ERRORS = {"400", "403", "404", "413", "415", "422", "500", "502", "503"}
MODEL_ERRORS = {"404", "500", "503"}
# Every route and the statuses it documents; a new route must say here what it can answer.
DOCUMENTED = {
    ("post", "/v1/classify"): {"200"} | IMAGE_ERRORS,
    ("post", "/v1/explain"): {"200"} | IMAGE_ERRORS,
    ("post", "/v1/segment"): {"200", "406"} | IMAGE_ERRORS,
    ("post", "/v1/detect"): {"200"} | IMAGE_ERRORS,
    ("get", "/v1/health"): {"200", "500", "503"},
    ("get", "/v1/model"): {"200", "500", "503"},
    ("get", "/"): {"200", "500"},
    ("get", "/v2"): {"200", "500"},
    ("get", "/v2/health/live"): {"200", "500"},
    ("get", "/v2/health/ready"): {"200", "500", "503"},
    ("get", "/v2/models/{name}"): {"200"} | MODEL_ERRORS,
    ("get", "/v2/models/{name}/versions/{version}"): {"200"} | MODEL_ERRORS,
    ("get", "/v2/models/{name}/ready"): {"200"} | MODEL_ERRORS,
    ("get", "/v2/models/{name}/versions/{version}/ready"): {"200"} | MODEL_ERRORS,
    ("post", "/v2/models/{name}/infer"): {"200", "400", "413"} | MODEL_ERRORS,
    ("post", "/v2/models/{name}/versions/{version}/infer"): {"200", "400", "413"} | MODEL_ERRORS,
}


@pytest.fixture(scope="module")
def app(artifact: Path) -> FastAPI:
    return create_app(Settings(model_dir=artifact))


@pytest.fixture(scope="module")
def schema(app: FastAPI) -> dict[str, Any]:
    document: dict[str, Any] = app.openapi()
    return document


@pytest.fixture(scope="module")
def served(app: FastAPI) -> Iterator[str]:
    """The app behind the emulated API Gateway."""
    with api_gateway(Mangum(app, lifespan="off")) as url:
        yield url


@pytest.fixture(scope="module")
def unloaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An app whose model is missing: every model route answers 503."""
    app = create_app(Settings(model_dir=tmp_path_factory.mktemp("empty") / "model"))
    with api_gateway(Mangum(app, lifespan="off")) as url:
        yield url


def declared_routes() -> set[tuple[str, str]]:
    """Every (method, path) the route modules (amaas.api.routes.*, one router each) and the tasks
    (amaas.api.tasks.ROUTERS) declare."""
    routers = [
        importlib.import_module(f"{routes.__name__}.{i.name}").router for i in pkgutil.iter_modules(routes.__path__)
    ]
    return {
        (m.lower(), r.path)
        for router in [*routers, *ROUTERS]
        for r in router.routes
        if isinstance(r, APIRoute)
        for m in r.methods or ()
    }


def test_every_route_documents_its_statuses(schema: dict[str, Any]) -> None:
    documented = {(method, path) for path, operations in schema["paths"].items() for method in operations}

    assert declared_routes() == documented == set(DOCUMENTED)
    for (method, path), statuses in DOCUMENTED.items():
        assert set(schema["paths"][path][method]["responses"]) == statuses, f"{method} {path}"


def test_no_route_documents_fastapis_validation_body(schema: dict[str, Any]) -> None:
    # the server answers bad parameters with its own error body, never FastAPI's {"detail": [...]}
    assert "HTTPValidationError" not in json.dumps(schema)


@pytest.mark.parametrize("path", ["/v1/classify", "/v1/explain"])
def test_image_routes_document_bodies(schema: dict[str, Any], path: str) -> None:
    operation = schema["paths"][path]["post"]

    assert {"image/png", "image/jpeg", "application/json", "multipart/form-data"} <= set(
        operation["requestBody"]["content"]
    )


def test_explain_documents_its_png_answer(schema: dict[str, Any]) -> None:
    assert "image/png" in schema["paths"]["/v1/explain"]["post"]["responses"]["200"]["content"]


def test_infer_documents_json_and_binary_bodies_and_answers(schema: dict[str, Any]) -> None:
    operation = schema["paths"]["/v2/models/{name}/infer"]["post"]

    assert {"application/json", "application/octet-stream"} <= set(operation["requestBody"]["content"])
    assert {"application/json", "application/octet-stream"} <= set(operation["responses"]["200"]["content"])


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str, "boolean": bool, "integer": int, "number": (int, float), "object": dict, "array": list,
}  # fmt: skip


def assert_matches(schema: dict[str, Any], documented: dict[str, Any], body: Any) -> None:
    """The body has exactly the documented object's fields, each of its documented type."""
    shape = resolve(schema, documented)
    assert isinstance(body, dict)
    assert set(body) == set(shape["properties"]), f"documented {sorted(shape['properties'])}, got {sorted(body)}"
    assert set(shape.get("required", [])) <= set(body)
    for name, value in body.items():
        assert isinstance(value, JSON_TYPES[resolve(schema, shape["properties"][name])["type"]]), name


TINY = base64.b64encode(b"tiny").decode()
INFER = {"json": "a zero tensor for the model's own input"}
ONE = {"json": {"image": TINY}}
NOT_A_PNG = {"content": b"nope", "headers": {"content-type": "image/png"}}
TEXT = {"content": b"x", "headers": {"content-type": "text/plain"}}
VERSION = "/v2/models/{name}/versions/{version}"

# (server, method, route template, concrete path, request options, status the server answers)
CASES: list[tuple[str, str, str, str, dict[str, Any], int]] = [
    ("served", "post", "/v1/classify", "/v1/classify", NOT_A_PNG, 400),
    ("served", "post", "/v1/classify", "/v1/classify", {"json": {"s3": "s3://not-ours/k.png"}}, 403),
    ("served", "post", "/v1/classify", "/v1/classify", {"json": {"images": [TINY] * 17}}, 413),
    ("served", "post", "/v1/classify", "/v1/classify", TEXT, 415),
    ("served", "post", "/v1/classify", "/v1/classify?top_k=0", ONE, 422),
    ("served", "post", "/v1/classify", "/v1/classify", ONE, 500),
    ("unloaded", "post", "/v1/classify", "/v1/classify", ONE, 503),
    ("served", "post", "/v1/explain", "/v1/explain?grid=1", ONE, 422),
    ("unloaded", "get", "/v1/health", "/v1/health", {}, 503),
    ("unloaded", "get", "/v1/model", "/v1/model", {}, 503),
    ("unloaded", "get", "/v2/health/ready", "/v2/health/ready", {}, 503),
    ("served", "get", "/v2/models/{name}", "/v2/models/nope", {}, 404),
    ("unloaded", "get", "/v2/models/{name}", "/v2/models/MODEL", {}, 503),
    ("served", "get", VERSION, "/v2/models/MODEL/versions/nope", {}, 404),
    ("served", "get", f"{VERSION}/ready", "/v2/models/MODEL/versions/nope/ready", {}, 404),
    ("unloaded", "get", "/v2/models/{name}/ready", "/v2/models/MODEL/ready", {}, 503),
    ("served", "post", "/v2/models/{name}/infer", "/v2/models/MODEL/infer", {"content": b"{oops"}, 400),
    ("served", "post", "/v2/models/{name}/infer", "/v2/models/nope/infer", INFER, 404),
    ("served", "post", "/v2/models/{name}/infer", "/v2/models/MODEL/infer", {"content": b"x" * 4_600_000}, 413),
    ("served", "post", "/v2/models/{name}/infer", "/v2/models/MODEL/infer", INFER, 500),
    ("unloaded", "post", "/v2/models/{name}/infer", "/v2/models/MODEL/infer", INFER, 503),
    ("served", "post", f"{VERSION}/infer", "/v2/models/MODEL/versions/nope/infer", INFER, 404),
]  # fmt: skip


@pytest.mark.parametrize(
    ("server", "method", "route", "path", "options", "status"), CASES, ids=[f"{c[1]} {c[3]} {c[5]}" for c in CASES]
)
def test_documented_errors_are_what_the_server_sends(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    app: FastAPI,
    schema: dict[str, Any],
    artifact: Path,
    server: str,
    method: str,
    route: str,
    path: str,
    options: dict[str, Any],
    status: int,
) -> None:
    # GIVEN a request that fails in a known way (500: a failure no error class covers)
    url: str = request.getfixturevalue(server)
    if status == 500:

        def explode(batch: np.ndarray) -> np.ndarray:
            raise RuntimeError("unexpected")

        monkeypatch.setattr(app.state.model, "predict", explode)
        app.state.model.load()
        pixels = Decoded(np.zeros((32, 32, 3), np.uint8), (32, 32))
        monkeypatch.setattr(app.state.model, "decode", lambda image: pixels)
        monkeypatch.setattr(app.state.model, "preprocess", lambda images: np.zeros((1, 3, 32, 32), np.float32))

    manifest = read_manifest(artifact)
    if options is INFER:
        shape = [1, *manifest.input.shape[1:]]
        tensor = {"name": manifest.input.name, "datatype": NUMPY_DATATYPES[manifest.input.dtype], "shape": shape}
        options = {"json": {"inputs": [{**tensor, "data": [0] * math.prod(shape)}]}}

    # WHEN it is sent
    response = httpx.request(method, url + path.replace("MODEL", manifest.name), **options)

    # THEN the status is documented for the route, and the body has exactly the documented error shape
    assert response.status_code == status, response.text
    documented = schema["paths"][route][method]["responses"][str(status)]
    assert_matches(schema, documented["content"]["application/json"]["schema"], response.json())
