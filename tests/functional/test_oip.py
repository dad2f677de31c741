"""The Open Inference Protocol with the real tritonclient[http], against `amaas serve` and against the Lambda
handler behind an emulated API Gateway (binary tensor data by default, and JSON mode)."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import onnx
import pytest
import tritonclient.http as triton
from mangum import Mangum
from onnx import TensorProto, helper
from tritonclient.utils import InferenceServerException

from amaas.api.app import create_app
from amaas.api.oip import NUMPY_DATATYPES
from amaas.artifact.manifest import (
    MODEL_FILE,
    Manifest,
    Preprocessing,
    TensorSpec,
    file_entry,
    read_manifest,
    write_manifest,
)
from amaas.artifact.model import Model
from amaas.settings import Settings
from amaas_export.data import synthetic
from tests.gateway import api_gateway
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
    # the model's own input: FP32 NCHW, or UINT8 NHWC when the export folded normalisation into the graph
    own = {"name": "input", "datatype": NUMPY_DATATYPES[manifest.input.dtype], "shape": list(manifest.input.shape)}
    assert own["shape"] in ([-1, 3, 32, 32], [-1, 32, 32, 3])
    assert own in metadata["inputs"]
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
    (expected,) = Model(artifact).predict(Model(artifact).preprocess(data))
    assert logits.shape == (3, 10)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    assert [manifest.labels[i] for i in logits.argmax(axis=1)] == list(LABELS)
    assert result.get_response()["id"] == "req-77"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_preprocessed_tensors(base_url: str, artifact: Path, binary: bool) -> None:
    classifier = Model(artifact)
    tensor = classifier.preprocess(images())
    model_input = triton.InferInput("input", list(tensor.shape), NUMPY_DATATYPES[classifier.manifest.input.dtype])
    model_input.set_data_from_numpy(tensor, binary_data=binary)

    result = client(base_url).infer(
        classifier.manifest.name, [model_input], model_version=classifier.manifest.version,
        outputs=[triton.InferRequestedOutput("logits", binary_data=binary)],
    )  # fmt: skip

    np.testing.assert_allclose(result.as_numpy("logits"), classifier.predict(tensor)[0], rtol=1e-5, atol=1e-5)


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


def test_health_bodies_are_what_kserve_and_triton_clients_read(base_url: str, artifact: Path) -> None:
    manifest = read_manifest(artifact)
    versioned = f"{base_url}/v2/models/{manifest.name}/versions/{manifest.version}/ready"

    assert httpx.get(f"{base_url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{base_url}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(versioned).json() == {"name": manifest.name, "ready": True}
    assert httpx.get(f"{base_url}/v2/models/{manifest.name}/versions/nope/ready").status_code == 404


def infer_url(base_url: str, artifact: Path) -> str:
    return f"{base_url}/v2/models/{read_manifest(artifact).name}/infer"


def own_input(artifact: Path, batch: int) -> dict[str, object]:
    """A zero tensor for the model's own input, whatever its type (the export may fold normalisation in)."""
    spec = read_manifest(artifact).input
    shape = [batch, *spec.shape[1:]]
    return {"name": spec.name, "datatype": NUMPY_DATATYPES[spec.dtype], "shape": shape, "data": [0] * math.prod(shape)}


@pytest.mark.parametrize("kind", ["bytes", "tensor"])
def test_an_empty_batch_is_a_clear_400(base_url: str, artifact: Path, kind: str) -> None:
    empty_images = {
        "name": "image",
        "datatype": "BYTES",
        "shape": [0],
        "data": [],
        "parameters": {"content_type": "base64"},
    }
    tensor = empty_images if kind == "bytes" else own_input(artifact, 0)

    response = httpx.post(infer_url(base_url, artifact), json={"inputs": [tensor]})

    assert response.status_code == 400
    assert response.json() == {"error": "the batch is empty; send at least one input"}


def test_an_empty_batch_in_binary_mode_is_a_clear_400(base_url: str, artifact: Path) -> None:
    image = triton.InferInput("image", [0], "BYTES")
    image.set_data_from_numpy(np.array([], dtype=np.object_))

    with pytest.raises(InferenceServerException) as caught:
        client(base_url).infer(read_manifest(artifact).name, [image])

    assert caught.value.status() == "400" and "the batch is empty" in caught.value.message()


