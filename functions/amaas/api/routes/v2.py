"""Open Inference Protocol (V2) REST routes: server and model metadata, health, and infer.

The model takes either its own tensor (already preprocessed, as in the manifest) or ``image``: BYTES, one
encoded image per element, which the server decodes and preprocesses with the manifest. Errors are the
protocol's ``{"error": "..."}`` (see ``amaas.api.errors``).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from amaas import __version__
from amaas.api.deps import get_classifier, get_settings, run_blocking
from amaas.api.inputs import check_batch_limits, read_body
from amaas.api.oip import (
    DATATYPES,
    HEADER_LENGTH,
    MAX_DIMENSION,
    MAX_DIMENSIONS,
    NUMPY_DATATYPES,
    InferRequest,
    Tensor,
    encode_response,
    parse_request,
)
from amaas.api.responses import PROTOCOL_INTERNAL, PROTOCOL_MODEL_ERRORS
from amaas.api.schemas import ModelReady, ProtocolError, ServerLive, ServerReady
from amaas.api.untrusted import byte_count
from amaas.errors import InvalidRequestError, ModelNotFoundError, ModelUnavailableError
from amaas.manifest import Manifest
from amaas.model import ImageClassifier
from amaas.observability import record_predictions
from amaas.postprocessing import top_k
from amaas.settings import Settings

router = APIRouter(prefix="/v2", tags=["open inference protocol"])

SERVER_NAME = "amaas"
EXTENSIONS = ["binary_tensor_data", "classification"]
PLATFORM = "onnx_onnxv1"
BYTES_INPUT = "image"

Classifier = Annotated[ImageClassifier, Depends(get_classifier)]
AppSettings = Annotated[Settings, Depends(get_settings)]

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
    400: {"model": ProtocolError, "description": "malformed request, unknown input or output, empty batch"},
    413: {"model": ProtocolError, "description": "body, image or batch over the limit"},
    **PROTOCOL_MODEL_ERRORS,
}
READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"model": ServerReady, "description": 'the model is not loaded: {"ready": false}'},
    **PROTOCOL_INTERNAL,
}


@router.get("", responses=PROTOCOL_INTERNAL)
async def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}


@router.get("/health/live", responses=PROTOCOL_INTERNAL)
async def live() -> ServerLive:
    return ServerLive(live=True)


@router.get("/health/ready", response_model=ServerReady, responses=READY_RESPONSES)
async def ready(request: Request, classifier: Classifier) -> JSONResponse:
    try:
        await run_blocking(request, classifier.load)
    except ModelUnavailableError:
        return JSONResponse({"ready": False}, status_code=503)
    return JSONResponse({"ready": True})


@router.get("/models/{name}", responses=PROTOCOL_MODEL_ERRORS)
async def model_metadata(request: Request, classifier: Classifier, name: str) -> dict[str, Any]:
    return _metadata(await _model(request, classifier, name, None))


@router.get("/models/{name}/versions/{version}", responses=PROTOCOL_MODEL_ERRORS)
async def model_version_metadata(request: Request, classifier: Classifier, name: str, version: str) -> dict[str, Any]:
    return _metadata(await _model(request, classifier, name, version))


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


@router.get("/models/{name}/ready", responses=PROTOCOL_MODEL_ERRORS)
async def model_ready(request: Request, classifier: Classifier, name: str) -> ModelReady:
    manifest = await _model(request, classifier, name, None)
    return ModelReady(name=manifest.name, ready=True)


@router.get("/models/{name}/versions/{version}/ready", responses=PROTOCOL_MODEL_ERRORS)
async def model_version_ready(request: Request, classifier: Classifier, name: str, version: str) -> ModelReady:
    manifest = await _model(request, classifier, name, version)
    return ModelReady(name=manifest.name, ready=True)


@router.post("/models/{name}/infer", responses=INFER_RESPONSES, openapi_extra={"requestBody": INFER_REQUEST_BODY})
async def infer(request: Request, classifier: Classifier, settings: AppSettings, name: str) -> Response:
    """Infer on the model's own tensor input or on encoded images (``image``, BYTES), in JSON or with the
    binary tensor data extension (``Inference-Header-Content-Length``)."""
    return await _infer(request, classifier, settings, await _model(request, classifier, name, None))


@router.post(
    "/models/{name}/versions/{version}/infer",
    responses=INFER_RESPONSES,
    openapi_extra={"requestBody": INFER_REQUEST_BODY},
)
async def infer_version(
    request: Request, classifier: Classifier, settings: AppSettings, name: str, version: str
) -> Response:
    """As ``/v2/models/{name}/infer``, for one version of the model."""
    return await _infer(request, classifier, settings, await _model(request, classifier, name, version))


async def _infer(request: Request, classifier: ImageClassifier, settings: Settings, manifest: Manifest) -> Response:
    header = byte_count(request.headers.get(HEADER_LENGTH), "Inference-Header-Content-Length")
    body = await read_body(request, settings.max_body_bytes)
    parsed = parse_request(body, header)
    logits, labels = await run_blocking(request, _run, classifier, settings, manifest, parsed)
    outputs = _outputs(manifest, parsed, logits, labels)
    content, headers = encode_response(manifest.name, manifest.version, parsed.id, outputs)
    return Response(content=content, headers=headers)


async def _model(request: Request, classifier: ImageClassifier, name: str, version: str | None) -> Manifest:
    await run_blocking(request, classifier.load)
    manifest = classifier.manifest
    if name != manifest.name or version not in (None, "", manifest.version):
        served = f"{manifest.name} version {manifest.version}"
        raise ModelNotFoundError(f"no model {name}{f' version {version}' if version else ''}; this server has {served}")
    return manifest


def _bytes_input(manifest: Manifest) -> str:
    return BYTES_INPUT if manifest.input.name != BYTES_INPUT else f"{BYTES_INPUT}_bytes"


def _datatype(dtype: str) -> str:
    return NUMPY_DATATYPES.get(dtype, dtype.upper())


def _run(
    classifier: ImageClassifier, settings: Settings, manifest: Manifest, parsed: InferRequest
) -> tuple[np.ndarray, list[str]]:
    if len(parsed.inputs) != 1:
        raise InvalidRequestError(f"this model takes one input, got {len(parsed.inputs)}")
    (tensor,) = parsed.inputs
    if tensor.name == _bytes_input(manifest):
        if tensor.datatype != "BYTES" or not isinstance(tensor.data, list):
            raise InvalidRequestError(f"input {tensor.name} must be BYTES: one encoded image per element")
        check_batch_limits(len(tensor.data), settings, map(len, tensor.data))
        logits = classifier.predict(classifier.preprocess(tensor.data))
    elif tensor.name == manifest.input.name:
        expected = _datatype(manifest.input.dtype)
        if tensor.datatype != expected or not isinstance(tensor.data, np.ndarray):
            raise InvalidRequestError(f"input {tensor.name} must be {expected}")
        wanted = manifest.input.shape[1:]
        if len(tensor.shape) != len(manifest.input.shape) or tensor.shape[1:] != wanted:
            raise InvalidRequestError(f"input {tensor.name} must have shape [-1, {', '.join(map(str, wanted))}]")
        check_batch_limits(tensor.shape[0], settings)
        if tensor.data.dtype.kind == "f" and not np.isfinite(tensor.data).all():
            raise InvalidRequestError(f"input {tensor.name} holds NaN or infinite values")
        logits = classifier.predict(np.ascontiguousarray(tensor.data))
    else:
        raise InvalidRequestError(
            f"unknown input {tensor.name}; this model takes {manifest.input.name} "
            f"({_datatype(manifest.input.dtype)} {list(manifest.input.shape)}) or {_bytes_input(manifest)} (BYTES [-1])"
        )
    # Rows a broken model answered with NaN or inf have no meaningful top class; they would poison the metrics
    record_predictions(top_k(logits[np.isfinite(logits).all(axis=1)], manifest.labels, 1))
    return logits, list(manifest.labels)


def _outputs(
    manifest: Manifest, parsed: InferRequest, logits: np.ndarray, labels: list[str]
) -> list[tuple[Tensor, bool]]:
    name = manifest.output.name
    logits = logits.astype(np.float32)
    requested = parsed.outputs or []
    if not requested:
        return [(Tensor(name, "FP32", tuple(logits.shape), logits), parsed.binary_outputs)]
    outputs = []
    for out in requested:
        if out.name != name:
            raise InvalidRequestError(f"unknown output {out.name}; this model outputs {name}")
        binary = parsed.binary_outputs if out.binary is None else out.binary
        if out.classification:
            outputs.append((_classification(name, logits, labels, out.classification), binary))
        else:
            outputs.append((Tensor(name, "FP32", tuple(logits.shape), logits), binary))
    return outputs


def _classification(name: str, logits: np.ndarray, labels: list[str], k: int) -> Tensor:
    """Triton's classification extension: the top ``k`` as ``"<value>:<index>:<label>"`` strings, where value
    is the output's own value (here the logit), highest first."""
    k = min(k, logits.shape[1])
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    items = [f"{logits[row, i]:f}:{i}:{labels[i]}".encode() for row in range(len(logits)) for i in order[row]]
    return Tensor(name, "BYTES", (len(logits), k), items)
