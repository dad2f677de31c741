"""Requests an attacker would send, over real HTTP to `amaas serve` and to the Lambda handler behind API
Gateway, and Lambda events no gateway would send: each gets a clear 4xx with a stable code, never a 500,
never a redirect built from the client's Host header."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.functional.conftest import Invoke
from tests.helpers import event_image, load_event

PNG = event_image(load_event("classify_png"))


def test_405_says_which_methods_the_route_allows(base_url: str) -> None:
    response = httpx.delete(f"{base_url}/v1/classify")

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"] == "method_not_allowed"


def test_a_trailing_slash_is_a_404_not_a_redirect_to_the_hosts_choice(base_url: str) -> None:
    response = httpx.post(
        f"{base_url}/v1/classify/",
        content=PNG,
        headers={"Content-Type": "image/png", "Host": "evil.example"},
        follow_redirects=False,
    )

    assert response.status_code == 404 and "location" not in response.headers
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize("target", ["²", "\u0661", "\uff13", "99999999999999999999"])
def test_unicode_digits_and_huge_numbers_in_query_values_are_a_422(base_url: str, target: str) -> None:
    response = httpx.post(
        f"{base_url}/v1/explain", params={"target": target}, content=PNG, headers={"Content-Type": "image/png"}
    )

    assert response.status_code == 422 and response.json()["error"] == "invalid_parameter"


def test_a_binary_header_length_that_is_not_ascii_digits_is_a_400(base_url: str) -> None:
    body = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1]}]}).encode()

    response = httpx.post(
        f"{base_url}/v2/models/cifar-cnn-synthetic/infer",
        content=body,
        headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": "²".encode("latin-1")},
    )

    assert response.status_code == 400 and "byte count" in response.json()["error"]


@pytest.mark.parametrize(
    "tensor",
    [
        {"name": "image", "datatype": "UINT8", "shape": [1], "data": [-1]},
        {"name": "input", "datatype": "FP32", "shape": [1], "data": [1e40]},
        {"name": "input", "datatype": "INT8", "shape": [1], "data": [300]},
    ],
)
def test_typed_tensor_values_out_of_range_are_a_400(base_url: str, tensor: dict[str, Any]) -> None:
    response = httpx.post(f"{base_url}/v2/models/cifar-cnn-synthetic/infer", json={"inputs": [tensor]})

    assert response.status_code == 400 and response.json()["error"]


def test_s3_references_a_url_parser_rejects_are_a_400(base_url: str) -> None:
    response = httpx.post(f"{base_url}/v1/classify", json={"s3": "s3://[x/y"})

    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_an_event_claiming_a_base64_body_that_is_not_is_a_400(invoke: Invoke) -> None:
    event = load_event("classify_png")
    event["body"] = "this is *not* base64!"

    response = invoke(event)

    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"] == "invalid_request"


def test_an_event_with_headers_of_the_wrong_type_is_a_400(invoke: Invoke) -> None:
    event = load_event("health")
    event["headers"] = {"accept": ["application/json"]}

    assert invoke(event)["statusCode"] == 400


@pytest.mark.parametrize("client_id", ["abc\n", "abc\r\nset-cookie: x=1", "x" * 129, "id with spaces"])
def test_request_ids_that_are_not_plain_tokens_are_replaced_not_echoed(invoke: Invoke, client_id: str) -> None:
    event = load_event("health")
    event["headers"]["X-Request-Id"] = client_id
    event["multiValueHeaders"]["X-Request-Id"] = [client_id]
    event["requestContext"]["requestId"] = "gateway\nid"

    response = invoke(event)

    echoed = response["headers"]["x-request-id"]
    assert echoed != client_id and "\n" not in echoed and len(echoed) == 32


def test_a_json_body_with_a_5000_digit_number_is_a_400(base_url: str) -> None:
    body = b'{"image": "' + base64.b64encode(PNG) + b'", "n": ' + b"9" * 5000 + b"}"

    response = httpx.post(f"{base_url}/v1/classify", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