def test_deeply_nested_json_is_a_400_not_a_500(base_url: str, artifact: Path) -> None:
    deep_data = '{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1], "data": DATA}]}'
    for body in ("[" * 100_000, deep_data.replace("DATA", "[" * 900 + "1" + "]" * 900)):
        response = httpx.post(
            infer_url(base_url, artifact), content=body.encode(), headers={"content-type": "application/json"}
        )

        assert response.status_code == 400, response.text
        assert "nested" in response.json()["error"]


@pytest.fixture(scope="module")
def float_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A deterministic float-input model behind the Lambda path: ``logits = log(mean over H, W of input)``,
    finite for positive inputs and -inf for zeros (the fixture model's input type depends on the export)."""
    model_dir = tmp_path_factory.mktemp("float-model")
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["mean"], axes=[2, 3], keepdims=0),
            helper.make_node("Log", ["mean"], ["logits"]),
        ],
        "log-mean",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model_dir / MODEL_FILE))
    manifest = Manifest(
        name="log-mean", version="1", architecture="test", labels=("red", "green", "blue"),
        input=TensorSpec("input", (-1, 3, 4, 4), "float32", "NCHW"), output=TensorSpec("logits", (-1, 3), "float32"),
        preprocessing=Preprocessing(resize=4, crop=4, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
        files={MODEL_FILE: file_entry(model_dir / MODEL_FILE)},
    )  # fmt: skip
    write_manifest(model_dir, manifest)
    with api_gateway(Mangum(create_app(Settings(model_dir=model_dir)), lifespan="off")) as url:
        yield url


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_non_finite_tensors_are_refused_before_inference(float_model: str, value: float, binary: bool) -> None:
    tensor = np.ones((1, 3, 4, 4), dtype=np.float32)
    tensor[0, 1, 2, 2] = value
    model_input = triton.InferInput("input", list(tensor.shape), "FP32")
    # tritonclient writes NaN and Infinity into its JSON, as Python's json module does
    model_input.set_data_from_numpy(tensor, binary_data=binary)

    with pytest.raises(InferenceServerException) as caught:
        client(float_model).infer("log-mean", [model_input])

    assert caught.value.status() == "400"
    assert caught.value.message() == "input input holds NaN or infinite values"


def test_non_finite_outputs_come_back_in_binary_and_never_as_invalid_json(float_model: str) -> None:
    # GIVEN an input the model answers with -inf (log 0)
    tensor = np.zeros((1, 3, 4, 4), dtype=np.float32)
    model_input = triton.InferInput("input", list(tensor.shape), "FP32")
    model_input.set_data_from_numpy(tensor, binary_data=False)
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 4, 4], "data": [0.0] * 48}]}

    # WHEN the outputs are asked for as JSON, and in binary
    as_json = httpx.post(f"{float_model}/v2/models/log-mean/infer", json=body)
    as_binary = client(float_model).infer(
        "log-mean", [model_input], outputs=[triton.InferRequestedOutput("logits", binary_data=True)]
    )

    # THEN JSON gets a clear error, not a body with -Infinity that strict parsers reject; binary carries them
    assert as_json.status_code == 500
    assert as_json.json() == {
        "error": "the model produced NaN or infinite outputs, which JSON cannot carry; ask for binary outputs"
    }
    np.testing.assert_array_equal(as_binary.as_numpy("logits"), np.full((1, 3), -np.inf, dtype=np.float32))


def test_bytes_images_have_the_same_size_limit_as_v1(artifact: Path) -> None:
    # GIVEN a deployment that takes images of at most 500 bytes
    app = Mangum(create_app(Settings(model_dir=artifact, max_image_bytes=500)), lifespan="off")
    small, large = b"\x89PNG tiny", images()[0]
    assert len(large) > 500
    image = triton.InferInput("image", [2], "BYTES")
    image.set_data_from_numpy(np.array([small, large], dtype=np.object_))

    # WHEN a BYTES tensor carries a larger one
    with api_gateway(app) as url, pytest.raises(InferenceServerException) as caught:
        client(url).infer(read_manifest(artifact).name, [image])

    # THEN it is refused as /v1 refuses it, naming the image
    assert caught.value.status() == "413"
    assert caught.value.message() == f"image 1 is {len(large)} bytes; the limit is 500"
