"""The torch side of segmentation: the wrapper that makes any segmentation model return bare logits (what the
ONNX graph outputs), and training on in-memory images with label maps.

Batches are normalised by ``amaas.artifact.preprocessing.normalize``, the function serving uses. Augmentation
(horizontal flip of image and mask together) is training-only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from amaas.artifact.manifest import Preprocessing
from amaas.artifact.preprocessing import normalize
from amaas.artifact.tasks.segmentation import IGNORE_INDEX
from amaas_export.config import Training
from amaas_export.data import ImageSet

BN_MOMENTUM = 0.1


class SegmentationLogits(nn.Module):
    """torchvision's segmentation models answer ``{"out": logits, "aux": ...}``; the graph takes ``out`` only.
    A user's module answering a tensor passes through."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model(images)
        logits: torch.Tensor = out["out"] if isinstance(out, dict) else out
        return logits


def train_segmentation(
    model: nn.Module,
    train_set: ImageSet,
    prep: Preprocessing,
    training: Training,
    report: Callable[[str], None] = print,
) -> None:
    """AdamW with a one-cycle schedule and per-pixel cross-entropy (``IGNORE_INDEX`` left out); logits of
    another resolution than the masks (a low-stride head) are upsampled to them.

    BatchNorm running statistics follow the weights with momentum at least ``BN_MOMENTUM``: torchvision's
    MobileNetV3 uses 0.01, tuned for hundreds of ImageNet epochs, with which a run of a few hundred steps
    evaluates on statistics of weights long gone (measured: a model that had learned the shapes still
    answered background everywhere in eval mode).
    """
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and (module.momentum or 0) < BN_MOMENTUM:
            module.momentum = BN_MOMENTUM
    epochs, batch_size, learning_rate = training.epochs, training.batch_size, training.learning_rate
    generator = torch.Generator().manual_seed(training.seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=1e-4)
    steps = epochs * -(-len(train_set) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=max(1, steps))
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_set), generator=generator).numpy()
        total, seen = 0.0, 0
        for start in range(0, len(order), batch_size):
            index = np.sort(order[start : start + batch_size])
            if len(index) < 2:  # BatchNorm cannot train on a batch of one
                continue
            images = torch.from_numpy(normalize(train_set.pixels[index], prep))
            targets = torch.from_numpy(train_set.labels[index].astype(np.int64))
            flip = torch.rand(len(index), generator=generator) < 0.5
            images[flip] = images[flip].flip(-1)
            targets[flip] = targets[flip].flip(-1)
            logits = model(images)
            if logits.shape[-2:] != targets.shape[-2:]:
                logits = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear", align_corners=False)
            loss = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
            seen += len(index)
        model.eval()
        report(f"  epoch {epoch:>3}/{epochs}  loss {total / max(1, seen):.4f}  {time.perf_counter() - started:6.1f}s")
