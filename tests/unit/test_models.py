from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from amaas.artifact.manifest import Preprocessing
from amaas_export import data
from amaas_export.errors import ConfigError
from amaas_export.models import CifarCNN, build_model, freeze_backbone, load_weights
from amaas_export.prune import prune_channels
from amaas_export.train import train
from tests.helpers import changed_by_training


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


@pytest.mark.parametrize(("arch", "side"), [("googlenet", 32), ("inception_v3", 75)])
def test_classifiers_with_auxiliary_heads_return_plain_logits_in_training(arch: str, side: int) -> None:
    model = build_model(arch, 4).train()

    output = model(torch.zeros(2, 3, side, side))

    assert isinstance(output, torch.Tensor) and output.shape == (2, 4)


def test_training_uses_the_main_logits_of_a_model_with_auxiliary_outputs() -> None:
    # GIVEN GoogLeNet with its auxiliary classifiers, which make it return a (logits, aux2, aux1) tuple in training
    torch.manual_seed(0)
    dataset = data.load("synthetic:200", Preprocessing(32, 32, (0, 0, 0), (1, 1, 1)), seed=0)
    prep = Preprocessing(32, 32, *data.mean_std(dataset.train))
    model = torchvision.models.googlenet(num_classes=10, aux_logits=True, init_weights=True)
    before = model.fc.weight.clone()

    # WHEN it is trained
    reports = train(
        model, dataset.train, dataset.test, prep, epochs=1, batch_size=50, learning_rate=0.01, seed=0, report=print
    )

    # THEN training ran on the main logits
    assert len(reports) == 1 and reports[0].loss > 0
    assert not torch.equal(model.fc.weight, before)


def test_a_frozen_backbone_is_pruned_and_stays_frozen() -> None:
    # GIVEN a model with a frozen backbone, pruned
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", 10)
    freeze_backbone(model)
    unpruned = sum(p.numel() for p in model.parameters())
    prune_channels(model, torch.zeros(2, 3, 32, 32), 0.5)
    assert sum(p.numel() for p in model.parameters()) < 0.5 * unpruned, "frozen layers are pruned too"

    # WHEN the pruned model is fine-tuned
    changed = changed_by_training(model)

    # THEN only the head trained: backbone weights and BatchNorm statistics are unchanged
    assert changed == {"classifier.3.weight", "classifier.3.bias"}


def test_a_user_module_that_fails_on_import_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_user_models.py").write_text("raise ValueError('CONFIG is not set')\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    with pytest.raises(ConfigError, match=r"importing broken_user_models .* raised ValueError: CONFIG is not set"):
        build_model("broken_user_models:Net", 10)
