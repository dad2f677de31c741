"""`amaas export` end to end: the artifact it writes, its gates both ways, and loading user weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from amaas.cli import main
from amaas.manifest import CARD_FILE, MANIFEST_FILE, MODEL_FILE, read_manifest, sha256_file, verify_files
from amaas.model import ImageClassifier
from amaas_export import pipeline
from amaas_export.data import ImageSet
from amaas_export.data import synthetic as synthetic_data
from amaas_export.models import build_model
from tests.helpers import REPO, encode_image

TINY = ["--data", "synthetic:1000", "--epochs", "2"]


def test_artifact_holds_exactly_the_model_manifest_and_card(artifact: Path) -> None:
    assert sorted(p.name for p in artifact.iterdir()) == sorted([MODEL_FILE, MANIFEST_FILE, CARD_FILE])
    manifest = read_manifest(artifact)
    verify_files(artifact, manifest)
    assert set(manifest.files) == {MODEL_FILE, CARD_FILE}
    assert manifest.model_sha256 == sha256_file(artifact / MODEL_FILE)
    assert manifest.version == manifest.model_sha256[:12]


def test_manifest_records_fp32_and_int8_metrics_as_fractions(artifact: Path) -> None:
    metrics = read_manifest(artifact).metrics

    fp32, int8 = metrics["fp32"], metrics["int8"]
    assert 0.7 < fp32["top1"] <= 1 and 0.7 < int8["top1"] <= 1
    assert (fp32["top1"] - int8["top1"]) * 100 <= 1.0
    assert int8["bytes"] == (artifact / MODEL_FILE).stat().st_size
    assert int8["bytes"] < 0.4 * fp32["bytes"], "INT8 weights take a quarter of FP32's bytes"
    assert metrics["parity_max_abs_diff"] <= 1e-4


def test_manifest_is_self_describing(artifact: Path) -> None:
    data: dict[str, Any] = json.loads((artifact / MANIFEST_FILE).read_text())

    assert data["input"] == {"name": "input", "shape": [-1, 3, 32, 32], "dtype": "float32", "layout": "NCHW"}
    assert data["labels"] == list(synthetic_data.LABELS)
    assert set(data["preprocessing"]) >= {"resize", "crop", "mean", "std", "channel_order", "interpolation"}
    assert data["libraries"]["torch"] == "2.14.1"
    assert data["quantization"]["format"] == "QDQ"
    assert data["provenance"]["export"]["data"] == "synthetic:12000"


def test_model_card_shows_fp32_vs_int8_accuracy_and_size(artifact: Path) -> None:
    card = (artifact / CARD_FILE).read_text()
    metrics = read_manifest(artifact).metrics

    assert f"| FP32 ONNX | {metrics['fp32']['top1']:.2%} |" in card
    assert f"| INT8 ONNX (served) | {metrics['int8']['top1']:.2%} |" in card
    assert "amaas export --arch cifar-cnn --data synthetic:12000 --epochs 12" in card


def test_exported_model_has_a_dynamic_batch_axis(artifact: Path) -> None:
    classifier = ImageClassifier(artifact)
    images = [encode_image(synthetic_data.sample(label)) for label in synthetic_data.LABELS[:7]]

    result = classifier.classify(images, 1)

    assert len(result.predictions) == 7


def test_cli_export_reports_progress_and_writes_the_artifact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model"

    code = main(["export", *TINY, "--out", str(out), "--name", "tiny", "--model-version", "2026.1"])

    output = capsys.readouterr().out
    assert code == 0
    assert "epoch   2/2  loss" in output and "held-out top-1" in output
    assert "gate: INT8 top-1 drop" in output
    manifest = read_manifest(out)
    assert (manifest.name, manifest.version) == ("tiny", "2026.1")


def _broken_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calibrates INT8 ranges on black images, a real and classic way to ruin a quantized model."""
    real = pipeline.quantize_int8

    def quantize(fp32: Path, int8: Path, calibration: ImageSet, *args: Any) -> Any:
        black = ImageSet(np.zeros_like(calibration.pixels), calibration.labels)
        return real(fp32, int8, black, *args)

    monkeypatch.setattr(pipeline, "quantize_int8", quantize)


