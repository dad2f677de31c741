from __future__ import annotations

from pathlib import Path

import pytest

from amaas_export.config import ExportConfig, QuantizationConfig, read_config_file, write_config_file
from amaas_export.errors import ConfigError


def test_defaults_train_the_demo_model() -> None:
    config = ExportConfig()

    assert (config.arch, config.data, config.out) == ("cifar-cnn", "synthetic", Path("dist/model"))
    assert config.train_epochs == 20
    assert config.model_name == "cifar-cnn-synthetic"
    assert config.quantization.describe() == "minmax/per-channel/U8S8"


def test_weights_alone_mean_no_training_and_pruning_fine_tunes_a_quarter() -> None:
    assert ExportConfig(weights="w.pt").train_epochs == 0
    assert ExportConfig(weights="w.pt", epochs=3).train_epochs == 3
    assert ExportConfig(epochs=12, prune=0.5).finetune_epochs == 3
    assert ExportConfig(epochs=2, prune=0.5).finetune_epochs == 1


def test_options_use_flag_names_with_dashes_or_underscores() -> None:
    config = ExportConfig.from_options(
        {
            "max-accuracy-drop": 0.5,
            "calibration": "entropy",
            "per_channel": False,
            "quantize": "auto",
            "float-nodes": "a,b",
        }
    )

    assert config.max_accuracy_drop == 0.5
    assert config.quantization == QuantizationConfig(
        mode="auto", calibration="entropy", per_channel=False, float_nodes=("a", "b")
    )


def test_a_config_written_to_toml_reads_back_identically(tmp_path: Path) -> None:
    config = ExportConfig(
        arch="resnet18",
        data="imagefolder:photos",
        image_size=64,
        prune=0.5,
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.2, 0.2),
        quantization=QuantizationConfig(mode="auto", float_nodes=("n1",)),
    )

    write_config_file(tmp_path / "export.toml", config)
    again = ExportConfig.from_options(read_config_file(tmp_path / "export.toml"))

    assert again == config


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": -1}, "--epochs"),
        ({"epochs": 0}, "needs --weights"),
        ({"max_accuracy_drop": -1.0}, "percentage points"),
        ({"arch": "cifar-cnn", "image_size": 64}, "32x32"),
        ({"image_size": 8, "arch": "resnet18"}, "at least 16"),
        ({"prune": 1.0}, "0 <= p < 1"),
        ({"from_onnx": "m.onnx"}, "needs --labels"),
        ({"from_onnx": "m.onnx", "labels_file": "l.txt", "prune": 0.5}, "skips torch"),
        ({"quantize": "int4"}, "--quantize must be one of"),
        ({"calibration": "magic"}, "--calibration must be one of"),
        ({"mean": [0.5, 0.5]}, "three numbers"),
        ({"epochz": 3}, "unknown export option"),
    ],
)
def test_invalid_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ExportConfig.from_options(options)


def test_missing_or_broken_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("arch = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_config_file(tmp_path / "bad.toml")
