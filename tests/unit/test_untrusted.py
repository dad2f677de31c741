"""Every parser of untrusted data answers bad input with a 4xx error of the app's own hierarchy: /v2 tensors and
their parameters, JSON bodies, numbers in headers and queries, S3 references, Lambda events, batch result keys.
Properties are checked over generated inputs (hypothesis), not only over the cases listed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amaas.api.events import event_problem
from amaas.api.oip import parse_request
from amaas.api.untrusted import byte_count, index_param, parse_json
from amaas.batch.results import MAX_KEY_BYTES, is_result_key, job_summary_key, result_key, summary_key
from amaas.errors import AmaasError, InvalidParameterError, InvalidRequestError
from amaas.storage import parse_s3_uri


def infer(inputs: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def tensor(datatype: str, data: list[Any], shape: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "name": "x",
        "datatype": datatype,
        "shape": shape if shape is not None else [len(data)],
        "data": data,
        **extra,
    }


@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        ("UINT8", [-1]),
        ("UINT8", [256]),
        ("INT8", [300]),
        ("INT64", [2**64]),
        ("UINT64", [-1]),
        ("INT32", [1.5]),
        ("INT32", [True]),
        ("BOOL", [1]),
        ("FP16", [1e10]),
        ("FP32", [1e40]),
        ("FP64", [10**400]),
        ("FP32", ["1.0"]),
        ("FP32", [None]),
    ],
)
def test_values_a_datatype_cannot_hold_are_a_400(datatype: str, data: list[Any]) -> None:
    with pytest.raises(InvalidRequestError, match="input x"):
        parse_request(infer([tensor(datatype, data)]), None)


def test_values_a_datatype_can_hold_are_kept_exactly() -> None:
    parsed = parse_request(
        infer([tensor("INT64", [-(2**63), 2**63 - 1]), tensor("BOOL", [True, False]), tensor("FP16", [65504.0, -1])]),
        None,
    )

    assert parsed.inputs[0].data.tolist() == [-(2**63), 2**63 - 1]  # type: ignore[union-attr]
    assert parsed.inputs[1].data.tolist() == [True, False]  # type: ignore[union-attr]
    assert parsed.inputs[2].data.tolist() == [65504.0, -1.0]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "body",
    [
        infer([tensor("FP32", [1.0])], outputs={"name": "logits"}),
        infer([tensor("FP32", [1.0])], outputs=["logits"]),
        infer([tensor("FP32", [1.0])], outputs=[{"name": "logits", "parameters": ["classification", 3]}]),
        infer([tensor("FP32", [1.0])], outputs=[{"name": "logits", "parameters": {"classification": True}}]),
        infer([tensor("FP32", [1.0])], outputs=[{"name": "logits", "parameters": {"classification": "3"}}]),
        infer([tensor("FP32", [1.0])], outputs=[{"name": "logits", "parameters": {"binary_data": "yes"}}]),
        infer([tensor("FP32", [1.0])], parameters=[]),
        infer([tensor("FP32", [1.0])], parameters={"binary_data_output": 1}),
        infer([tensor("FP32", [1.0])], parameters={"content_type": 64}),
        infer([tensor("FP32", [1.0])], id=True),
        infer([tensor("FP32", [1.0])], id={"a": 1}),
        infer([tensor("FP32", [1.0], parameters="binary")]),
        infer([tensor("FP32", [1.0], shape=[True])]),
        infer([tensor("FP32", [1.0] * 9, shape=[1] * 9)]),
        infer([tensor("FP32", [], shape=[2**63, 0])]),
        infer([{"name": 1, "datatype": "FP32", "shape": [1], "data": [1.0]}]),
        infer([{"name": "x", "datatype": ["FP32"], "shape": [1], "data": [1.0]}]),
        json.dumps({"inputs": [tensor("INT64", [1])]}).replace("[1]}", "[" + "9" * 5000 + "]}").encode(),
        b'{"inputs": "' + b"\xff" * 8 + b'"}',
        b"[" * 100_000,
    ],
    ids=lambda body: body[:60].decode("utf-8", "replace"),
)
def test_fields_of_the_wrong_json_type_are_a_400_naming_the_field(body: bytes) -> None:
    with pytest.raises(InvalidRequestError):
        parse_request(body, None)


@settings(max_examples=150, deadline=None)
@given(
    document=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
        max_leaves=30,
    ),
    header=st.none() | st.integers(-2, 64),
)
def test_any_json_document_is_parsed_or_refused_with_a_4xx(document: Any, header: int | None) -> None:
    body = json.dumps({"inputs": [document]} if isinstance(document, dict) else document).encode()
    status = 200
    try:
        parse_request(body, header)
    except AmaasError as exc:
        status = exc.status
    assert 200 <= status < 500


@pytest.mark.parametrize("value", ["²", "١٢", "\uff13", "-1", "1e3", "0x10", "1 2", "", "9" * 16])
def test_byte_counts_in_headers_are_ascii_digits_or_a_400(value: str) -> None:
    with pytest.raises(InvalidRequestError, match="byte count"):
        byte_count(value, "Content-Length")


def test_byte_counts_parse() -> None:
    assert byte_count("4500000", "Content-Length") == 4_500_000
    assert byte_count(None, "Content-Length") is None


@pytest.mark.parametrize(("value", "expected"), [("3", 3), ("²", None), ("\uff11", None), ("cat", None)])
def test_index_parameters_accept_ascii_digits_only(value: str, expected: int | None) -> None:
    assert index_param(value, "target", 10) == expected


def test_an_index_past_the_end_is_a_422() -> None:
    with pytest.raises(InvalidParameterError, match="target 12 is not an index below 10"):
        index_param("12", "target", 10)


def test_json_over_the_integer_digit_limit_is_a_400_not_a_value_error() -> None:
    with pytest.raises(InvalidRequestError, match="not valid JSON"):
        parse_json(b'{"n": ' + b"7" * 5000 + b"}")


@pytest.mark.parametrize(
    ("uri", "bucket", "key"),
    [
        ("s3://my-bucket/pic#2.png", "my-bucket", "pic#2.png"),
        ("s3://my-bucket/a?b=c.png", "my-bucket", "a?b=c.png"),
        ("s3://my-bucket/50%41.png", "my-bucket", "50%41.png"),
        ("s3://my-bucket/with space+plus.png", "my-bucket", "with space+plus.png"),
        ("s3://my-bucket/tab\there/new\nline.png", "my-bucket", "tab\there/new\nline.png"),
        ("s3://my-bucket//double//slash", "my-bucket", "/double//slash"),
        ("s3://my.bucket/üñí©ødé.jpg", "my.bucket", "üñí©ødé.jpg"),
    ],
)
def test_s3_references_name_keys_literally(uri: str, bucket: str, key: str) -> None:
    parsed = parse_s3_uri(uri)

    assert (parsed.bucket, parsed.key) == (bucket, key)


@pytest.mark.parametrize(
    "uri", ["s3://[x/y", "s3://", "s3://bucket", "s3://bucket/", "https://bucket/key", "s3://Bad_Bucket/k", "s3://b/k"]
)
def test_malformed_s3_references_are_a_400(uri: str) -> None:
    with pytest.raises(InvalidRequestError, match="s3://bucket/key"):
        parse_s3_uri(uri)


def test_s3_keys_over_1024_bytes_are_a_400() -> None:
    with pytest.raises(InvalidRequestError, match="1024 bytes"):
        parse_s3_uri("s3://my-bucket/" + "é" * 513)


def rest_event(**fields: Any) -> dict[str, Any]:
    return {"httpMethod": "POST", "path": "/v1/classify", "requestContext": {"requestId": "r"}, **fields}


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        (rest_event(body="!!!not base64", isBase64Encoded=True), "base64"),
        (rest_event(body="abc", isBase64Encoded=True), "base64"),
        (rest_event(body="ab=c", isBase64Encoded=True), "base64"),
        (rest_event(body="a===", isBase64Encoded=True), "base64"),
        (rest_event(body="ab c", isBase64Encoded=True), "base64"),
        (rest_event(body="ab-_", isBase64Encoded=True), "base64"),
        (rest_event(body="abcé", isBase64Encoded=True), "base64"),
        (rest_event(body="é\ud800", headers={}), "Unicode"),
        (rest_event(headers={"accept": 3}), "headers"),
        (rest_event(headers={"accept": None}), "headers"),
        (rest_event(multiValueHeaders={"accept": "text/html"}), "multiValueHeaders"),
        (rest_event(multiValueHeaders={"accept": [None]}), "multiValueHeaders"),
        (rest_event(path=["/"]), "path"),
        (rest_event(httpMethod=None), "httpMethod"),
        (rest_event(body={"image": "x"}), "body"),
        (rest_event(body="\ud800"), "Unicode"),
        (rest_event(queryStringParameters={"q": "\udc00"}), "Unicode"),
        (rest_event(headers={"Host": "h:abc"}), "host"),
        (rest_event(headers={"X-Forwarded-Port": "abc"}), "x-forwarded-port"),
        ({"httpMethod": "GET", "path": "/"}, "requestContext"),
        ({"httpMethod": "GET", "path": "/", "requestContext": None}, "requestContext"),
        ({"body": "user-bytes"}, "requestContext"),
        ([], "object"),
    ],
)
def test_lambda_events_mangum_cannot_read_are_named(event: Any, problem: str) -> None:
    assert problem in (event_problem(event) or "")


@pytest.mark.parametrize("body", ["", "abcd", "abc=", "ab==", "AZaz09+/" * 1000])
def test_well_formed_base64_bodies_pass(body: str) -> None:
    assert event_problem(rest_event(body=body, isBase64Encoded=True)) is None


def test_api_gateway_events_pass() -> None:
    from tests.helpers import load_event

    for name in ("classify_png", "classify_json", "health", "classify_corrupt"):
        assert event_problem(load_event(name)) is None


S3_KEYS = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=300).map(
    lambda rest: "incoming/job/" + rest
)


@settings(max_examples=400, deadline=None)
@given(first=S3_KEYS, second=S3_KEYS, pad=st.integers(0, 1100))
def test_every_key_s3_allows_has_its_own_result_key_within_s3s_limit(first: str, second: str, pad: int) -> None:
    first = (first + "x" * pad)[: len(first) + pad]
    while len(first.encode()) > MAX_KEY_BYTES:
        first = first[:-1]
    keys = {first, second}

    results = {result_key(k) for k in keys}

    assert len(results) == len(keys), "two images never share a result"
    assert all(len(r.encode()) <= MAX_KEY_BYTES and is_result_key(r) for r in results)
    # summaries can never be mistaken for results, whatever the images are called
    assert not is_result_key(summary_key("job", [{"key": first, "etag": None}])) and not is_result_key(
        job_summary_key("job")
    )


def test_a_1024_byte_key_still_gets_a_result_and_a_summary_folder_is_just_a_folder() -> None:
    longest = "incoming/job/" + "k" * (MAX_KEY_BYTES - len("incoming/job/"))

    assert result_key(longest).startswith("results/job/") and len(result_key(longest)) <= MAX_KEY_BYTES
    assert result_key("incoming/job/_summary/x.png") == "results/job/_summary/x.png.json"
    assert is_result_key(result_key("incoming/job/_summary/x.png"))
