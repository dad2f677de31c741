"""Open Inference Protocol (KServe/Triton "V2") REST codec: infer requests in, infer responses out, in JSON
or with the binary tensor data extension, as tritonclient and the kserve client send and read them.

Binary extension: the body is the JSON header (``Inference-Header-Content-Length`` bytes long) followed by
each binary tensor in input order; an input says it is binary with ``parameters.binary_data_size``. BYTES
elements, in binary form, are each a 4-byte little-endian length and the bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from amaas.errors import AmaasError, InvalidRequestError

DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
NUMPY_DATATYPES = {np.dtype(t).name: name for name, t in DATATYPES.items()}
HEADER_LENGTH = "inference-header-content-length"
# Tensors have a handful of dimensions; nesting deeper than this is an attack or a bug, not data.
MAX_DATA_DEPTH = 32
_END = object()


@dataclass(frozen=True)
class Tensor:
    """A tensor: numeric data as an ndarray of ``shape``, BYTES data as a flat list of byte strings."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray | list[bytes]


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool | None = None
    classification: int | None = None


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    outputs: list[RequestedOutput] = field(default_factory=list)
    binary_outputs: bool = False


def parse_request(body: bytes, header_length: int | None) -> InferRequest:
    """Parses a JSON-only or JSON+binary infer request.

    Raises:
        InvalidRequestError: Malformed JSON, wrong shapes, sizes that do not add up, unknown datatypes.
    """
    if header_length is None:
        header, binary = body, b""
    else:
        if not 0 < header_length <= len(body):
            raise InvalidRequestError(
                f"Inference-Header-Content-Length {header_length} does not fit a {len(body)}-byte body"
            )
        header, binary = body[:header_length], body[header_length:]
    try:
        document = json.loads(header)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidRequestError("the inference request header is not valid JSON") from None
    except RecursionError:
        raise InvalidRequestError("the inference request header is nested too deeply") from None
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list) or not document["inputs"]:
        raise InvalidRequestError('an inference request needs "inputs": a non-empty list of tensors')

    parameters = document.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidRequestError('"parameters" must be an object')
    offset = 0
    inputs = []
    for spec in document["inputs"]:
        tensor, used = _input(spec, binary, offset, parameters.get("content_type"))
        inputs.append(tensor)
        offset += used
    if offset != len(binary):
        raise InvalidRequestError(f"binary inputs declare {offset} bytes but {len(binary)} follow the header")

    outputs = []
    for spec in document.get("outputs") or []:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise InvalidRequestError('each requested output needs a "name"')
        out_params = spec.get("parameters") or {}
        classification = out_params.get("classification")
        if classification is not None and (not isinstance(classification, int) or classification < 1):
            raise InvalidRequestError("parameters.classification must be a positive integer")
        binary_flag = out_params.get("binary_data")
        outputs.append(
            RequestedOutput(
                spec["name"], binary=None if binary_flag is None else bool(binary_flag), classification=classification
            )
        )
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, (str, int, float)):
        raise InvalidRequestError('"id" must be a string')
    return InferRequest(
        id=str(request_id) if request_id is not None else None,
        inputs=inputs,
        outputs=outputs,
        binary_outputs=bool(parameters.get("binary_data_output", False)),
    )


