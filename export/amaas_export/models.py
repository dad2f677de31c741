"""Model construction: the classic CIFAR-10 network, any torchvision classifier (optionally with its pretrained
weights), a user's own ``nn.Module``, and weights from files; plus the transfer-learning surgery (new head,
frozen backbone)."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from amaas_export.config import CIFAR_CNN
from amaas_export.errors import ConfigError


class CifarCNN(nn.Module):
    """The network from PyTorch's "Training a classifier" tutorial: two 5x5 convolutions, three linear layers.

    It expects 32x32 inputs (16 channels of 5x5 reach the first linear layer).
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        logits: torch.Tensor = self.fc3(x)
        return logits


# GoogLeNet and Inception v3 add auxiliary classifiers that, in training mode, make the model return a
# (logits, aux...) tuple; they only help train ImageNet from scratch, and are dropped from pretrained models too.
# Passing init_weights avoids torchvision's FutureWarning about its default changing.
_NO_AUX: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


@dataclass(frozen=True)
class Pretrained:
    """What torchvision's weight metadata says about a pretrained model (available offline)."""

    name: str
    categories: tuple[str, ...]
    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str


def is_weights_file(weights: str) -> bool:
    """A weights argument names a file if it looks like a path; otherwise a torchvision weights enum."""
    return "/" in weights or Path(weights).suffix in (".pt", ".pth", ".bin", ".ckpt") or Path(weights).exists()


def pretrained_info(arch: str, weights: str) -> Pretrained:
    """Resolves ``IMAGENET1K_V1``, ``DEFAULT`` or ``ResNet18_Weights.IMAGENET1K_V1`` for ``arch``.

    Raises:
        ConfigError: ``arch`` has no such weights.
    """
    if arch not in _torchvision_classifiers():
        raise ConfigError(f"--weights {weights}: named weights exist only for torchvision classifiers, not {arch!r}")
    return weights_info(arch, weights)


def weights_info(arch: str, weights: str) -> Pretrained:
    """What a torchvision weights enum of ``arch`` says, read offline: categories and the eval transform's
    resize, crop (the resize itself for transforms without one, such as segmentation's), mean and std.

    Raises:
        ConfigError: ``arch`` has no such weights.
    """
    enum = torchvision.models.get_model_weights(arch)
    try:
        chosen = enum[weights.rpartition(".")[2]]
    except KeyError:
        names = ", ".join(w.name for w in enum)
        raise ConfigError(f"{arch} has no weights {weights!r}; available: {names}, DEFAULT") from None
    transforms = chosen.transforms()
    mean, std = transforms.mean, transforms.std
    resize = int(transforms.resize_size[0])
    return Pretrained(
        name=f"{enum.__name__}.{chosen.name}",
        categories=tuple(chosen.meta["categories"]),
        resize=resize,
        crop=int(transforms.crop_size[0]) if hasattr(transforms, "crop_size") else resize,
        mean=(float(mean[0]), float(mean[1]), float(mean[2])),
        std=(float(std[0]), float(std[1]), float(std[2])),
        interpolation=transforms.interpolation.value,
    )


def check_architecture(arch: str) -> None:
    """Fails fast, before any data is read, on an architecture that cannot be built.

    Raises:
        ConfigError: Neither cifar-cnn, a torchvision classifier, nor an importable ``module:Class``.
    """
    if arch == CIFAR_CNN or arch in _torchvision_classifiers():
        return
    if ":" in arch:
        custom_class(arch)
        return
    raise ConfigError(
        f"unknown architecture {arch!r}; use {CIFAR_CNN!r}, a torchvision classifier such as resnet18, "
        "mobilenet_v3_small or efficientnet_b0, or your own class as package.module:ClassName"
    )


def build_model(arch: str, num_classes: int, *, pretrained: Pretrained | None = None) -> nn.Module:
    """A classifier with ``num_classes`` outputs.

    With ``pretrained``, torchvision's weights are loaded (from its cache, or downloaded) and, when the
    classes differ from the weights' categories, the classifier head is replaced by a fresh one.

    Raises:
        ConfigError: Unknown architecture, weights that cannot be fetched, or a custom class that fails.
    """
    check_architecture(arch)
    if arch == CIFAR_CNN:
        return CifarCNN(num_classes)
    if ":" in arch:
        return custom_module(arch, num_classes)
    if pretrained is None:
        model: nn.Module = torchvision.models.get_model(
            arch, weights=None, num_classes=num_classes, **_NO_AUX.get(arch, {})
        )
        return model
    with weights_errors(arch, pretrained):
        model = torchvision.models.get_model(arch, weights=pretrained.name)
    if num_classes != len(pretrained.categories):
        replace_head(model, num_classes)
    return model


