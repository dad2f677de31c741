"""The real Lambda handler called with the API Gateway events under tests/events/ (the files `sam local invoke
-e` takes), answering from a model the project's own export built."""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from amaas.api.oip import NUMPY_DATATYPES
from amaas.artifact.manifest import read_manifest
from amaas.artifact.model import Model
from tests.events.generate import REQUEST_ID
from tests.functional.conftest import Invoke
from tests.helpers import LambdaContext, encode_image, event_image, load_event


def body(response: dict[str, Any]) -> dict[str, Any]:
    assert response["isBase64Encoded"] is False
    assert response["headers"]["content-type"] == "application/json"
    parsed: dict[str, Any] = json.loads(response["body"])
    return parsed


@pytest.mark.parametrize(
    ("event_name", "label", "top_k"),
    [("classify_png", "star", 3), ("classify_jpeg", "heart", 5), ("classify_json", "ring", 2)],
)
def test_classify_events_return_the_right_label(
    invoke: Invoke, artifact: Path, event_name: str, label: str, top_k: int
) -> None:
    response = invoke(load_event(event_name))

    assert response["statusCode"] == 200
    result = body(response)
    manifest = read_manifest(artifact)
    assert result["model"] == {"name": manifest.name, "version": manifest.version}
    predictions = result["predictions"]
    assert len(predictions) == top_k
    assert predictions[0]["label"] == label
    assert predictions[0]["index"] == manifest.labels.index(label)
    scores = [p["score"] for p in predictions]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1
    assert result["inference_ms"] > 0


def test_handler_scores_equal_a_direct_onnx_runtime_run(invoke: Invoke, artifact: Path) -> None:
    # GIVEN the image inside the PNG event, classified straight through the runtime's model wrapper
    event = load_event("classify_png")
    direct = Model(artifact).infer([event_image(event)], k=3).results[0]

    # WHEN the same bytes go through API Gateway encoding, Mangum and FastAPI
    served = body(invoke(event))["predictions"]

    # THEN nothing on the way changed the pixels: same classes, same scores
    assert [p["label"] for p in served] == [p.label for p in direct]
    # (answers carry scores to 6 decimals)
    np.testing.assert_allclose([p["score"] for p in served], [p.score for p in direct], rtol=0, atol=5e-7)


def test_held_out_images_through_the_handler_match_the_exported_accuracy(invoke: Invoke, artifact: Path) -> None:
    from amaas_export.data import synthetic

    held_out = synthetic.generate(100, seed=0, split="test")
    event = load_event("classify_png")
    correct = 0
    for pixels, label in zip(held_out.images, held_out.labels, strict=True):
        event["body"] = base64.b64encode(encode_image(Image.fromarray(pixels))).decode()
        top = body(invoke(event))["predictions"][0]
        correct += top["index"] == label

    exported = read_manifest(artifact).metrics["int8"]["top1"]
    assert correct / 100 == pytest.approx(exported, abs=0.08)
    assert correct >= 70


def test_request_id_comes_from_api_gateway_or_the_client(invoke: Invoke) -> None:
    assert invoke(load_event("classify_png"))["headers"]["x-request-id"] == REQUEST_ID
    assert invoke(load_event("classify_json"))["headers"]["x-request-id"] == "client-chosen-id-42"


def test_health_reports_the_loaded_model_and_its_hash(invoke: Invoke, artifact: Path) -> None:
    response = invoke(load_event("health"))

    manifest = read_manifest(artifact)
    assert response["statusCode"] == 200
    assert body(response) == {
        "status": "ok",
        "model": {"name": manifest.name, "version": manifest.version, "sha256": manifest.model_sha256},
    }


def test_model_route_serves_the_manifest_without_file_paths(invoke: Invoke, artifact: Path) -> None:
    document = body(invoke(load_event("model")))

    assert document["labels"] == list(read_manifest(artifact).labels)
    assert document["preprocessing"]["crop"] == 32
    assert 0.7 < document["metrics"]["int8"]["top1"] <= 1
    assert "files" not in document
    assert str(artifact) not in json.dumps(document)


@pytest.mark.parametrize(
    ("event_name", "status", "code"),
    [
        ("classify_unsupported_media", 415, "unsupported_media_type"),
        ("classify_corrupt", 400, "invalid_image"),
        ("classify_bad_top_k", 422, "invalid_parameter"),
    ],
)
def test_bad_requests_get_a_json_error_with_a_stable_code(
    invoke: Invoke, event_name: str, status: int, code: str
) -> None:
    response = invoke(load_event(event_name))

    assert response["statusCode"] == status
    error = body(response)
    assert error["error"] == code
    assert error["request_id"] == REQUEST_ID
    assert not re.search(r"Traceback|\.py\b|(^|[\s'\"])/\w", error["message"]), "no stack traces or paths"


def test_body_over_the_limit_is_413(invoke: Invoke) -> None:
    event = load_event("classify_png")
    event["body"] = base64.b64encode(b"\xff" * 4_600_000).decode()

    response = invoke(event)

    assert response["statusCode"] == 413
    assert body(response)["error"] == "payload_too_large"


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/v1/nothing-here", 404), ("DELETE", "/v1/classify", 405)]
)
def test_unknown_routes_and_methods(invoke: Invoke, method: str, path: str, status: int) -> None:
    event = load_event("health")
    event.update(httpMethod=method, path=path)

    response = invoke(event)

    assert response["statusCode"] == status
    assert set(body(response)) == {"error", "message", "request_id"}


