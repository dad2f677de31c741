from __future__ import annotations

from pathlib import Path

import pytest
import torch

from amaas_export.errors import ConfigError
from amaas_export.models import CifarCNN, build_model, load_weights


def test_cifar_cnn_is_the_classic_network() -> None:
    model = build_model("cifar-cnn", 7)

    assert isinstance(model, CifarCNN)
    assert [tuple(p.shape) for p in model.parameters()][::2] == [
        (6, 3, 5, 5),
        (16, 6, 5, 5),
        (120, 400),
        (84, 120),
        (7, 84),
    ]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_torchvision_classifiers_get_the_requested_class_count(arch: str) -> None:
    model = build_model(arch, 4).eval()

    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 4)


def test_unknown_architecture_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown architecture 'resnet9000'"):
        build_model("resnet9000", 10)


def test_state_dict_and_checkpoint_files_load(tmp_path: Path) -> None:
    source = build_model("cifar-cnn", 3)
    torch.save(source.state_dict(), tmp_path / "plain.pt")
    torch.save(
        {"epoch": 4, "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "ckpt.pt"
    )

    for name in ("plain.pt", "ckpt.pt"):
        target = build_model("cifar-cnn", 3)
        load_weights(target, tmp_path / name)
        assert torch.equal(target.fc3.weight, source.fc3.weight)


def test_weights_for_another_shape_are_refused(tmp_path: Path) -> None:
    torch.save(build_model("cifar-cnn", 5).state_dict(), tmp_path / "five.pt")

    with pytest.raises(ConfigError, match="do not fit the architecture"):
        load_weights(build_model("cifar-cnn", 3), tmp_path / "five.pt")


def test_pickled_code_is_never_unpickled(tmp_path: Path) -> None:
    # a whole pickled module (not a state dict) needs arbitrary unpickling: weights_only refuses it
    torch.save(build_model("cifar-cnn", 3), tmp_path / "module.pt")

    with pytest.raises(ConfigError, match="not a weights-only PyTorch checkpoint"):
        load_weights(build_model("cifar-cnn", 3), tmp_path / "module.pt")


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_weights(build_model("cifar-cnn", 3), tmp_path / "nope.pt")
