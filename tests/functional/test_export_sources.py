"""Every model source of `amaas export`: torchvision pretrained weights (cached, and offline without a cache),
transfer learning on ImageFolder data with a frozen backbone, a user's own nn.Module, and an existing ONNX file."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import urllib.error
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision

from amaas.artifact.manifest import Preprocessing, read_manifest
from amaas.artifact.model import Model
from amaas.artifact.tasks.classification import top1
from amaas_export import data
from amaas_export.data import synthetic
from amaas_export.models import build_model, freeze_backbone
from amaas_export.train import predict, train
from tests.functional.conftest import Export
from tests.helpers import changed_by_training, encode_image

MOBILENET_WEIGHTS_FILE = "mobilenet_v3_small-047dcff4.pth"  # torchvision's file name for IMAGENET1K_V1


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache, so nothing a developer downloaded earlier leaks into the test."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def write_imagefolder(root: Path, labels: tuple[str, ...], per_class: int, size: int) -> None:
    for label in labels:
        (root / label).mkdir(parents=True)
        for variant in range(per_class):
            synthetic.sample(label, variant=variant, size=size).save(root / label / f"{variant}.png")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """torch's downloader fails as it does without network; yields the URLs it was asked for."""
    asked: list[str] = []

    def urlopen(request: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(getattr(request, "full_url", request))
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "urlopen", urlopen)
    return asked


def test_pretrained_weights_without_network_or_cache_fail_clearly(
    export: Export, torch_home: Path, offline: list[str]
) -> None:
    run = export(
        "--arch", "mobilenet_v3_small", "--weights", "IMAGENET1K_V1", "--data", "synthetic:200", "--epochs", "1"
    )

    assert run.code == 1
    assert offline == ["https://download.pytorch.org/models/" + MOBILENET_WEIGHTS_FILE]
    assert "cannot load MobileNet_V3_Small_Weights.IMAGENET1K_V1" in run.stderr
    assert "download.pytorch.org" in run.stderr and str(torch_home / "hub" / "checkpoints") in run.stderr
    assert "data:" not in run.stdout, "it fails before reading any data"


def test_unknown_weights_name_lists_the_available_ones(export: Export) -> None:
    run = export("--arch", "resnet18", "--weights", "IMAGENET9K_V7", "--data", "synthetic:200", "--epochs", "1")

    assert run.code == 1
    assert "resnet18 has no weights 'IMAGENET9K_V7'; available: IMAGENET1K_V1" in run.stderr


def test_transfer_learning_from_cached_pretrained_weights_on_imagefolder_data(
    export: Export, torch_home: Path, offline: list[str], tmp_path: Path
) -> None:
    # GIVEN torchvision's cache holding the ImageNet weights file (stand-in contents: no network here)
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), checkpoints / MOBILENET_WEIGHTS_FILE)
    # and the user's own photos in ImageFolder layout, three classes
    labels = ("circle", "square", "star")
    write_imagefolder(tmp_path / "photos", labels, per_class=20, size=72)

    # WHEN the pretrained model is fine-tuned on them with a frozen backbone
    run = export(
        "--arch", "mobilenet_v3_small", "--weights", "IMAGENET1K_V1", "--freeze-backbone",
        "--data", f"imagefolder:{tmp_path / 'photos'}", "--image-size", "64", "--epochs", "2",
        "--batch-size", "16", "--max-accuracy-drop", "100",
    )  # fmt: skip

    # THEN a new 3-class head was trained on top of the frozen ImageNet backbone
    assert run.code == 0, run.stderr
    assert "new 3-class head" in run.stdout
    assert "3075 trainable parameters in the head" in run.stdout, "Linear(1024, 3): only the head trains"
    manifest = run.manifest
    assert manifest.labels == labels
    assert manifest.details["training"]["pretrained"] == "MobileNet_V3_Small_Weights.IMAGENET1K_V1"
    assert manifest.preprocessing.mean == (0.485, 0.456, 0.406), "the weights' normalisation, not the data's"
    assert manifest.input.shape == (-1, 3, 64, 64)
    assert offline == [], "read from the cache"


