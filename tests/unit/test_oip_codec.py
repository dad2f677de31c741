"""The Open Inference Protocol codec, byte for byte as tritonclient frames requests and reads responses."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest

from amaas.api.oip import Tensor, deserialize_bytes, encode_response, parse_request, serialize_bytes
from amaas.errors import AmaasError, InvalidRequestError


def binary_request(header: dict[str, object], *chunks: bytes) -> tuple[bytes, int]:
    encoded = json.dumps(header).encode()
    return encoded + b"".join(chunks), len(encoded)


def test_json_fp32_input_with_nested_data() -> None:
    body = json.dumps(
        {"id": "r1", "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2, 2], "data": [[1, 2], [3, 4]]}]}
    ).encode()

    request = parse_request(body, None)

    assert request.id == "r1"
    (tensor,) = request.inputs
    assert isinstance(tensor.data, np.ndarray)
    np.testing.assert_array_equal(tensor.data, np.array([[[1, 2], [3, 4]]], dtype=np.float32))


def test_binary_fp32_and_bytes_inputs_follow_the_header_in_order() -> None:
    floats = np.arange(6, dtype=np.float32)
    images = [b"\x89PNG first", b"second image"]
    header = {
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": floats.nbytes}},
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [2],
                "parameters": {"binary_data_size": len(serialize_bytes(images))},
            },
        ],
        "outputs": [{"name": "logits", "parameters": {"binary_data": True, "classification": 3}}],
        "parameters": {"binary_data_output": True},
    }

    request = parse_request(*binary_request(header, floats.tobytes(), serialize_bytes(images)))

    a, image = request.inputs
    np.testing.assert_array_equal(a.data, floats.reshape(2, 3))
    assert image.data == images
    assert request.outputs[0].classification == 3 and request.outputs[0].binary is True
    assert request.binary_outputs is True


def test_json_bytes_in_base64() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\xff"
    body = json.dumps(
        {
            "inputs": [
                {"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(png).decode()],
                 "parameters": {"content_type": "base64"}}
            ]
        }
    ).encode()  # fmt: skip

    (tensor,) = parse_request(body, None).inputs

    assert tensor.data == [png]


def test_bytes_serialization_is_length_prefixed_little_endian() -> None:
    encoded = serialize_bytes([b"ab", b""])

    assert encoded == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0)
    assert deserialize_bytes(encoded) == [b"ab", b""]


def test_unknown_request_fields_are_ignored() -> None:
    body = json.dumps(
        {"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [7], "mystery": 1}], "extra": {"a": 1}}
    ).encode()

    assert parse_request(body, None).inputs[0].data.tolist() == [7]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "header_length", "message"),
    [
        (b"{not json", None, "not valid JSON"),
        (b'{"inputs": []}', None, "non-empty list"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1]}]}', None, "do not fill its shape"),
        (b'{"inputs": [{"name": "x", "datatype": "FP99", "shape": [1], "data": [1]}]}', None, "unknown datatype FP99"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ["a"]}]}', None, "not FP32 values"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}', None, "no data"),
        (b"{}", 500, "does not fit"),
    ],
)
def test_malformed_requests_say_what_is_wrong(body: bytes, header_length: int | None, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        parse_request(body, header_length)


def test_binary_sizes_must_add_up() -> None:
    header = {"inputs": [{"name": "a", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}]}
    body, length = binary_request(header, b"\x00" * 12)

    with pytest.raises(InvalidRequestError, match="declare 8 bytes but 12 follow"):
        parse_request(body, length)


def test_response_in_json_and_in_binary() -> None:
    logits = np.array([[0.5, -1.0]], dtype=np.float32)
    tensor = Tensor("logits", "FP32", (1, 2), logits)

    as_json, json_headers = encode_response("m", "v1", "req-9", [(tensor, False)])
    as_binary, binary_headers = encode_response("m", "v1", None, [(tensor, True)])

    assert json_headers == {"content-type": "application/json"}
    assert json.loads(as_json) == {
        "model_name": "m", "model_version": "v1", "id": "req-9",
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [1, 2], "data": [0.5, -1.0]}],
    }  # fmt: skip
    length = int(binary_headers["inference-header-content-length"])
    header = json.loads(as_binary[:length])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 8}
    np.testing.assert_array_equal(np.frombuffer(as_binary[length:], dtype=np.float32), logits.ravel())


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


REQUEST = '{"id": ID, "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": DATA}]}'


@pytest.mark.parametrize(
    ("header", "message"),
    [
        # json.loads itself gives up on this one
        (nested(100_000), "nested too deeply"),
        # json.loads takes these; flattening the data and str() of the id used to recurse past Python's limit
        (REQUEST.replace("ID", '"r1"').replace("DATA", nested(900)), "nested deeper"),
        (REQUEST.replace("ID", nested(900)).replace("DATA", "[1]"), '"id" must be a string'),
    ],
    ids=["header", "data", "id"],
)
def test_deeply_nested_json_is_a_bad_request_not_a_crash(header: str, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        parse_request(header.encode(), None)


def test_data_nested_as_deep_as_a_tensor_still_parse() -> None:
    data = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3, 2, 2], "data": data.tolist()}]})

    (tensor,) = parse_request(body.encode(), None).inputs

    np.testing.assert_array_equal(tensor.data, data)


def test_non_finite_outputs_never_become_invalid_json() -> None:
    # GIVEN logits a broken model could produce
    logits = np.array([[np.nan, np.inf, -np.inf]], dtype=np.float32)
    tensor = Tensor("logits", "FP32", (1, 3), logits)

    # WHEN they are asked for as JSON THEN the server refuses rather than write NaN, which no JSON parser reads
    with pytest.raises(AmaasError, match="NaN or infinite") as caught:
        encode_response("m", "v1", None, [(tensor, False)])
    assert caught.value.status == 500

    # AND in binary they go through unchanged: IEEE floats carry NaN fine
    body, headers = encode_response("m", "v1", None, [(tensor, True)])
    length = int(headers["inference-header-content-length"])
    json.loads(body[:length], parse_constant=lambda name: pytest.fail(f"{name} in the JSON header"))
    np.testing.assert_array_equal(np.frombuffer(body[length:], dtype=np.float32), logits.ravel())
