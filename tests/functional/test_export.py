"""`amaas export` end to end: the artifact it writes, its gates both ways, config files and reproducibility."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from amaas.artifact.manifest import CARD_FILE, MANIFEST_FILE, MODEL_FILE, read_manifest, sha256_file, verify_files
from amaas.artifact.model import Model
from amaas_export.data import ImageSet
from amaas_export.data import synthetic as synthetic_data
from amaas_export.models import build_model
from amaas_export.stages import quantize as quantize_stage
from tests.functional.conftest import Export
from tests.helpers import REPO, encode_image

TINY = ("--data", "synthetic:1000", "--epochs", "2")
SMALL = ("--data", "synthetic:4000", "--epochs", "8")
ARTIFACT_FILES = [CARD_FILE, "export.toml", "golden", MANIFEST_FILE, MODEL_FILE, "stages.png"]


def test_artifact_holds_model_manifest_card_chart_and_recipe(artifact: Path) -> None:
    assert sorted(p.name for p in artifact.iterdir()) == ARTIFACT_FILES
    manifest = read_manifest(artifact)
    verify_files(artifact, manifest)
    top_level = {name.split("/")[0] for name in manifest.files}
    assert top_level == set(ARTIFACT_FILES) - {MANIFEST_FILE}
    assert manifest.version == manifest.model_sha256[:12]
    with Image.open(artifact / "stages.png") as chart:
        assert chart.format == "PNG" and chart.width >= 600


def test_manifest_records_fp32_and_int8_metrics_as_fractions(artifact: Path) -> None:
    metrics = read_manifest(artifact).metrics

    fp32, int8, served = metrics["fp32"], metrics["int8"], metrics["served"]
    assert 0.7 < fp32["top1"] <= 1 and 0.7 < int8["top1"] <= 1
    assert (fp32["top1"] - int8["top1"]) * 100 <= 1.0
    assert served == {**served, "stage": "int8", "bytes": (artifact / MODEL_FILE).stat().st_size}
    assert int8["bytes"] < 0.4 * fp32["bytes"], "INT8 weights take a quarter of FP32's bytes"
    assert metrics["parity_max_abs_diff"] <= 1e-4


def test_manifest_has_a_row_per_stage(artifact: Path) -> None:
    stages = read_manifest(artifact).details["stages"]

    assert [s["name"] for s in stages] == ["fp32", "int8"]
    fp32, int8 = stages
    assert set(fp32) == {"name", "top1", "bytes", "params", "macs", "latency_ms"}
    assert fp32["params"] == 62_006, "cifar-cnn: 6*3*25+6 + 16*6*25+16 + 400*120+120 + 120*84+84 + 84*10+10"
    assert fp32["macs"] == int8["macs"] > 600_000
    assert fp32["latency_ms"] > 0 and int8["latency_ms"] > 0


def test_manifest_is_self_describing(artifact: Path) -> None:
    data: dict[str, Any] = json.loads((artifact / MANIFEST_FILE).read_text())

    assert data["input"] == {"name": "input", "shape": [-1, 3, 32, 32], "dtype": "float32", "layout": "NCHW"}
    assert data["labels"] == list(synthetic_data.LABELS)
    assert set(data["preprocessing"]) >= {"resize", "crop", "mean", "std", "channel_order", "interpolation"}
    assert data["libraries"]["torch"] == "2.14.1"
    assert data["quantization"]["format"] == "QDQ"
    assert data["provenance"]["export"]["data"] == "synthetic:12000"


def test_model_card_shows_the_stage_table_and_chart(artifact: Path) -> None:
    card = (artifact / CARD_FILE).read_text()
    stages = read_manifest(artifact).details["stages"]

    for stage in stages:
        assert f"| {stage['name']} | {stage['top1']:.2%} |" in card
    assert "![accuracy against latency per stage](stages.png)" in card
    assert "amaas export --config export.toml" in card
    assert "amaas export --arch cifar-cnn --data synthetic:12000 --epochs 12" in card


def test_exported_model_has_a_dynamic_batch_axis(artifact: Path) -> None:
    classifier = Model(artifact)
    images = [encode_image(synthetic_data.sample(label)) for label in synthetic_data.LABELS[:7]]

    assert len(classifier.infer(images, k=1).results) == 7


def test_model_file_carries_no_local_paths(artifact: Path) -> None:
    blob = (artifact / MODEL_FILE).read_bytes()

    assert str(REPO).encode() not in blob
    assert b'File "' not in blob and b"site-packages" not in blob and b"models.py" not in blob


def test_cli_export_reports_progress(export: Export) -> None:
    run = export(*TINY, "--name", "tiny", "--model-version", "2026.1")

    assert run.code == 0
    assert "epoch   2/2  loss" in run.stdout and "held-out top-1" in run.stdout
    assert "gate: INT8 top-1 drop" in run.stdout and "stages:" in run.stdout
    assert (run.manifest.name, run.manifest.version) == ("tiny", "2026.1")


def _broken_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calibrates INT8 ranges on black images, a real and classic way to ruin a quantized model."""
    real = quantize_stage.quantize_int8

    def quantize(float_path: Path, int8_path: Path, calibration: ImageSet, *args: Any) -> Any:
        black = ImageSet(np.zeros_like(calibration.pixels), calibration.labels)
        return real(float_path, int8_path, black, *args)

    monkeypatch.setattr(quantize_stage, "quantize_int8", quantize)


