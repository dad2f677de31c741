"""Model construction: the classic CIFAR-10 network, any torchvision classifier, and user weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from amaas_export.errors import ConfigError

CIFAR_CNN = "cifar-cnn"


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


def available_architectures() -> list[str]:
    return [CIFAR_CNN, *sorted(torchvision.models.list_models(module=torchvision.models))]


def build_model(arch: str, num_classes: int) -> nn.Module:
    """A freshly initialised classifier with ``num_classes`` outputs.

    Raises:
        ConfigError: ``arch`` is neither ``cifar-cnn`` nor a torchvision classification model.
    """
    if arch == CIFAR_CNN:
        return CifarCNN(num_classes)
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise ConfigError(
            f"unknown architecture {arch!r}; use {CIFAR_CNN!r} or a torchvision classifier such as "
            "resnet18, mobilenet_v3_small or efficientnet_b0"
        )
    model: nn.Module = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    return model


def fixed_image_size(arch: str) -> int | None:
    """The only input side an architecture accepts, if it has one: cifar-cnn's first linear layer fixes 32."""
    return 32 if arch == CIFAR_CNN else None


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
