"""The FastAPI application: the same app runs under Mangum on Lambda and under uvicorn locally."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.responses import Response

from amaas import __version__
from amaas.api.context import REQUEST_ID, RequestContextMiddleware
from amaas.api.deps import refuse_unknown_query
from amaas.api.errors import add_exception_handlers, include
from amaas.api.oip import HEADER_LENGTH
from amaas.api.routes import explain, health, playground, v2
from amaas.api.tasks import ROUTERS
from amaas.errors import InvalidRequestError
from amaas.serving import serving_model
from amaas.settings import Settings

DESCRIPTION = """Image classification with an INT8 ONNX model.

* `/v1/...`: the image API. Send images as raw bodies, base64 JSON, multipart or S3 references; get top-k
  predictions or an occlusion explanation.
* `/v2/...`: the Open Inference Protocol (KServe/Triton V2), with the binary tensor data and
  classification extensions, so tritonclient and the kserve client work unchanged.
* `/`: a playground page.

Errors are `{"error": code, "message": text, "request_id": id}` on `/v1` and `{"error": text}` on `/v2`.
Every response carries `x-request-id`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Builds the app and its (not yet loaded) model; call ``app.state.model.load()`` to load it eagerly,
    otherwise the first request does."""
    settings = settings or Settings.from_env()
    app = FastAPI(
        title="AMaaS inference API",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        # a redirect's Location would be built from the client's Host header, and would drop the API stage
        redirect_slashes=False,
        dependencies=[Depends(refuse_unknown_query)],
    )
    app.state.settings = settings
    app.state.model = serving_model(settings)
    for router in (*ROUTERS, explain.router, health.router, v2.router, playground.router):
        include(app, router)
    add_exception_handlers(app)
    _document_errors_as_served(app)
    if settings.cors_origins:
        app.add_middleware(
            JsonCorsMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["content-type", "accept", "x-api-key", "x-request-id", "authorization", HEADER_LENGTH],
            expose_headers=["x-request-id", "x-amaas-label", "x-amaas-score", HEADER_LENGTH],
            max_age=600,
        )
    app.add_middleware(RequestContextMiddleware)
    return app


class JsonCorsMiddleware(CORSMiddleware):
    """Starlette's CORS handling, with a refused preflight answered in the API's JSON error format (Starlette's
    own answer is a plain-text 400)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        error = InvalidRequestError(f"CORS preflight refused: {bytes(response.body).decode(errors='replace')}")
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
        body = {"error": error.code, "message": error.message, "request_id": REQUEST_ID.get()}
        return JSONResponse(body, status_code=error.status, headers=headers)


def _document_errors_as_served(app: FastAPI) -> None:
    """FastAPI documents a 422 ``HTTPValidationError`` (``{"detail": [...]}``) on every route with
    parameters, a body this API never sends (validation errors go through ``amaas.api.errors``). Routes whose
    parameters can fail list their real 422 themselves; the generated one is dropped."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.get("responses", {})
                ref = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
                if ref.get("$ref", "").endswith("/HTTPValidationError"):
                    del responses["422"]
        components = schema.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