def fetch_pretrained(arch: str, pretrained: Pretrained) -> None:
    """Puts the weights file in torchvision's cache (downloading it if needed) so that an export that
    cannot get it fails before any data is read or any model is built.

    Raises:
        ConfigError: The weights can be neither read from the cache nor downloaded.
    """
    weights = torchvision.models.get_weight(pretrained.name)
    with weights_errors(arch, pretrained):
        weights.get_state_dict(progress=True, check_hash=True, map_location="cpu", weights_only=True)


@contextlib.contextmanager
def weights_errors(arch: str, pretrained: Pretrained) -> Iterator[None]:
    try:
        yield
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise ConfigError(
            f"cannot load {pretrained.name} for {arch}: {exc.__class__.__name__}: {exc}. Downloading needs "
            f"network access to download.pytorch.org; offline, put the weights file in {cache}/ or pass a "
            "state dict with --weights path/to/file.pt"
        ) from exc


def replace_head(model: nn.Module, num_classes: int) -> nn.Linear:
    """Swaps the last ``nn.Linear`` (the classifier head of every torchvision classifier but squeezenet)
    for a freshly initialised one with ``num_classes`` outputs."""
    name, head = _head(model)
    new = nn.Linear(head.in_features, num_classes, bias=head.bias is not None)
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)
    return new


def freeze_backbone(model: nn.Module) -> int:
    """Makes everything but the classifier head untrainable; returns the number of trainable parameters."""
    _, head = _head(model)
    for parameter in model.parameters():
        parameter.requires_grad = False
    for parameter in head.parameters():
        parameter.requires_grad = True
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def head_layer(model: nn.Module) -> nn.Module:
    return _head(model)[1]


def _head(model: nn.Module) -> tuple[str, nn.Linear]:
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("cannot find the classifier head (no nn.Linear layer) to replace or keep trainable")
    return linears[-1]


def _torchvision_classifiers() -> list[str]:
    names: list[str] = torchvision.models.list_models(module=torchvision.models)
    return names


def custom_class(spec: str) -> type[nn.Module]:
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {spec}: {exc}. Is its package on PYTHONPATH?") from exc
    except Exception as exc:  # the user's module failed while running: say so, without our traceback
        raise ConfigError(f"importing {module_name} (for {spec}) raised {exc.__class__.__name__}: {exc}") from exc
    try:
        cls = getattr(module, class_name)
    except AttributeError as exc:
        raise ConfigError(f"cannot import {spec}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"{spec} is not an nn.Module subclass")
    return cls


def custom_module(spec: str, num_classes: int) -> nn.Module:
    cls = custom_class(spec)
    takes_classes = "num_classes" in inspect.signature(cls).parameters
    try:
        model: nn.Module = cls(num_classes=num_classes) if takes_classes else cls()
    except Exception as exc:
        raise ConfigError(f"constructing {spec}() failed: {exc.__class__.__name__}: {exc}") from exc
    return model


def load_weights(model: nn.Module, path: Path) -> None:
    """Loads a state dict (or a checkpoint dict holding one) without unpickling any code.

    Raises:
        ConfigError: The file is missing, is not a weights-only checkpoint, or does not fit the model.
    """
    if not path.is_file():
        raise ConfigError(f"weights file {path} does not exist")
    try:
        loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(
            f"{path} is not a weights-only PyTorch checkpoint ({exc.__class__.__name__}); "
            "save it with torch.save(model.state_dict(), path)"
        ) from exc
    state = _state_dict(loaded)
    if state is None:
        raise ConfigError(f"{path} holds no state dict (expected a dict of tensors, or one under 'state_dict')")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[:3]
        raise ConfigError(f"weights in {path} do not fit the architecture: {' '.join(first)}") from exc


def _state_dict(loaded: Any) -> dict[str, torch.Tensor] | None:
    if isinstance(loaded, dict) and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        return loaded
    if isinstance(loaded, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            nested = loaded.get(key)
            if isinstance(nested, dict):
                return _state_dict(nested)
    return None
