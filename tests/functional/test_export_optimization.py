"""The optimization paths of `amaas export`: structured pruning, INT8 settings and the auto search, folding
normalisation into the graph, and baking ONNX Runtime optimizations into the file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from mangum import Mangum
from onnx import numpy_helper

from amaas.api.app import create_app
from amaas.artifact.manifest import CARD_FILE, MODEL_FILE
from amaas.artifact.model import Model
from amaas.settings import Settings
from amaas_export.data import ImageSet, synthetic
from amaas_export.stages import quantize as quantize_stage
from tests.functional.conftest import Export
from tests.helpers import LambdaContext, encode_image, load_event

TINY = ("--data", "synthetic:1000", "--epochs", "2")
SMALL = ("--data", "synthetic:4000", "--epochs", "8")


def test_pruning_resnet18_really_shrinks_it(export: Export) -> None:
    run = export(
        "--arch", "resnet18", "--image-size", "48", "--data", "synthetic:400", "--epochs", "1", "--batch-size", "32",
        "--prune", "0.5", "--prune-epochs", "1", "--max-prune-drop", "100", "--max-accuracy-drop", "100",
    )  # fmt: skip

    assert run.code == 0, run.stderr
    fp32, pruned = run.stage("fp32"), run.stage("pruned")
    assert pruned["macs"] <= 0.55 * fp32["macs"], "removing half the channels removes about 3/4 of the MACs"
    assert pruned["params"] < 0.5 * fp32["params"]
    assert pruned["bytes"] < 0.5 * fp32["bytes"]
    assert run.manifest.input.shape == (-1, 3, 48, 48)
    assert [s["name"] for s in run.manifest.details["stages"]] == ["fp32", "pruned", "int8"]
    assert "Pruning: 50% of channels removed" in (run.out / CARD_FILE).read_text()


def test_pruning_gate_both_ways(export: Export) -> None:
    # GIVEN a partly trained model: 90% of its channels cut and no fine-tuning ruins it
    ruined = export(*SMALL, "--prune", "0.9", "--prune-epochs", "0")
    # while a quarter cut, then fine-tuned, keeps (here: improves) its accuracy
    kept = export(*SMALL, "--prune", "0.25", "--prune-epochs", "4")

    assert ruined.code == 1
    assert "pruning gate failed" in ruined.stderr and "No artifact was written" in ruined.stderr
    assert not ruined.out.exists()
    assert kept.code == 0, kept.stderr
    assert kept.manifest.metrics["prune_drop_points"] <= 2.0


def test_auto_quantization_keeps_the_fastest_candidate_within_the_gate(export: Export) -> None:
    run = export(*SMALL, "--quantize", "auto", "--calibration-samples", "128")

    quantization = run.manifest.details["quantization"]
    table = quantization["candidates"]
    assert len(table) == 5
    assert {row["settings"] for row in table} >= {"minmax/per-channel/U8S8", "entropy/per-channel/U8S8"}
    passing = [row for row in table if row["drop_points"] <= 1.0]
    fastest = min(passing, key=lambda row: (row["latency_ms"], -row["top1"]))
    assert quantization["chosen"] == fastest["settings"]
    assert "| Candidate | Held-out top-1 |" in (run.out / CARD_FILE).read_text()


def _broken_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    real = quantize_stage.quantize_int8

    def quantize(float_path: Path, int8_path: Path, calibration: ImageSet, *args: Any) -> Any:
        return real(float_path, int8_path, ImageSet(np.zeros_like(calibration.pixels), calibration.labels), *args)

    monkeypatch.setattr(quantize_stage, "quantize_int8", quantize)


def test_auto_quantization_ships_fp32_loudly_when_no_candidate_passes(
    export: Export, monkeypatch: pytest.MonkeyPatch
) -> None:
    _broken_calibration(monkeypatch)

    run = export(*SMALL, "--quantize", "auto", "--calibration-samples", "64")

    assert run.code == 0
    assert "SHIPPING THE FLOAT MODEL (fp32), NOT INT8" in run.stdout
    assert run.manifest.metrics["served"]["stage"] == "fp32"
    assert [s["name"] for s in run.manifest.details["stages"]] == ["fp32"]
    assert "No INT8 candidate passed the accuracy gate" in (run.out / CARD_FILE).read_text()


def test_require_int8_turns_that_into_a_failure(export: Export, monkeypatch: pytest.MonkeyPatch) -> None:
    _broken_calibration(monkeypatch)

    run = export(*SMALL, "--quantize", "auto", "--calibration-samples", "64", "--require-int8")

    assert run.code == 1
    assert "--require-int8 is set" in run.stderr
    assert not run.out.exists()


@pytest.fixture(scope="module")
def trained_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cifar-cnn weights trained once, so several exports quantize the very same float model."""
    import torch

    from amaas.artifact.manifest import Preprocessing
    from amaas_export import data
    from amaas_export.models import build_model
    from amaas_export.train import train

    torch.manual_seed(0)
    dataset = data.load("synthetic:1000", Preprocessing(32, 32, (0, 0, 0), (1, 1, 1)), seed=0)
    prep = Preprocessing(32, 32, *data.mean_std(dataset.train))
    model = build_model("cifar-cnn", 10)
    train(model, dataset.train, dataset.test, prep, epochs=2, batch_size=64, learning_rate=0.005, seed=0, report=print)
    path = tmp_path_factory.mktemp("weights") / "cifar-cnn.pt"
    torch.save(model.state_dict(), path)
    return path


