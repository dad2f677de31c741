"""The model is loaded once per container, and a missing model is a clear 503, not a crash."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from mangum import Mangum

from amaas.api.app import create_app
from amaas.artifact import model as model_module
from amaas.settings import Settings
from tests.helpers import LambdaContext, load_event


def test_one_onnx_session_serves_every_request(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[Path] = []
    real = model_module.create_session

    def counting(path: Path, *, threads: int) -> Any:
        created.append(path)
        return real(path, threads=threads)

    monkeypatch.setattr(model_module, "create_session", counting)
    handler = Mangum(create_app(Settings(model_dir=artifact)), lifespan="off")

    statuses = [
        handler(load_event(name), LambdaContext())["statusCode"]
        for name in ("classify_png", "classify_jpeg", "health", "classify_json")
    ]

    assert statuses == [200, 200, 200, 200]
    assert len(created) == 1


def test_missing_model_answers_503_with_the_reason(tmp_path: Path) -> None:
    handler = Mangum(create_app(Settings(model_dir=tmp_path / "nothing")), lifespan="off")

    for name in ("health", "classify_png"):
        response = handler(load_event(name), LambdaContext())
        body = json.loads(response["body"])
        assert response["statusCode"] == 503
        assert body["error"] == "model_unavailable"
        assert "export a model first" in body["message"]
        assert str(tmp_path) not in body["message"]


def test_a_corrupted_model_file_is_refused_at_load(artifact: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model"
    shutil.copytree(artifact, broken)
    with (broken / "model.onnx").open("r+b") as f:
        f.seek(100)
        f.write(b"\x00\x00\x00\x00")
    handler = Mangum(create_app(Settings(model_dir=broken)), lifespan="off")

    response = handler(load_event("health"), LambdaContext())

    assert response["statusCode"] == 503
    assert "does not match its sha256" in json.loads(response["body"])["message"]


# A dtype no image input can have is refused by the manifest itself; a shape only the model file can contradict.
REFUSED_DTYPE = "amaas feeds images as one of ('float32', 'uint8')"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"dtype": "float64"}, REFUSED_DTYPE),
        ({"shape": [-1, 3, 16, 16]}, "manifest.json and model.onnx disagree"),
        ({"dtype": "float99"}, REFUSED_DTYPE),
    ],
    ids=["dtype", "shape", "unknown-dtype"],
)
def test_a_manifest_that_disagrees_with_the_model_is_a_503_not_a_crashed_init(
    artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict[str, Any], reason: str
) -> None:
    # GIVEN an artifact whose manifest declares an input the model does not take (its files still hash right)
    broken = tmp_path / "model"
    shutil.copytree(artifact, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["input"].update(change)
    (broken / "manifest.json").write_text(json.dumps(manifest))

    # WHEN Lambda initialises the handler module with it (the warm-up run used to raise ORT's own error here)
    monkeypatch.setenv("AMAAS_MODEL_DIR", str(broken))
    monkeypatch.delitem(sys.modules, "amaas.handlers.api", raising=False)
    handler = importlib.import_module("amaas.handlers.api").handler

    # THEN the container keeps answering, 503 with a reason a person can act on and no ORT internals
    for _ in range(2):
        response = handler(load_event("health"), LambdaContext())
        body = json.loads(response["body"])
        assert response["statusCode"] == 503
        assert body["error"] == "model_unavailable"
        assert body["message"].endswith(reason)
        assert not re.search(r"onnxruntime|\[ONNXRuntimeError\]|INVALID_ARGUMENT|Error\b|/", body["message"])
    ready = handler({**load_event("health"), "path": "/v2/health/ready"}, LambdaContext())
    assert ready["statusCode"] == 503 and json.loads(ready["body"]) == {"ready": False}