def test_int8_gate_failure_exits_non_zero_and_writes_no_artifact(
    export: Export, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN a quantization that destroys accuracy
    _broken_calibration(monkeypatch)

    # WHEN the export runs
    run = export(*SMALL, out=tmp_path / "out" / "model")

    # THEN it fails with the measured figures, and nothing that looks deployable exists
    assert run.code == 1
    assert "INT8 accuracy gate failed" in run.stderr and "No artifact was written" in run.stderr
    assert list((tmp_path / "out").iterdir()) == [], "no artifact and no staging directory left behind"


def test_gate_failure_keeps_the_previous_good_artifact(
    export: Export, artifact: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    shutil.copytree(artifact, out)
    _broken_calibration(monkeypatch)

    assert export(*SMALL, out=out).code == 1

    verify_files(out, read_manifest(out))
    assert read_manifest(out) == read_manifest(artifact)


def test_the_int8_gate_can_be_widened_by_flag(export: Export, monkeypatch: pytest.MonkeyPatch) -> None:
    _broken_calibration(monkeypatch)

    run = export(*SMALL, "--max-accuracy-drop", "100")

    assert run.code == 0
    assert run.manifest.metrics["top1_drop_points"] > 1.0


def test_size_gate_both_ways(export: Export) -> None:
    refused = export(*TINY, "--max-size-mb", "0.01")
    accepted = export(*TINY, "--max-size-mb", "0.2")

    assert refused.code == 1
    assert re.search(r"size gate failed: the served model is 0\.0\d MB; the budget is 0\.01 MB", refused.stderr)
    assert not refused.out.exists()
    assert accepted.code == 0


def test_export_from_user_weights_without_training(export: Export, tmp_path: Path) -> None:
    # GIVEN weights a user trained elsewhere, saved as a state dict
    from amaas.artifact.manifest import Preprocessing
    from amaas.artifact.tasks.classification import top1
    from amaas_export import data
    from amaas_export.train import predict, train

    torch.manual_seed(1)
    dataset = data.load("synthetic:1000", Preprocessing(32, 32, (0, 0, 0), (1, 1, 1)), seed=0)
    prep = Preprocessing(32, 32, *data.mean_std(dataset.train))
    model = build_model("cifar-cnn", 10)
    train(model, dataset.train, dataset.test, prep, epochs=3, batch_size=64, learning_rate=0.005, seed=1, report=print)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    expected = top1(predict(model, dataset.test, prep), dataset.test.labels)

    # WHEN they are exported with no further training
    run = export("--data", "synthetic:1000", "--weights", str(tmp_path / "weights.pt"))

    # THEN the artifact scores what those weights score
    manifest = run.manifest
    assert manifest.metrics["fp32"]["top1"] == pytest.approx(expected, abs=1e-9)
    assert manifest.details["training"]["epochs"] == 0
    assert manifest.details["provenance"]["weights"]["sha256"] == sha256_file(tmp_path / "weights.pt")


AMAAS = Path(sys.executable).with_name("amaas")  # the installed console script, as a user runs it


def amaas_export(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(AMAAS), "export", *args], capture_output=True, text=True, env=env, check=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arch", "resnet9000"], "unknown architecture"),
        (["--data", "imagefolder:/nonexistent/photos"], "is not a directory"),
        (["--weights", "/nonexistent/w.pt", "--epochs", "0"], "does not exist"),
        (["--prune", "1.5"], "0 <= p < 1"),
        (["--from-onnx", "{tmp}/photo.onnx", "--labels", "{tmp}/labels.txt"], "is not a valid ONNX model"),
        (["--config", "{tmp}"], "cannot read config file"),
        (["--config", "{tmp}/typed.toml"], "--arch must be text; got 5"),
        (["--quantize", "int4"], "invalid choice"),
    ],
    ids=["arch", "data", "weights", "prune", "not-onnx", "config-dir", "config-type", "argparse"],
)
def test_bad_options_fail_with_a_message_not_a_traceback(tmp_path: Path, args: list[str], message: str) -> None:
    # GIVEN files a user might point at by mistake: a JPEG renamed .onnx, a config file of the wrong types
    (tmp_path / "photo.onnx").write_bytes(encode_image(synthetic_data.sample("star"), "JPEG"))
    (tmp_path / "labels.txt").write_text("a\nb\n")
    (tmp_path / "typed.toml").write_text("arch = 5\n")

    # WHEN the real command runs
    result = amaas_export(
        "--data", "synthetic:200", *(a.format(tmp=tmp_path) for a in args), "--out", str(tmp_path / "model")
    )

    # THEN it exits non-zero with the message and no stack trace: one line of its own, or argparse's usage
    assert result.returncode == (2 if message == "invalid choice" else 1), result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    if result.returncode == 1:
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("amaas export: error: ")


