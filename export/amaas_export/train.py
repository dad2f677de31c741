"""Training and torch-side evaluation on in-memory ``ImageSet``s.

Batches are normalised by ``amaas.artifact.preprocessing.normalize``, the function serving uses, so the network never
sees a tensor serving could not produce. Augmentation (horizontal flip, small translation) is training-only
and happens after normalisation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from amaas.artifact.manifest import Preprocessing
from amaas.artifact.preprocessing import normalize
from amaas.artifact.tasks.classification import top1
from amaas_export.data import ImageSet

EVAL_BATCH = 256
# channels_last makes CPU convolutions ~1.5x faster at ImageNet sizes (resnet18 at 224: 14.6 → 22.7 img/s);
# on 32x32 inputs it buys nothing.
CHANNELS_LAST_FROM = 64
# Keeps logits in a sane range: softmax scores mean something and FP32/INT8/ONNX stay numerically close.
LABEL_SMOOTHING = 0.1


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    epochs: int
    loss: float
    train_top1: float
    test_top1: float
    seconds: float

    def __str__(self) -> str:
        return (
            f"epoch {self.epoch:>3}/{self.epochs}  loss {self.loss:.4f}  train top-1 {self.train_top1:.4f}  "
            f"held-out top-1 {self.test_top1:.4f}  {self.seconds:6.1f}s"
        )


def train(
    model: nn.Module,
    train_set: ImageSet,
    test_set: ImageSet,
    prep: Preprocessing,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    report: Callable[[EpochReport], None] = print,
) -> list[EpochReport]:
    """AdamW with a one-cycle schedule and label smoothing; reports loss, train and held-out top-1 after every epoch.

    The held-out figure is for watching progress only: nothing is selected or stopped on it.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=1e-4)
    channels_last = prep.crop >= CHANNELS_LAST_FROM
    if channels_last:
        model.to(memory_format=torch.channels_last)
    steps = epochs * -(-len(train_set) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=max(steps, 1))
    reports: list[EpochReport] = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        _freeze_frozen_batchnorm(model)
        total_loss, correct = 0.0, 0
        order = torch.randperm(len(train_set), generator=generator).numpy()
        for x, y in _batches(train_set, prep, order, batch_size):
            x = _augment(x, generator)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = main_logits(model(x))
            loss = F.cross_entropy(logits, y, label_smoothing=LABEL_SMOOTHING)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            schedule.step()
            total_loss += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
        entry = EpochReport(
            epoch=epoch,
            epochs=epochs,
            loss=total_loss / len(train_set),
            train_top1=correct / len(train_set),
            test_top1=top1(predict(model, test_set, prep), test_set.labels),
            seconds=time.perf_counter() - start,
        )
        report(entry)
        reports.append(entry)
    model.to(memory_format=torch.contiguous_format)
    model.eval()
    return reports


def main_logits(output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The logits of a model that, in training mode, also returns auxiliary ones (torchvision's GoogLeNet and
    Inception v3 with ``aux_logits``, and user modules like them): the main logits come first. Exported models
    run in eval mode, where these return the logits alone."""
    if isinstance(output, tuple):
        return output[0]
    return output


def _freeze_frozen_batchnorm(model: nn.Module) -> None:
    """Keeps the running statistics of frozen BatchNorm layers frozen too (transfer learning)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in module.parameters()
        ):
            module.eval()


@torch.inference_mode()
def predict(model: nn.Module, images: ImageSet, prep: Preprocessing) -> np.ndarray:
    """Logits for every image, as a float32 array (N, classes)."""
    model.eval()
    outputs = [model(x).numpy() for x, _ in _batches(images, prep, np.arange(len(images)), EVAL_BATCH)]
    return np.concatenate(outputs)


def _batches(
    images: ImageSet, prep: Preprocessing, order: np.ndarray, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        x = torch.from_numpy(normalize(images.pixels[index], prep))
        yield x, torch.from_numpy(images.labels[index])


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to 1/16 of the side (reflect-padded)."""
    flip = torch.rand(len(x), generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    pad = max(1, x.shape[-1] // 16)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dx, dy = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=generator))
    return padded[..., dy : dy + x.shape[-2], dx : dx + x.shape[-1]]
