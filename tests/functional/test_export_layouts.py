"""ONNX models that do not take float NCHW: made with torch here (one trained network, wrapped to take NHWC floats,
uint8 NHWC pixels, or uint8 NCHW pixels in BGR order) and taken by `amaas export --from-onnx` through every stage
that feeds the model: evaluation, INT8 calibration, stage timing, golden samples, then serving (/v1 images, /v2
metadata and /v2 tensors) through the real app."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from mangum import Mangum
from PIL import Image
from torch import nn

from amaas.api.app import create_app
from amaas.artifact.golden import read_golden
from amaas.artifact.manifest import Preprocessing
from amaas.settings import Settings
from amaas_export import data
from amaas_export.models import build_model
from amaas_export.train import predict, train
from tests.functional.conftest import Export
from tests.gateway import api_gateway
from tests.helpers import encode_image

DATA = "synthetic:600"
SERVED_IMAGES = 32


@dataclass(frozen=True)
class Trained:
    model: nn.Module
    prep: Preprocessing
    labels_file: Path
    test_pixels: np.ndarray
    torch_top1: np.ndarray  # torch's answer per held-out image


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    torch.manual_seed(0)
    dataset = data.load(DATA, Preprocessing(32, 32, (0, 0, 0), (1, 1, 1)), seed=0)
    prep = Preprocessing(32, 32, *data.mean_std(dataset.train))
    model = build_model("cifar-cnn", len(dataset.labels))
    train(model, dataset.train, dataset.test, prep, epochs=2, batch_size=64, learning_rate=0.005, seed=0, report=print)
    labels = tmp_path_factory.mktemp("labels") / "labels.txt"
    labels.write_text("\n".join(dataset.labels) + "\n")
    answers = predict(model, dataset.test, prep).argmax(1)
    return Trained(model.eval(), prep, labels, dataset.test.pixels, answers)


class ChannelsLast(nn.Module):
    """Takes normalised float NHWC, as TensorFlow models do."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.permute(0, 3, 1, 2))


class Pixels(nn.Module):
    """Takes uint8 pixels 0..255 and does its own scaling and normalisation (NHWC or NCHW, RGB or BGR)."""

    def __init__(self, inner: nn.Module, prep: Preprocessing, layout: str, bgr: bool) -> None:
        super().__init__()
        self.inner, self.layout, self.bgr = inner, layout, bgr
        self.register_buffer("mean", torch.tensor(prep.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(prep.std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0
        if self.layout == "NHWC":
            x = x.permute(0, 3, 1, 2)
        if self.bgr:
            x = x.flip(1)
        return self.inner((x - self.mean) / self.std)


VARIANTS = {
    # name: (input dtype, layout, channel order)
    "float-nhwc": ("float32", "NHWC", "RGB"),
    "uint8-nhwc": ("uint8", "NHWC", "RGB"),
    "uint8-nchw-bgr": ("uint8", "NCHW", "BGR"),
}


def onnx_file(trained: Trained, variant: str, folder: Path) -> Path:
    dtype, layout, order = VARIANTS[variant]
    if dtype == "float32":
        wrapped: nn.Module = ChannelsLast(trained.model)
        example = torch.zeros(1, 32, 32, 3)
    else:
        wrapped = Pixels(trained.model, trained.prep, layout, bgr=order == "BGR")
        example = torch.zeros((1, 32, 32, 3) if layout == "NHWC" else (1, 3, 32, 32), dtype=torch.uint8)
    path = folder / f"{variant}.onnx"
    torch.onnx.export(wrapped.eval(), (example,), str(path), input_names=["pixels"], dynamo=True, external_data=False)
    return path


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_an_onnx_model_of_any_input_layout_goes_through_every_stage(
    export: Export, trained: Trained, variant: str, tmp_path: Path
) -> None:
    dtype, layout, order = VARIANTS[variant]
    path = onnx_file(trained, variant, tmp_path)
    normalisation = ["--mean", *map(str, trained.prep.mean), "--std", *map(str, trained.prep.std)]

    # WHEN it is exported with INT8 quantization, its preprocessing declared where it lives outside the graph
    run = export(
        "--from-onnx", str(path), "--labels", str(trained.labels_file), "--data", DATA, "--channel-order", order,
        *(normalisation if dtype == "float32" else []),
    )  # fmt: skip

    # THEN the layout was read from the input's shape, and said
    assert run.code == 0, run.stderr
    assert f"input pixels {dtype} {layout}" in run.stdout
    manifest = run.manifest
    assert (manifest.input.dtype, manifest.input.layout) == (dtype, layout)
    # AND evaluation fed it what it takes: the same held-out accuracy torch has
    torch_top1 = float((trained.torch_top1 == data.load(DATA, trained.prep, seed=0).test.labels).mean())
    assert manifest.metrics["fp32"]["top1"] == pytest.approx(torch_top1, abs=1e-9)
    # AND calibration did: INT8 passed its gate; and stage timing did
    assert [s["name"] for s in manifest.details["stages"]] == ["fp32", "int8"]
    assert all(s["latency_ms"] > 0 for s in manifest.details["stages"])
    # AND the golden samples were answered correctly through the served file
    assert len(read_golden(run.out)) >= 5

    # AND served through the real app (behind API Gateway, on Lambda's path), images get torch's answers
    app = Mangum(create_app(Settings(model_dir=run.out)), lifespan="off")
    with api_gateway(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        served = []
        for start in range(0, SERVED_IMAGES, 16):
            images = [_b64(encode_image(Image.fromarray(p))) for p in trained.test_pixels[start : start + 16]]
            response = client.post("/v1/classify", json={"images": images}, params={"top_k": 1})
            assert response.status_code == 200, response.text
            served += [manifest.labels.index(r["predictions"][0]["label"]) for r in response.json()["results"]]
        assert np.mean(np.array(served) == trained.torch_top1[:SERVED_IMAGES]) >= 0.95
        # AND /v2 describes the model's own input, and takes it
        metadata = client.get(f"/v2/models/{manifest.name}").json()
        side = [32, 32, 3] if layout == "NHWC" else [3, 32, 32]
        datatype = "UINT8" if dtype == "uint8" else "FP32"
        assert metadata["inputs"][0] == {"name": "pixels", "datatype": datatype, "shape": [-1, *side]}


def _b64(image: bytes) -> str:
    return base64.b64encode(image).decode()