BUG = """
import sys
import amaas_export.pipeline

def run_export(config):
    raise KeyError("stage")

amaas_export.pipeline.run_export = run_export
from amaas_cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_an_internal_error_is_one_line_with_a_distinct_exit_code_unless_debugging(tmp_path: Path) -> None:
    # GIVEN a bug in amaas (here: one planted in the pipeline)
    command = [sys.executable, "-c", BUG, "export", *TINY, "--out", str(tmp_path / "model")]

    # WHEN the command runs normally, and again with AMAAS_DEBUG=1
    plain = subprocess.run(command, capture_output=True, text=True, check=False)
    debug = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "AMAAS_DEBUG": "1"}, check=False)

    # THEN the user sees one line saying it is a bug and how to see more, with an exit code unlike a gate's
    assert plain.returncode == 3
    assert plain.stderr.startswith("amaas export: internal error (KeyError): 'stage'\n")
    assert "AMAAS_DEBUG=1" in plain.stderr and "Traceback" not in plain.stderr
    # AND with AMAAS_DEBUG=1 the traceback is there for the bug report
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "KeyError: 'stage'" in debug.stderr


def test_num_classes_is_checked_against_the_data(export: Export) -> None:
    fast = ("--quantize", "none", "--optimize", "none", "--fold-normalization", "off")

    wrong = export(*TINY, *fast, "--num-classes", "3")
    right = export(*TINY, *fast, "--num-classes", "10")

    assert wrong.code == 1
    assert "--num-classes 3 but the data has 10 classes" in wrong.stderr
    assert not wrong.out.exists()
    assert right.code == 0, right.stderr
    assert len(right.manifest.labels) == 10 and right.manifest.output.shape == (-1, 10)


def test_out_that_is_not_an_artifact_is_never_replaced(export: Export, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("precious")

    run = export(*TINY, out=tmp_path)

    assert run.code == 1
    assert "refusing to replace" in run.stderr
    assert (tmp_path / "notes.txt").read_text() == "precious"


def test_config_file_gives_the_options_and_flags_override_it(export: Export, tmp_path: Path) -> None:
    config = tmp_path / "export.toml"
    config.write_text('data = "synthetic:1000"\nepochs = 2\nname = "from-file"\ncalibration = "entropy"\n')

    run = export("--config", str(config), "--name", "from-flag")

    assert run.manifest.name == "from-flag"
    assert run.manifest.details["quantization"]["calibration_method"] == "entropy"
    assert run.manifest.details["training"]["epochs"] == 2


def test_unknown_config_keys_are_refused(export: Export, tmp_path: Path) -> None:
    config = tmp_path / "export.toml"
    config.write_text('data = "synthetic:1000"\nepochz = 2\n')

    run = export("--config", str(config))

    assert run.code == 1
    assert "unknown export option(s): epochz" in run.stderr


def test_the_recipe_in_an_artifact_reproduces_it_byte_for_byte(export: Export) -> None:
    first = export(*TINY, "--calibration-samples", "64")

    again = export("--config", str(first.out / "export.toml"))

    assert sha256_file(again.out / MODEL_FILE) == sha256_file(first.out / MODEL_FILE)
    assert again.manifest.version == first.manifest.version


def test_the_recipe_repeats_what_auto_decided_instead_of_measuring_again(export: Export) -> None:
    first = export(*TINY, "--calibration-samples", "64", "--quantize", "auto", "--fold-normalization", "auto")
    recipe = tomllib.loads((first.out / "export.toml").read_text())
    optimization = first.manifest.details["optimization"]["fold_normalization"]
    quantization = first.manifest.details["quantization"]

    # a timing-based choice re-made on another machine could differ; the recipe pins the one made here
    assert recipe["fold-normalization"] == ("on" if optimization["applied"] else "off")
    if quantization.get("chosen"):
        assert recipe["quantize"] == "int8" and recipe["calibration"] == quantization["calibration_method"]
        assert recipe["per-channel"] == quantization["per_channel"]
    else:
        assert recipe["quantize"] == "none"
