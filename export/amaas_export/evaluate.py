"""Held-out evaluation of an ONNX file through the same session setup and preprocessing serving uses."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from amaas.manifest import Preprocessing, TensorSpec
from amaas.model import create_session
from amaas.preprocessing import model_input
from amaas_export.data import ImageSet

EVAL_BATCH = 256


def onnx_predict(path: Path, images: ImageSet, prep: Preprocessing, spec: TensorSpec) -> np.ndarray:
    """Logits (N, classes) for every image in ``images``, fed as the model's input ``spec`` wants."""
    session = create_session(path, threads=os.cpu_count() or 1)
    outputs = [
        session.run(None, {spec.name: model_input(images.pixels[start : start + EVAL_BATCH], prep, spec)})[0]
        for start in range(0, len(images), EVAL_BATCH)
    ]
    return np.concatenate(outputs)


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose highest logit is the label."""
    return float((logits.argmax(axis=1) == labels).mean())
