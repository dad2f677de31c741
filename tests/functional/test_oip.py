"""The Open Inference Protocol with the real tritonclient[http], against `amaas serve` and against the Lambda
handler behind an emulated API Gateway (binary tensor data by default, and JSON mode)."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from amaas.manifest import read_manifest
from amaas.model import ImageClassifier
from amaas_export.data import synthetic
from tests.helpers import encode_image

LABELS = ("star", "ring", "heart")


def client(base_url: str) -> triton.InferenceServerClient:
    parts = urlsplit(base_url)
    # tritonclient takes host:port and a path prefix separately; behind API Gateway the prefix is the stage
    return triton.InferenceServerClient(url=f"{parts.netloc}{parts.path}", connection_timeout=30, network_timeout=30)


def images() -> list[bytes]:
    return [encode_image(synthetic.sample(label, variant=1)) for label in LABELS]


def test_health_and_metadata(base_url: str, artifact: Path) -> None:
    manifest = read_manifest(artifact)
    tc = client(base_url)

    assert tc.is_server_live() and tc.is_server_ready()
    assert tc.is_model_ready(manifest.name)
    server = tc.get_server_metadata()
    assert server["name"] == "amaas" and "binary_tensor_data" in server["extensions"]
    metadata = tc.get_model_metadata(manifest.name)
    assert metadata["platform"] == "onnx_onnxv1"
    assert metadata["versions"] == [manifest.version]
    assert {"name": "input", "datatype": "FP32", "shape": [-1, 3, 32, 32]} in metadata["inputs"]
    assert {"name": "image", "datatype": "BYTES", "shape": [-1]} in metadata["inputs"]
    assert metadata["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_encoded_images_as_bytes(base_url: str, artifact: Path, binary: bool) -> None:
    manifest = read_manifest(artifact)
    data = images()
    image = triton.InferInput("image", [len(data)], "BYTES")
    parameters = None
    if binary:
        image.set_data_from_numpy(np.array(data, dtype=np.object_))
    else:
        # JSON mode: raw image bytes cannot be JSON strings, so they go base64, said by a request parameter
        image.set_data_from_numpy(np.array([base64.b64encode(d) for d in data], dtype=np.object_), binary_data=False)
        parameters = {"content_type": "base64"}
    output = triton.InferRequestedOutput("logits", binary_data=binary)

    result = client(base_url).infer(
        manifest.name, [image], outputs=[output], request_id="req-77", parameters=parameters
    )

    logits = result.as_numpy("logits")
    expected = ImageClassifier(artifact).predict(ImageClassifier(artifact).preprocess(data))
    assert logits.shape == (3, 10)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    assert [manifest.labels[i] for i in logits.argmax(axis=1)] == list(LABELS)
    assert result.get_response()["id"] == "req-77"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_preprocessed_tensors(base_url: str, artifact: Path, binary: bool) -> None:
    classifier = ImageClassifier(artifact)
    tensor = classifier.preprocess(images())
    model_input = triton.InferInput("input", list(tensor.shape), "FP32")
    model_input.set_data_from_numpy(tensor, binary_data=binary)

    result = client(base_url).infer(
        classifier.manifest.name, [model_input], model_version=classifier.manifest.version,
        outputs=[triton.InferRequestedOutput("logits", binary_data=binary)],
    )  # fmt: skip

    np.testing.assert_allclose(result.as_numpy("logits"), classifier.predict(tensor), rtol=1e-5, atol=1e-5)


def test_classification_extension(base_url: str, artifact: Path) -> None:
    manifest = read_manifest(artifact)
    image = triton.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array(images()[:1], dtype=np.object_))

    result = client(base_url).infer(
        manifest.name, [image], outputs=[triton.InferRequestedOutput("logits", class_count=3)]
    )

    top = result.as_numpy("logits")
    assert top.shape == (1, 3)
    value, index, label = top[0][0].decode().split(":")
    assert label == "star" and manifest.labels[int(index)] == "star"
    assert float(value) > float(top[0][1].decode().split(":")[0])


def test_errors_reach_tritonclient_as_messages(base_url: str, artifact: Path) -> None:
    tc = client(base_url)
    image = triton.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
    wrong = triton.InferInput("pixels", [1], "FP32")
    wrong.set_data_from_numpy(np.zeros(1, dtype=np.float32))
    manifest = read_manifest(artifact)

    with pytest.raises(InferenceServerException) as unknown_model:
        tc.infer("no-such-model", [image])
    with pytest.raises(InferenceServerException) as bad_image:
        tc.infer(manifest.name, [image])
    with pytest.raises(InferenceServerException) as bad_input:
        tc.infer(manifest.name, [wrong])

    assert unknown_model.value.status() == "404" and "no model no-such-model" in unknown_model.value.message()
    assert bad_image.value.status() == "400" and "not a decodable image" in bad_image.value.message()
    assert bad_input.value.status() == "400" and "unknown input pixels" in bad_input.value.message()


def test_plain_json_requests_without_a_client_library(base_url: str, artifact: Path) -> None:
    manifest = read_manifest(artifact)
    body = {
        "id": "plain-1",
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"content_type": "base64"},
             "data": [base64.b64encode(images()[0]).decode()]}
        ],
        "something_new": {"ignored": True},
    }  # fmt: skip

    response = httpx.post(f"{base_url}/v2/models/{manifest.name}/versions/{manifest.version}/infer", json=body)

    assert response.status_code == 200, response.text
    result = response.json()
    assert result["id"] == "plain-1" and result["model_version"] == manifest.version
    (logits,) = result["outputs"]
    assert logits["shape"] == [1, 10] and len(logits["data"]) == 10


def test_protocol_errors_are_json_objects_with_an_error_field(base_url: str, artifact: Path) -> None:
    manifest = read_manifest(artifact)

    malformed = httpx.post(
        f"{base_url}/v2/models/{manifest.name}/infer", content=b"{oops", headers={"content-type": "application/json"}
    )
    wrong_version = httpx.get(f"{base_url}/v2/models/{manifest.name}/versions/nope")

    assert malformed.status_code == 400 and malformed.json() == {
        "error": "the inference request header is not valid JSON"
    }
    assert wrong_version.status_code == 404 and "version nope" in wrong_version.json()["error"]