def test_json_body_with_bad_base64_or_shape_is_400(invoke: Invoke) -> None:
    event = load_event("classify_json")
    for payload, fragment in [
        ('{"image": "***"}', "base64"),
        ('{"picture": "x"}', '"image": "<base64>"'),
        ("[1, 2", "JSON"),
    ]:
        event["body"] = payload
        response = invoke(event)
        assert response["statusCode"] == 400
        assert body(response)["error"] == "invalid_request"
        assert fragment in body(response)["message"]


STEPS = ("## preprocess", "## inference")


class RecordingSubsegment:
    def __init__(self, name: str | None) -> None:
        self.name = name
        self.metadata: dict[str, Any] = {}
        self.annotations: dict[str, Any] = {}

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        self.metadata[key] = value

    def put_annotation(self, key: str, value: Any) -> None:
        self.annotations[key] = value


class RecordingXRay:
    """Stands in for the X-Ray recorder (off outside Lambda) to see what the handler's trace would carry."""

    def __init__(self) -> None:
        self.subsegments: list[RecordingSubsegment] = []

    @contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Iterator[RecordingSubsegment]:
        self.subsegments.append(RecordingSubsegment(name))
        yield self.subsegments[-1]


def test_traces_never_carry_response_bodies(handler_module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN X-Ray recording what the handler's subsegment is given
    xray = RecordingXRay()
    monkeypatch.setattr(handler_module.tracer, "provider", xray)
    event = load_event("classify_png")
    event.update(
        path="/v1/explain",
        pathParameters={"proxy": "v1/explain"},
        queryStringParameters=None,
        multiValueQueryStringParameters=None,
    )

    # WHEN an explanation answers with a heatmap of the user's image, and an event Mangum could not read arrives
    response = handler_module.handler(event, LambdaContext())
    refused = handler_module.handler({"body": "user-bytes"}, LambdaContext())

    # THEN the unreadable event is a 400, and the trace holds neither response, nor the event
    assert response["statusCode"] == 200 and "heatmap_png" in response["body"]
    assert refused["statusCode"] == 400 and "user-bytes" not in refused["body"]
    answered, unreadable = [s for s in xray.subsegments if s.name not in STEPS]
    assert answered.metadata == {} and unreadable.metadata == {}


def test_traces_show_where_a_classification_spends_its_time_by_model_version(
    handler_module: Any, artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    xray = RecordingXRay()
    monkeypatch.setattr(handler_module.tracer, "provider", xray)

    response = handler_module.handler(load_event("classify_png"), LambdaContext())

    assert response["statusCode"] == 200
    handler, *steps = xray.subsegments
    assert handler.name not in STEPS and [s.name for s in steps] == list(STEPS)
    assert all(s.annotations == {"model_version": read_manifest(artifact).version} for s in steps)
    assert all(s.metadata == {} for s in steps), "no pixels, tensors or logits in traces"


def test_logs_carry_api_gateways_request_id_next_to_the_clients(
    invoke: Invoke, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()

    invoke(load_event("classify_json"))

    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    (access,) = [line for line in lines if line.get("message") == "request"]
    assert access["request_id"] == "client-chosen-id-42"
    assert access["apigw_request_id"] == REQUEST_ID


def test_an_unexpected_failure_is_a_generic_500_with_the_request_id(
    invoke: Invoke, handler_module: Any, artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a failure no error class covers, with internals in its message
    def explode(batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("onnxruntime exploded in /opt/model/model.onnx")

    monkeypatch.setattr(handler_module.app.state.model, "predict", explode)
    manifest = read_manifest(artifact)
    infer = load_event("classify_json")
    infer.update(
        path=f"/v2/models/{manifest.name}/infer",
        pathParameters=None,
        queryStringParameters=None,
        multiValueQueryStringParameters=None,
    )
    spec, shape = manifest.input, [1, *manifest.input.shape[1:]]
    tensor = {
        "name": spec.name,
        "datatype": NUMPY_DATATYPES[spec.dtype],
        "shape": shape,
        "data": [0] * math.prod(shape),
    }
    infer["body"] = json.dumps({"inputs": [tensor]})

    # WHEN /v1 and /v2 requests hit it
    classify = invoke(load_event("classify_png"))
    protocol = invoke(infer)

    # THEN clients get a generic JSON 500 in each API's error shape, with the request id and nothing else
    assert classify["statusCode"] == protocol["statusCode"] == 500
    assert body(classify) == {"error": "internal_error", "message": "internal error", "request_id": REQUEST_ID}
    assert classify["headers"]["x-request-id"] == REQUEST_ID
    assert body(protocol) == {"error": "internal error"}
    assert protocol["headers"]["x-request-id"] == "client-chosen-id-42"
    for response in (classify, protocol):
        assert not re.search(r"Traceback|onnxruntime|RuntimeError|/opt", response["body"])