def test_gate_failure_exits_non_zero_and_writes_no_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a quantization that destroys accuracy
    _broken_calibration(monkeypatch)
    out = tmp_path / "model"

    # WHEN the export runs
    code = main(["export", "--data", "synthetic:4000", "--epochs", "8", "--out", str(out)])

    # THEN it fails with the measured figures, and nothing that looks deployable exists
    assert code == 1
    error = capsys.readouterr().err
    assert "INT8 accuracy gate failed" in error and "No artifact was written" in error
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == [], "no staging directory is left behind"


def test_gate_failure_keeps_the_previous_good_artifact(
    tmp_path: Path, artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "model"
    out.mkdir()
    for name in (MODEL_FILE, MANIFEST_FILE, CARD_FILE):
        (out / name).write_bytes((artifact / name).read_bytes())
    _broken_calibration(monkeypatch)

    assert main(["export", "--data", "synthetic:4000", "--epochs", "8", "--out", str(out)]) == 1

    verify_files(out, read_manifest(out))
    assert read_manifest(out) == read_manifest(artifact)


def test_the_gate_can_be_widened_by_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _broken_calibration(monkeypatch)

    code = main(
        [
            "export",
            "--data",
            "synthetic:4000",
            "--epochs",
            "8",
            "--max-accuracy-drop",
            "100",
            "--out",
            str(tmp_path / "m"),
        ]
    )

    assert code == 0
    assert read_manifest(tmp_path / "m").metrics["top1_drop_points"] > 1.0


def test_export_from_user_weights_without_training(tmp_path: Path) -> None:
    # GIVEN weights a user trained elsewhere, saved as a state dict
    from amaas.manifest import Preprocessing
    from amaas_export import data
    from amaas_export.train import predict, top1, train

    torch.manual_seed(1)
    dataset = data.load("synthetic:1000", Preprocessing(32, 32, (0, 0, 0), (1, 1, 1)), seed=0)
    prep = Preprocessing(32, 32, *data.mean_std(dataset.train))
    model = build_model("cifar-cnn", 10)
    train(
        model,
        dataset.train,
        dataset.test,
        prep,
        epochs=3,
        batch_size=64,
        learning_rate=0.005,
        seed=1,
        report=lambda e: None,
    )
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    expected = top1(predict(model, dataset.test, prep), dataset.test.labels)

    # WHEN they are exported with no further training
    code = main(
        ["export", "--data", "synthetic:1000", "--weights", str(tmp_path / "weights.pt"), "--out", str(tmp_path / "m")]
    )

    # THEN the artifact scores what those weights score
    assert code == 0
    manifest = read_manifest(tmp_path / "m")
    assert manifest.metrics["fp32"]["top1"] == pytest.approx(expected, abs=1e-9)
    assert manifest.details["training"] == {**manifest.details["training"], "epochs": 0, "from_weights": True}
    assert manifest.details["provenance"]["weights"]["sha256"] == sha256_file(tmp_path / "weights.pt")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arch", "resnet9000"], "unknown architecture"),
        (["--data", "imagefolder:/nonexistent/photos"], "is not a directory"),
        (["--weights", "/nonexistent/w.pt", "--epochs", "0"], "does not exist"),
    ],
)
def test_bad_options_fail_with_a_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code = main(["export", *TINY, "--out", str(tmp_path / "m"), *args])

    error = capsys.readouterr().err
    assert code == 1
    assert message in error and "Traceback" not in error


def test_out_that_is_not_an_artifact_is_never_replaced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("precious")

    code = main(["export", *TINY, "--out", str(tmp_path)])

    assert code == 1
    assert "refusing to replace" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "precious"


def test_model_file_carries_no_local_paths(artifact: Path) -> None:
    blob = (artifact / MODEL_FILE).read_bytes()

    assert str(REPO).encode() not in blob
    assert b'File "' not in blob and b"site-packages" not in blob and b"models.py" not in blob


def test_same_settings_give_the_same_model_bytes(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert main(["export", *TINY, "--out", str(tmp_path / name)]) == 0

    assert sha256_file(tmp_path / "a" / MODEL_FILE) == sha256_file(tmp_path / "b" / MODEL_FILE)
    assert read_manifest(tmp_path / "a").version == read_manifest(tmp_path / "b").version