def _input(spec: Any, binary: bytes, offset: int, default_content_type: Any) -> tuple[Tensor, int]:
    if not isinstance(spec, dict):
        raise InvalidRequestError("each input must be an object with name, shape, datatype and data")
    name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
    if not isinstance(name, str) or not isinstance(datatype, str) or not isinstance(shape, list):
        raise InvalidRequestError('each input needs "name", "datatype" and "shape"')
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InvalidRequestError(f"input {name}: shape must be a list of non-negative integers")
    count = math.prod(shape)
    parameters = spec.get("parameters") or {}
    size = parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise InvalidRequestError(f"input {name}: binary_data_size {size} runs past the end of the body")
        chunk = binary[offset : offset + size]
        if datatype == "BYTES":
            items = deserialize_bytes(chunk, name)
            _check_count(name, len(items), count)
            return Tensor(name, datatype, tuple(shape), items), size
        dtype = _dtype(name, datatype)
        if size != count * np.dtype(dtype).itemsize:
            raise InvalidRequestError(f"input {name}: {size} bytes do not hold {count} {datatype} values")
        return Tensor(name, datatype, tuple(shape), np.frombuffer(chunk, dtype=dtype).reshape(shape)), size
    if "data" not in spec:
        raise InvalidRequestError(f"input {name}: no data and no binary_data_size")
    flat = _flatten(name, spec["data"])
    _check_count(name, len(flat), count)
    if datatype == "BYTES":
        content_type = parameters.get("content_type", default_content_type)
        return Tensor(name, datatype, tuple(shape), [_json_bytes(name, item, content_type) for item in flat]), 0
    try:
        array = np.asarray(flat, dtype=_dtype(name, datatype)).reshape(shape)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"input {name}: data are not {datatype} values") from None
    return Tensor(name, datatype, tuple(shape), array), 0


def _dtype(name: str, datatype: str) -> Any:
    if datatype not in DATATYPES:
        raise InvalidRequestError(f"input {name}: unknown datatype {datatype}")
    return DATATYPES[datatype]


def _check_count(name: str, got: int, expected: int) -> None:
    if got != expected:
        raise InvalidRequestError(f"input {name}: {got} elements do not fill its shape ({expected} expected)")


def _flatten(name: str, data: Any) -> list[Any]:
    """Row-major leaves of nested lists, without recursion (a client controls the depth)."""
    leaves: list[Any] = []
    stack = [iter([data])]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            if len(stack) > MAX_DATA_DEPTH:
                raise InvalidRequestError(f"input {name}: data are nested deeper than {MAX_DATA_DEPTH} levels")
            stack.append(iter(item))
        else:
            leaves.append(item)
    return leaves


def _json_bytes(name: str, item: Any, content_type: Any) -> bytes:
    """JSON cannot carry raw bytes: ``content_type: base64`` (on the input, or on the request for clients
    such as tritonclient that cannot set input parameters) says the strings are base64."""
    if not isinstance(item, str):
        raise InvalidRequestError(f"input {name}: BYTES elements in JSON must be strings")
    if content_type in ("base64", "b64"):
        try:
            return base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequestError(f"input {name}: an element is not valid base64") from None
    return item.encode("utf-8")


def deserialize_bytes(buffer: bytes, name: str = "BYTES") -> list[bytes]:
    items, offset = [], 0
    while offset < len(buffer):
        if offset + 4 > len(buffer):
            raise InvalidRequestError(f"input {name}: a BYTES element length is cut off")
        (length,) = struct.unpack_from("<I", buffer, offset)
        offset += 4
        if offset + length > len(buffer):
            raise InvalidRequestError(f"input {name}: a BYTES element runs past its tensor")
        items.append(buffer[offset : offset + length])
        offset += length
    return items


def serialize_bytes(items: Sequence[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def encode_response(
    model_name: str, model_version: str, request_id: str | None, outputs: Sequence[tuple[Tensor, bool]]
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers; outputs flagged binary go after the JSON header."""
    entries, chunks = [], []
    for tensor, binary in outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        if binary:
            chunk = (
                serialize_bytes(tensor.data)
                if isinstance(tensor.data, list)
                else np.ascontiguousarray(tensor.data).tobytes()
            )
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        elif isinstance(tensor.data, list):
            entry["data"] = [item.decode("utf-8", errors="replace") for item in tensor.data]
        else:
            entry["data"] = tensor.data.reshape(-1).tolist()
        entries.append(entry)
    document: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": entries}
    if request_id is not None:
        document["id"] = request_id
    try:
        # NaN and Infinity are not JSON: a strict client would fail on the whole response
        header = json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:
        raise AmaasError(
            "the model produced NaN or infinite outputs, which JSON cannot carry; ask for binary outputs"
        ) from None
    if not chunks:
        return header, {"content-type": "application/json"}
    return header + b"".join(chunks), {
        "content-type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }
