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
        ({"from_onnx": "m.onnx", "labels_file": "l.txt", "prune": 0.5}, "skips torch"),
        ({"from_keras": "m.keras", "epochs": 3}, "--from-keras skips torch"),
        ({"from_onnx": "m.onnx", "from_savedmodel": "saved"}, "--from-onnx and --from-savedmodel both name"),
        ({"scale": 1.0}, "apply to an imported model"),
        ({"layout": "NHWC", "arch": "resnet18"}, "apply to an imported model"),
        ({"from_onnx": "m.onnx", "scale": 0.0}, "--scale must be a positive number"),
        ({"from_onnx": "m.onnx", "layout": "HWC"}, "--layout must be one of NCHW, NHWC"),
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


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"data": 5}, "--data must be text; got 5"),
        ({"arch": 5}, "--arch must be text; got 5"),
        ({"epochs": "3"}, "--epochs must be a whole number; got '3'"),
        ({"freeze-backbone": "yes"}, "--freeze-backbone must be true or false"),
        ({"max-accuracy-drop": True}, "--max-accuracy-drop must be a number"),
        ({"out": 5}, "--out must be a path"),
        ({"per-tensor": 1}, "per-tensor must be true or false"),
        ({"calibration-samples": 1.5}, "--calibration-samples must be a whole number"),
    ],
)
def test_values_of_the_wrong_type_are_refused_by_name(options: dict[str, object], message: str) -> None:
    # e.g. `data = 5` in export.toml: refused up front, not a crash deep inside the export
    with pytest.raises(ConfigError, match=message):
        ExportConfig.from_options(options)


def test_a_config_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*: Is a directory"):
        read_config_file(tmp_path)


def test_flag_names_work_as_file_keys() -> None:
    config = ExportConfig.from_options(
        {"from-onnx": "m.onnx", "labels": "l.txt", "model-version": "2026.1", "per-tensor": True}
    )

    assert (config.labels_file, config.version, config.quantization.per_channel) == (Path("l.txt"), "2026.1", False)


@pytest.mark.parametrize(
    ("file", "flags", "expected"),
    [
        (
            "freeze-backbone = true\nrequire-int8 = true\nper-channel = false\n",
            ["--no-freeze-backbone", "--no-require-int8", "--per-channel"],
            (False, False, True),
        ),
        (
            "freeze-backbone = false\nrequire-int8 = false\nper-tensor = false\n",
            ["--freeze-backbone", "--require-int8", "--per-tensor"],
            (True, True, False),
        ),
        ("freeze-backbone = true\nrequire-int8 = true\nper-tensor = true\n", [], (True, True, False)),
    ],
    ids=["flags-turn-off", "flags-turn-on", "file-alone"],
)
def test_on_off_flags_override_the_config_file_both_ways(
    tmp_path: Path, file: str, flags: list[str], expected: tuple[bool, bool, bool]
) -> None:
    import argparse

    from amaas_export.cli import add_arguments, build_config

    (tmp_path / "export.toml").write_text(file)
    parser = argparse.ArgumentParser()
    add_arguments(parser)

    config = build_config(parser.parse_args(["--config", str(tmp_path / "export.toml"), *flags]))

    assert (config.freeze_backbone, config.quantization.require_int8, config.quantization.per_channel) == expected


@pytest.mark.parametrize(("text", "scale"), [("1/255", 1 / 255), ("1", 1.0), ("0.5", 0.5)])
def test_scale_takes_a_number_or_a_fraction(text: str, scale: float) -> None:
    import argparse

    from amaas_export.cli import add_arguments, build_config

    parser = argparse.ArgumentParser()
    add_arguments(parser)

    config = build_config(parser.parse_args(["--from-keras", "m.keras", "--scale", text, "--layout", "NHWC"]))

    assert config.scale == pytest.approx(scale) and config.layout == "NHWC"
    assert config.model_name == "m-synthetic"


def test_a_scale_that_is_not_a_number_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from amaas_export.cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)

    with pytest.raises(SystemExit):
        parser.parse_args(["--scale", "1/0"])
    assert "not a number or a fraction: '1/0'" in capsys.readouterr().err
