"""Open Inference Protocol (V2) REST routes: server and model metadata, health, and infer.

The model takes either its own tensor (already preprocessed, as in the manifest) or ``image``: BYTES, one
encoded image per element, which the server decodes and preprocesses with the manifest. Errors are the
protocol's ``{"error": "..."}`` (see ``amaas.api.errors``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from amaas import __version__
from amaas.api.deps import AppSettings, ServedModel, loaded, run_blocking
from amaas.api.errors import ProtocolRoute, documented
from amaas.api.inputs import check_batch_limits, read_body
from amaas.api.oip import (
    DATATYPES,
    HEADER_LENGTH,
    MAX_DIMENSION,
    MAX_DIMENSIONS,
    NUMPY_DATATYPES,
    InferRequest,
    encode_response,
    parse_request,
)
from amaas.api.schemas import ModelReady, ServerLive, ServerReady
from amaas.api.tasks import OIP_OUTPUTS
from amaas.api.untrusted import byte_count
from amaas.artifact.manifest import Manifest
from amaas.artifact.model import Model
from amaas.errors import (
    ImageNotFoundError,
    InvalidImageError,
    InvalidRequestError,
    ModelNotFoundError,
    ModelUnavailableError,
    PayloadTooLargeError,
    TooManyImagesError,
)
from amaas.settings import Settings

router = APIRouter(prefix="/v2", tags=["open inference protocol"], route_class=ProtocolRoute)

SERVER_NAME = "amaas"
EXTENSIONS = ["binary_tensor_data", "classification"]
PLATFORM = "onnx_onnxv1"
BYTES_INPUT = "image"


_TENSOR = {
    "type": "object",
    "required": ["name", "datatype", "shape", "data"],
    "properties": {
        "name": {"type": "string", "description": "the model's own input, or image (BYTES: encoded images)"},
        "datatype": {"type": "string", "enum": ["BYTES", *DATATYPES]},
        "shape": {
            "type": "array",
            "items": {"type": "integer", "minimum": 0, "maximum": MAX_DIMENSION},
            "minItems": 1,
            "maxItems": MAX_DIMENSIONS,
        },
        "data": {"type": "array", "items": {}, "description": "row-major values, nested or flat"},
        "parameters": {
            "type": "object",
            "description": "binary_data_size (binary extension only: the input's bytes after the JSON header)",
            "properties": {"content_type": {"type": "string", "description": "base64 for BYTES given as strings"}},
        },
    },
}
INFER_REQUEST_BODY = {
    "required": True,
    "description": "JSON, or the binary tensor data extension: a JSON header of Inference-Header-Content-Length "
    "bytes (the JSON schema below, where an input may give parameters.binary_data_size instead of data), then "
    "each binary input's bytes in order",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "id": {"type": "string"},
                    "inputs": {"type": "array", "items": _TENSOR, "minItems": 1},
                    "outputs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {
                                "name": {"type": "string"},
                                "parameters": {
                                    "type": "object",
                                    "properties": {
                                        "classification": {"type": "integer", "minimum": 1},
                                        "binary_data": {"type": "boolean"},
                                    },
                                },
                            },
                        },
                    },
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "binary_data_output": {"type": "boolean"},
                            "content_type": {"type": "string"},
                        },
                    },
                },
            }
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the outputs: JSON, or with the binary tensor data extension a JSON header of "
        "Inference-Header-Content-Length bytes followed by the binary outputs",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    **documented(
        InvalidRequestError,
        InvalidImageError,
        ImageNotFoundError,
        ModelNotFoundError,
        PayloadTooLargeError,
        TooManyImagesError,
        ModelUnavailableError,
        protocol=True,
    ),
}
MODEL_ERRORS = documented(ModelNotFoundError, ModelUnavailableError, protocol=True)
INTERNAL = documented(protocol=True)
READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"model": ServerReady, "description": 'the model is not loaded: {"ready": false}'},
    **INTERNAL,
}


@router.get("", responses=INTERNAL)
async def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}


@router.get("/health/live", responses=INTERNAL)
async def live() -> ServerLive:
    return ServerLive(live=True)


@router.get("/health/ready", response_model=ServerReady, responses=READY_RESPONSES)
async def ready(request: Request, model: ServedModel) -> JSONResponse:
    try:
        await run_blocking(request, model.load)
    except ModelUnavailableError:
        return JSONResponse({"ready": False}, status_code=503)
    return JSONResponse({"ready": True})


@router.get("/models/{name}", responses=MODEL_ERRORS)
async def model_metadata(request: Request, model: ServedModel, name: str) -> dict[str, Any]:
    return _metadata(await _model(request, model, name, None))


@router.get("/models/{name}/versions/{version}", responses=MODEL_ERRORS)
async def model_version_metadata(request: Request, model: ServedModel, name: str, version: str) -> dict[str, Any]:
    return _metadata(await _model(request, model, name, version))


def _metadata(manifest: Manifest) -> dict[str, Any]:
    own = manifest.input
    return {
        "name": manifest.name,
        "versions": [manifest.version],
        "platform": PLATFORM,
        "inputs": [
            {"name": own.name, "datatype": _datatype(own.dtype), "shape": list(own.shape)},
            {"name": _bytes_input(manifest), "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [{"name": manifest.output.name, "datatype": "FP32", "shape": list(manifest.output.shape)}],
    }


@router.get("/models/{name}/ready", responses=MODEL_ERRORS)
async def model_ready(request: Request, model: ServedModel, name: str) -> ModelReady:
    manifest = await _model(request, model, name, None)
    return ModelReady(name=manifest.name, ready=True)


@router.get("/models/{name}/versions/{version}/ready", responses=MODEL_ERRORS)
async def model_version_ready(request: Request, model: ServedModel, name: str, version: str) -> ModelReady:
    manifest = await _model(request, model, name, version)
    return ModelReady(name=manifest.name, ready=True)


@router.post("/models/{name}/infer", responses=INFER_RESPONSES, openapi_extra={"requestBody": INFER_REQUEST_BODY})
async def infer(request: Request, model: ServedModel, settings: AppSettings, name: str) -> Response:
    """Infer on the model's own tensor input or on encoded images (``image``, BYTES), in JSON or with the
    binary tensor data extension (``Inference-Header-Content-Length``)."""
    return await _infer(request, model, settings, await _model(request, model, name, None))


@router.post(
    "/models/{name}/versions/{version}/infer",
    responses=INFER_RESPONSES,
    openapi_extra={"requestBody": INFER_REQUEST_BODY},
)
async def infer_version(
    request: Request, model: ServedModel, settings: AppSettings, name: str, version: str
) -> Response:
    """As ``/v2/models/{name}/infer``, for one version of the model."""
    return await _infer(request, model, settings, await _model(request, model, name, version))


async def _infer(request: Request, model: Model, settings: Settings, manifest: Manifest) -> Response:
    header = byte_count(request.headers.get(HEADER_LENGTH), "Inference-Header-Content-Length")
    body = await read_body(request, settings.max_body_bytes)
    parsed = parse_request(body, header)
    outputs = await run_blocking(request, _run, model, settings, manifest, parsed)
    answered = OIP_OUTPUTS[manifest.task](manifest, parsed, outputs)
    content, headers = encode_response(manifest.name, manifest.version, parsed.id, answered)
    return Response(content=content, headers=headers)


async def _model(request: Request, model: Model, name: str, version: str | None) -> Manifest:
    manifest = await loaded(request, model)
    if name != manifest.name or version not in (None, "", manifest.version):
        served = f"{manifest.name} version {manifest.version}"
        raise ModelNotFoundError(f"no model {name}{f' version {version}' if version else ''}; this server has {served}")
    return manifest


def _bytes_input(manifest: Manifest) -> str:
    return BYTES_INPUT if manifest.input.name != BYTES_INPUT else f"{BYTES_INPUT}_bytes"


def _datatype(dtype: str) -> str:
    return NUMPY_DATATYPES.get(dtype, dtype.upper())


def _run(model: Model, settings: Settings, manifest: Manifest, parsed: InferRequest) -> list[np.ndarray]:
    """The model's outputs for the request's one input: encoded images (BYTES) go through the model's own
    preprocessing; its own tensor is checked by the model against its input spec."""
    if len(parsed.inputs) != 1:
        raise InvalidRequestError(f"this model takes one input, got {len(parsed.inputs)}")
    (tensor,) = parsed.inputs
    if tensor.name == _bytes_input(manifest):
        if tensor.datatype != "BYTES" or not isinstance(tensor.data, list):
            raise InvalidRequestError(f"input {tensor.name} must be BYTES: one encoded image per element")
        check_batch_limits(len(tensor.data), settings, map(len, tensor.data))
        return model.predict(model.preprocess(tensor.data))
    if tensor.name == manifest.input.name:
        if not isinstance(tensor.data, np.ndarray):
            raise InvalidRequestError(f"input {tensor.name} must be {_datatype(manifest.input.dtype)}")
        check_batch_limits(len(tensor.data), settings)
        return model.predict(model.check_input(tensor.data))
    raise InvalidRequestError(
        f"unknown input {tensor.name}; this model takes {manifest.input.name} "
        f"({_datatype(manifest.input.dtype)} {list(manifest.input.shape)}) or {_bytes_input(manifest)} (BYTES [-1])"
    )
