"""Training a torchvision detector on an in-memory detection ``ImageSet`` (targets packed as
``amaas_export.data.detection.pack`` does): AdamW, linear warm-up then cosine decay, horizontal flips.

Batches are normalised by ``amaas.artifact.preprocessing.normalize``, the function serving uses, and the
detector's own transform is made an identity (``detection_models.sized``): training sees exactly the tensors
the exported graph is fed."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from amaas.artifact.manifest import Preprocessing
from amaas.artifact.preprocessing import normalize
from amaas_export.config import Training
from amaas_export.data import ImageSet
from amaas_export.data.detection import unpack

WARMUP_STEPS = 30


def train_detector(
    detector: nn.Module,
    images: ImageSet,
    prep: Preprocessing,
    training: Training,
    report: Callable[[str], None],
) -> None:
    """Trains ``detector`` in place for ``training.epochs`` passes over ``images``, reporting the loss per epoch."""
    epochs, batch_size, learning_rate, seed = (
        training.epochs,
        training.batch_size,
        training.learning_rate,
        training.seed,
    )
    generator = np.random.default_rng(seed)
    torch.manual_seed(seed)
    objects = unpack(images.labels)
    trainable = [p for p in detector.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=1e-4)
    steps_per_epoch = max(1, math.ceil(len(images) / batch_size))
    total = epochs * steps_per_epoch
    step = 0
    detector.train()
    for epoch in range(1, epochs + 1):
        started, losses = time.perf_counter(), []
        for batch in np.array_split(generator.permutation(len(images)), steps_per_epoch):
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(step, total, learning_rate)
            pixels, targets = _batch(normalize(images.pixels[batch], prep), [objects[i] for i in batch], generator)
            loss = sum(detector(pixels, targets).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
        report(f"epoch {epoch:>3}/{epochs}  loss {np.mean(losses):.4f}  {time.perf_counter() - started:6.1f}s")
    detector.eval()


def _learning_rate(step: int, total: int, peak: float) -> float:
    if step < WARMUP_STEPS:
        return peak * (step + 1) / WARMUP_STEPS
    progress = min(1.0, (step - WARMUP_STEPS) / max(1, total - WARMUP_STEPS))
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def _batch(
    tensors: np.ndarray, objects: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Normalised CHW tensors, half of them mirrored with their boxes."""
    images, targets = [], []
    for tensor, (box_array, label_array) in zip(tensors, objects, strict=True):
        image = torch.from_numpy(tensor)
        boxes, labels = torch.from_numpy(box_array), torch.from_numpy(label_array)
        if rng.random() < 0.5:
            width = image.shape[-1]
            image = image.flip(-1)
            boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)
        images.append(image)
        targets.append({"boxes": boxes.reshape(-1, 4), "labels": labels})
    return images, targets