def test_pretrained_weights_preprocessing_is_the_default_and_recorded(
    export: Export, torch_home: Path, offline: list[str]
) -> None:
    # GIVEN EfficientNet-B0's ImageNet weights in the cache (stand-in contents): they were trained on bicubic resizes
    weights = torchvision.models.EfficientNet_B0_Weights.IMAGENET1K_V1
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.efficientnet_b0().state_dict(), checkpoints / weights.url.rpartition("/")[2])

    # WHEN they are fine-tuned at a small size, with no preprocessing flags
    run = export(
        "--arch", "efficientnet_b0", "--weights", "IMAGENET1K_V1", "--data", "synthetic:200", "--image-size", "32",
        "--epochs", "1", "--batch-size", "50", "--quantize", "none", "--optimize", "none",
        "--fold-normalization", "off",
    )  # fmt: skip

    # THEN the manifest, which serving follows, holds the weights' preprocessing (resize keeps their 256/224 ratio)
    assert run.code == 0, run.stderr
    prep = run.manifest.preprocessing
    assert (prep.interpolation, prep.resize, prep.crop) == ("bicubic", 37, 32)
    assert (prep.mean, prep.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_pretrained_weights_bring_their_labels_and_preprocessing() -> None:
    from amaas_export.config import ExportConfig
    from amaas_export.sources import plan_source

    plan = plan_source(ExportConfig(arch="resnet18", weights="IMAGENET1K_V1"), Path("unused"))

    assert (plan.resize, plan.crop, plan.interpolation) == (256, 224, "bilinear")
    assert plan.std == (0.229, 0.224, 0.225)
    assert plan.labels is not None and len(plan.labels) == 1000 and plan.labels[0] == "tench"


def test_flags_override_the_preprocessing_pretrained_weights_bring() -> None:
    from amaas_export.config import ExportConfig
    from amaas_export.sources import plan_source

    weights = plan_source(ExportConfig(arch="efficientnet_b0", weights="IMAGENET1K_V1"), Path("unused"))
    flags = plan_source(
        ExportConfig(
            arch="efficientnet_b0", weights="IMAGENET1K_V1", interpolation="bilinear", resize=240, mean=(0.5, 0.5, 0.5)
        ),
        Path("unused"),
    )

    assert (weights.interpolation, weights.resize, weights.crop, weights.mean) == (
        "bicubic", 256, 224, (0.485, 0.456, 0.406)
    )  # fmt: skip
    assert (flags.interpolation, flags.resize, flags.crop, flags.mean) == ("bilinear", 240, 224, (0.5, 0.5, 0.5))


def test_frozen_backbone_training_changes_only_the_head() -> None:
    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", 10)
    freeze_backbone(model)

    changed = changed_by_training(model)

    assert changed == {"classifier.3.weight", "classifier.3.bias"}, "BatchNorm statistics included: all frozen"


CUSTOM_MODULE = """
import torch
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class FixedSize(nn.Module):  # built for 32x32 inputs: the linear layer's size depends on them
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * 32 * 32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).flatten(1))


class Noisy(TinyNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + torch.rand(x.shape[0], 1)
"""


@pytest.fixture
def custom_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A user package on the path, named per test so imports never collide."""
    name = f"user_models_{request.node.name.replace('[', '_').replace(']', '_').replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(CUSTOM_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_users_own_module_with_its_weights(export: Export, custom_module: str, tmp_path: Path) -> None:
    import importlib

    tiny = importlib.import_module(custom_module).TinyNet(num_classes=10)
    torch.save(tiny.state_dict(), tmp_path / "tiny.pt")

    run = export(
        "--arch", f"{custom_module}:TinyNet", "--weights", str(tmp_path / "tiny.pt"), "--epochs", "2",
        "--data", "synthetic:1000", "--image-size", "32", "--max-accuracy-drop", "100",
    )  # fmt: skip

    assert run.code == 0, run.stderr
    assert run.manifest.architecture == f"{custom_module}:TinyNet"
    assert run.manifest.name == "TinyNet-synthetic"
    assert run.stage("fp32")["params"] == 3 * 16 * 9 + 16 + 16 * 32 * 9 + 32 + 32 * 10 + 10


def test_a_module_that_is_not_importable(export: Export) -> None:
    run = export("--arch", "no_such_package.models:Net", "--data", "synthetic:200", "--epochs", "1")

    assert run.code == 1
    assert "cannot import no_such_package.models:Net" in run.stderr


def test_a_module_built_for_another_input_size_fails_clearly(export: Export, custom_module: str) -> None:
    run = export("--arch", f"{custom_module}:FixedSize", "--image-size", "64", "--data", "synthetic:200")

    assert run.code == 1
    assert f"{custom_module}:FixedSize fails on a batch of 2 64x64 images (RuntimeError: mat1" in run.stderr
    assert "Set --image-size to the size it expects" in run.stderr


def test_random_inference_noise_fails_the_parity_gate(export: Export, custom_module: str) -> None:
    run = export("--arch", f"{custom_module}:Noisy", "--data", "synthetic:500", "--image-size", "32", "--epochs", "1")

    assert run.code == 1
    assert "ONNX parity gate failed" in run.stderr


@pytest.fixture(scope="module")
def onnx_classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Preprocessing, float]:
    """An ONNX classifier made outside amaas (torch.onnx.export with a fixed batch of 1), its labels file,
    its preprocessing, and its held-out accuracy measured in torch."""
    folder = tmp_path_factory.mktemp("onnx-source")
    torch.manual_seed(0)
    dataset = data.load("synthetic:1000", Preprocessing(32, 32, (0, 0, 0), (1, 1, 1)), seed=0)
    prep = Preprocessing(32, 32, *data.mean_std(dataset.train))
    model = build_model("cifar-cnn", 10)
    train(model, dataset.train, dataset.test, prep, epochs=3, batch_size=64, learning_rate=0.005, seed=0, report=print)
    expected = top1(predict(model, dataset.test, prep), dataset.test.labels)
    path = folder / "classifier.onnx"
    torch.onnx.export(
        model, (torch.zeros(1, 3, 32, 32),), str(path), input_names=["pixels"], dynamo=True, external_data=False
    )
    labels = folder / "labels.txt"
    labels.write_text("\n".join(synthetic.LABELS) + "\n")
    return path, labels, prep, expected


def test_from_onnx_skips_torch_and_goes_straight_to_int8(
    onnx_classifier: tuple[Path, Path, Preprocessing, float], tmp_path: Path
) -> None:
    path, labels, prep, expected = onnx_classifier
    out = tmp_path / "model"
    # torch and torchvision made unimportable, as on a machine that never installed them
    script = (
        "import sys; sys.modules['torch'] = sys.modules['torchvision'] = None; "
        "from amaas_cli.main import main; sys.exit(main(sys.argv[1:]))"
    )
    args = [
        "export", "--from-onnx", str(path), "--labels", str(labels), "--data", "synthetic:1000", "--out", str(out),
        "--mean", *map(str, prep.mean), "--std", *map(str, prep.std),
    ]  # fmt: skip

    result = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, env=os.environ, check=False
    )

    assert result.returncode == 0, result.stderr
    manifest = read_manifest(out)
    assert manifest.architecture == "onnx"
    assert manifest.labels == synthetic.LABELS
    assert manifest.input.name == "pixels"
    assert manifest.metrics["fp32"]["top1"] == pytest.approx(expected, abs=1e-9), "same model, same preprocessing"
    assert [s["name"] for s in manifest.details["stages"]] == ["fp32", "int8"]
    # the fixed batch of 1 was made dynamic: three images go through as one batch
    images = [encode_image(synthetic.sample(label)) for label in ("star", "ring", "heart")]
    assert len(Model(out).infer(images, k=1).results) == 3


def test_from_onnx_labels_must_match_the_outputs(
    export: Export, onnx_classifier: tuple[Path, Path, Preprocessing, float], tmp_path: Path
) -> None:
    path, _, _, _ = onnx_classifier
    (tmp_path / "three.txt").write_text("a\nb\nc\n")

    run = export("--from-onnx", str(path), "--labels", str(tmp_path / "three.txt"), "--data", "synthetic:200")

    assert run.code == 1
    assert "outputs 10 classes but" in run.stderr and "lists 3 labels" in run.stderr


def test_from_onnx_data_classes_must_be_known_to_the_model(
    export: Export, onnx_classifier: tuple[Path, Path, Preprocessing, float], tmp_path: Path
) -> None:
    path, labels, _, _ = onnx_classifier
    write_imagefolder(tmp_path / "photos", ("circle", "star"), per_class=3, size=32)
    (tmp_path / "photos" / "zebra").mkdir()
    synthetic.sample("bar").save(tmp_path / "photos" / "zebra" / "0.png")
    synthetic.sample("bar", variant=1).save(tmp_path / "photos" / "zebra" / "1.png")

    run = export("--from-onnx", str(path), "--labels", str(labels), "--data", f"imagefolder:{tmp_path / 'photos'}")

    assert run.code == 1
    assert "the data has classes the model does not know: zebra" in run.stderr


def test_from_onnx_refuses_torch_only_options(
    export: Export, onnx_classifier: tuple[Path, Path, Preprocessing, float]
) -> None:
    path, labels, _, _ = onnx_classifier

    run = export("--from-onnx", str(path), "--labels", str(labels), "--prune", "0.5")

    assert run.code == 1
    assert "--from-onnx skips torch" in run.stderr


def test_cached_pretrained_model_serves_imagenet_labels_without_a_new_head(
    torch_home: Path, offline: list[str]
) -> None:
    # keeping the head needs data labelled with ImageNet's categories; here only the model side is checked
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), checkpoints / MOBILENET_WEIGHTS_FILE)
    from amaas_export.models import pretrained_info

    info = pretrained_info("mobilenet_v3_small", "IMAGENET1K_V1")
    model = build_model("mobilenet_v3_small", len(info.categories), pretrained=info)

    assert model.classifier[3].out_features == 1000
    assert torch.equal(
        model.classifier[3].weight, torch.load(checkpoints / MOBILENET_WEIGHTS_FILE)["classifier.3.weight"]
    )
