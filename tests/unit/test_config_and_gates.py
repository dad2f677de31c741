from __future__ import annotations

from pathlib import Path

import pytest

from amaas_export.config import ExportConfig
from amaas_export.errors import ConfigError, GateError
from amaas_export.gates import check_accuracy_drop


def test_defaults_train_the_demo_model() -> None:
    config = ExportConfig()

    assert (config.arch, config.data, config.out) == ("cifar-cnn", "synthetic", Path("dist/model"))
    assert config.train_epochs == 20
    assert config.model_name == "cifar-cnn-synthetic"


def test_weights_alone_mean_no_training() -> None:
    assert ExportConfig(weights=Path("w.pt")).train_epochs == 0
    assert ExportConfig(weights=Path("w.pt"), epochs=3).train_epochs == 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": -1}, "--epochs"),
        ({"epochs": 0}, "needs --weights"),
        ({"max_accuracy_drop": -1.0}, "percentage points"),
        ({"arch": "cifar-cnn", "image_size": 64}, "32x32"),
        ({"image_size": 8, "arch": "resnet18"}, "at least 16"),
    ],
)
def test_invalid_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ExportConfig(**options)  # type: ignore[arg-type]


def test_gate_passes_within_the_allowed_drop() -> None:
    assert check_accuracy_drop(0.90, 0.895, 1.0) == pytest.approx(0.5)
    assert check_accuracy_drop(0.90, 0.91, 0.0) == pytest.approx(-1.0)


def test_gate_fails_past_the_allowed_drop_with_the_figures() -> None:
    with pytest.raises(GateError, match=r"from 90.00% \(FP32\) to 88.00% \(INT8\), a drop of 2.00 points"):
        check_accuracy_drop(0.90, 0.88, 1.0)
