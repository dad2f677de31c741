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
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import numpy as np

from amaas.api.untrusted import field, json_integer, parse_json, positive_int
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
MAX_DIMENSIONS = 8
MAX_DIMENSION = 2**31 - 1
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
    outputs: list[RequestedOutput] = dataclass_field(default_factory=list)
    binary_outputs: bool = False


def parse_request(body: bytes, header_length: int | None) -> InferRequest:
    """Parses a JSON-only or JSON+binary infer request, checking the type of every field it reads.

    Raises:
        InvalidRequestError: Malformed JSON, fields of the wrong type, wrong shapes, sizes that do not add up,
            unknown datatypes, values out of their datatype's range.
    """
    if header_length is None:
        header, binary = body, b""
    else:
        if not 0 < header_length <= len(body):
            raise InvalidRequestError(
                f"Inference-Header-Content-Length {header_length} does not fit a {len(body)}-byte body"
            )
        header, binary = body[:header_length], body[header_length:]
    document = parse_json(header, "the inference request header")
    if not isinstance(document, dict):
        raise InvalidRequestError('an inference request is a JSON object with "inputs"')
    specs = field(document, "inputs", list, "the request")
    if not specs:
        raise InvalidRequestError('an inference request needs "inputs": a non-empty list of tensors')
    parameters = field(document, "parameters", dict, "the request", {})
    content_type = field(parameters, "content_type", str, "the request's parameters", None)
    offset = 0
    inputs = []
    for spec in specs:
        tensor, used = _input(spec, binary, offset, content_type)
        inputs.append(tensor)
        offset += used
    if offset != len(binary):
        raise InvalidRequestError(f"binary inputs declare {offset} bytes but {len(binary)} follow the header")
    request_id = field(document, "id", (str, int, float), "the request", None)
    return InferRequest(
        id=None if request_id is None else str(request_id),
        inputs=inputs,
        outputs=[_output(spec) for spec in field(document, "outputs", list, "the request", [])],
        binary_outputs=field(parameters, "binary_data_output", bool, "the request's parameters", False),
    )


def _output(spec: Any) -> RequestedOutput:
    if not isinstance(spec, dict):
        raise InvalidRequestError('each requested output is an object with a "name"')
    name = field(spec, "name", str, "a requested output")
    parameters = field(spec, "parameters", dict, f"output {name}", {})
    classification = parameters.get("classification")
    return RequestedOutput(
        name,
        binary=field(parameters, "binary_data", bool, f"output {name}'s parameters", None),
        classification=None if classification is None else positive_int(classification, "parameters.classification"),
    )


def _input(spec: Any, binary: bytes, offset: int, default_content_type: str | None) -> tuple[Tensor, int]:
    if not isinstance(spec, dict):
        raise InvalidRequestError("each input must be an object with name, shape, datatype and data")
    name = field(spec, "name", str, "an input")
    where = f"input {name}"
    datatype = field(spec, "datatype", str, where)
    dims = [json_integer(d) for d in field(spec, "shape", list, where)]
    if len(dims) > MAX_DIMENSIONS or not all(d is not None and 0 <= d <= MAX_DIMENSION for d in dims):
        raise InvalidRequestError(f"{where}: shape must be at most {MAX_DIMENSIONS} integers from 0 to {MAX_DIMENSION}")
    shape = tuple(d for d in dims if d is not None)
    count = math.prod(shape)
    parameters = field(spec, "parameters", dict, where, {})
    declared = parameters.get("binary_data_size")
    if declared is not None:
        size = json_integer(declared)
        if size is None or size < 0 or offset + size > len(binary):
            raise InvalidRequestError(f"{where}: binary_data_size {declared} runs past the end of the body")
        chunk = binary[offset : offset + size]
        if datatype == "BYTES":
            items = deserialize_bytes(chunk, name)
            _check_count(name, len(items), count)
            return Tensor(name, datatype, shape, items), size
        dtype = _dtype(name, datatype)
        if size != count * np.dtype(dtype).itemsize:
            raise InvalidRequestError(f"{where}: {size} bytes do not hold {count} {datatype} values")
        return Tensor(name, datatype, shape, np.frombuffer(chunk, dtype=dtype).reshape(shape)), size
    if "data" not in spec:
        raise InvalidRequestError(f"{where}: no data and no binary_data_size")
    flat = _flatten(name, spec["data"])
    _check_count(name, len(flat), count)
    if datatype == "BYTES":
        content_type = field(parameters, "content_type", str, f"{where}'s parameters", default_content_type)
        return Tensor(name, datatype, shape, [_json_bytes(name, item, content_type) for item in flat]), 0
    return Tensor(name, datatype, shape, _typed(name, datatype, flat).reshape(shape)), 0


def _dtype(name: str, datatype: str) -> Any:
    if datatype not in DATATYPES:
        raise InvalidRequestError(f"input {name}: unknown datatype {datatype}")
    return DATATYPES[datatype]


def _typed(name: str, datatype: str, flat: list[Any]) -> np.ndarray:
    """JSON values as an array of ``datatype``, refusing what the type cannot hold: a boolean where a number
    belongs (or the reverse), a fraction in an integer tensor, an integer outside its range (UINT8 -1, INT8 300),
    a number too large for a float type."""
    dtype = np.dtype(_dtype(name, datatype))
    if dtype.kind == "b":
        if not all(isinstance(v, bool) for v in flat):
            raise InvalidRequestError(f"input {name}: data are not BOOL values (true or false)")
        return np.asarray(flat, dtype=dtype)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
        raise InvalidRequestError(f"input {name}: data are not {datatype} values (numbers)")
    if dtype.kind in "iu":
        integers = [i for i in map(json_integer, flat) if i is not None]
        if len(integers) != len(flat):
            raise InvalidRequestError(f"input {name}: data are not {datatype} values (integers)")
        limits = np.iinfo(dtype)
        if integers and (min(integers) < limits.min or max(integers) > limits.max):
            raise InvalidRequestError(f"input {name}: {datatype} values must lie in {limits.min}..{limits.max}")
        return np.asarray(integers, dtype=dtype)
    try:
        values = np.asarray(flat, dtype=np.float64)
    except OverflowError:  # an integer beyond float64's range
        raise InvalidRequestError(f"input {name}: a value is too large for {datatype}") from None
    finite = np.isfinite(values)
    with np.errstate(over="ignore"):
        array = values.astype(dtype)
    if not np.array_equal(np.isfinite(array), finite):
        raise InvalidRequestError(f"input {name}: a value is too large for {datatype}")
    return array


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


def _json_bytes(name: str, item: Any, content_type: str | None) -> bytes:
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