def _qdq(path: Path) -> dict[str, Any]:
    """What the QDQ graph holds: zero-point types of activations and weights, weight-scale shapes, and the
    scale each activation tensor is quantized with."""
    graph = onnx.load(str(path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    quantize = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    weight_inputs = {n.input[1] for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")}
    weights = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.output[0] in weight_inputs]
    return {
        "activation_zero_points": {init[n.input[2]].dtype.name for n in quantize},
        "weight_zero_points": {init[n.input[2]].dtype.name for n in weights},
        "weight_scale_dims": {init[n.input[1]].ndim for n in weights},
        "activation_scales": {n.input[0]: float(init[n.input[1]]) for n in quantize},
    }


def test_quantization_settings_are_applied_and_recorded(export: Export, trained_weights: Path) -> None:
    # GIVEN one float model, quantized with each calibration method and both weight granularities and types
    common = ("--data", "synthetic:1000", "--weights", str(trained_weights), "--optimize", "none")
    common += ("--fold-normalization", "off", "--max-accuracy-drop", "100", "--calibration-samples", "256")
    minmax = export(*common)
    entropy = export(*common, "--calibration", "entropy")
    percentile = export(*common, "--calibration", "percentile")
    signed = export(
        *common, "--calibration", "percentile", "--per-tensor", "--activation-type", "int8", "--weight-type", "int8"
    )

    # THEN the defaults give uint8 activations, int8 weights and one weight scale per output channel
    default = _qdq(minmax.out / MODEL_FILE)
    assert default["activation_zero_points"] == {"uint8"} and default["weight_zero_points"] == {"int8"}
    assert default["weight_scale_dims"] == {1}
    # AND the flags change the graph: int8 activations, one scalar scale per weight tensor
    flagged = _qdq(signed.out / MODEL_FILE)
    assert flagged["activation_zero_points"] == {"int8"} and flagged["weight_zero_points"] == {"int8"}
    assert flagged["weight_scale_dims"] == {0}
    # AND entropy and percentile calibration pick other activation ranges than minmax
    for other in (entropy, percentile):
        scales = _qdq(other.out / MODEL_FILE)["activation_scales"]
        assert scales.keys() == default["activation_scales"].keys()
        assert scales != pytest.approx(default["activation_scales"], rel=1e-3)
    # AND the manifest records what was applied
    quantization = signed.manifest.details["quantization"]
    assert (quantization["calibration_method"], quantization["per_channel"]) == ("percentile", False)
    assert (quantization["activation_type"], quantization["weight_type"]) == ("int8", "int8")
    assert entropy.manifest.details["quantization"]["chosen"] == "entropy/per-channel/U8S8"


def test_float_nodes_stay_in_float(export: Export) -> None:
    run = export(*TINY, "--float-nodes", "node_conv2d", "--optimize", "none", "--max-accuracy-drop", "100")

    assert "node_conv2d" in run.manifest.details["quantization"]["float_nodes"]
    graph = onnx.load(str(run.out / MODEL_FILE)).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    convs = {n.name: n for n in graph.node if n.op_type == "Conv"}
    assert convs["node_conv2d"].input[1] not in dequantized, "its weights are plain float"
    assert convs["node_conv2d_1"].input[1] in dequantized, "the other conv is quantized"


def test_unknown_float_node_is_refused(export: Export) -> None:
    run = export(*TINY, "--float-nodes", "no_such_node")

    assert run.code == 1
    assert "--float-nodes no_such_node: no such node" in run.stderr


def test_quantize_none_serves_the_float_model(export: Export) -> None:
    run = export(*TINY, "--quantize", "none")

    assert run.manifest.metrics["served"]["stage"] == "fp32"
    assert "int8" not in run.manifest.metrics
    assert run.manifest.input.dtype == "float32"


def test_folded_normalization_serves_the_same_predictions(export: Export) -> None:
    # GIVEN the same export twice, once with normalisation inside the graph
    plain = export(*TINY, "--fold-normalization", "off")
    folded = export(*TINY, "--fold-normalization", "on")

    # THEN the folded model takes raw uint8 pixels
    assert folded.manifest.input.dtype == "uint8"
    assert folded.manifest.input.shape == (-1, 32, 32, 3) and folded.manifest.input.layout == "NHWC"
    assert folded.manifest.details["optimization"]["fold_normalization"]["applied"] is True
    # AND answers like the plain one
    images = [encode_image(synthetic.sample(label)) for label in synthetic.LABELS]
    expected = Model(plain.out).infer(images, k=1).results
    got = Model(folded.out).infer(images, k=1).results
    assert [p[0].label for p in got] == [p[0].label for p in expected]
    np.testing.assert_allclose([p[0].score for p in got], [p[0].score for p in expected], atol=0.02)
    # AND works through the Lambda handler
    response = Mangum(create_app(Settings(model_dir=folded.out)), lifespan="off")(
        load_event("classify_png"), LambdaContext()
    )
    assert response["statusCode"] == 200


def test_offline_optimization_is_baked_in_or_left_out(export: Export) -> None:
    optimized = export(*TINY, "--fold-normalization", "off")
    plain = export(*TINY, "--fold-normalization", "off", "--optimize", "none")

    # the served graph is ORT's rewrite: quantize-dequantize pairs fused into integer operators
    optimized_ops = Counter(n.op_type for n in onnx.load(str(optimized.out / MODEL_FILE)).graph.node)
    plain_ops = Counter(n.op_type for n in onnx.load(str(plain.out / MODEL_FILE)).graph.node)
    assert optimized_ops["QLinearConv"] == plain_ops["Conv"] == 2 and optimized_ops["Conv"] == 0
    assert plain_ops["QLinearConv"] == 0 and plain_ops["DequantizeLinear"] > optimized_ops["DequantizeLinear"]
    assert optimized_ops.total() < plain_ops.total()
    create = optimized.manifest.details["optimization"]["session_create_ms"]
    assert create["as_exported"] > 0 and create["optimized"] > 0
    assert "session_create_ms" not in plain.manifest.details["optimization"]
    assert plain.manifest.metrics["served"]["bytes"] == plain.stage("int8")["bytes"], "the QDQ file ships as is"
    assert optimized.manifest.metrics["served"]["top1"] == pytest.approx(optimized.stage("int8")["top1"], abs=0.002)


def _entropy_cannot_calibrate(monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime's entropy calibrator fails on graphs whose inner tensors change shape from image to image
    (Faster R-CNN's proposals), with the error it raises there."""
    real = quantize_stage.quantize_int8

    def quantize(float_path: Path, int8_path: Path, calibration: ImageSet, prep: Any, spec: Any, settings: Any) -> Any:
        if settings.calibration == "entropy":
            raise ValueError("setting an array element with a sequence. The requested array has an inhomogeneous shape")
        return real(float_path, int8_path, calibration, prep, spec, settings)

    monkeypatch.setattr(quantize_stage, "quantize_int8", quantize)


def test_a_candidate_that_cannot_be_calibrated_is_skipped_by_auto_and_named_by_int8(
    export: Export, monkeypatch: pytest.MonkeyPatch
) -> None:
    _entropy_cannot_calibrate(monkeypatch)

    auto = export(*TINY, "--quantize", "auto", "--calibration-samples", "64")

    assert auto.code == 0, auto.stderr
    assert "entropy/per-channel/U8S8: could not be calibrated (ValueError: setting an array" in auto.stdout
    candidates = auto.manifest.details["quantization"]["candidates"]
    assert {"settings": "entropy/per-channel/U8S8", "error": candidates[-1]["error"]} in candidates
    assert len(candidates) == 5 and sum("error" in c for c in candidates) == 1
    asked = export(*TINY, "--quantize", "int8", "--calibration", "entropy", "--calibration-samples", "64")
    assert asked.code == 1 and not asked.out.exists()
    assert "INT8 calibration (entropy/per-channel/U8S8) failed on this model: ValueError" in asked.stderr
    assert "--quantize auto tries other calibrations" in asked.stderr
