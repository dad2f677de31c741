"""Held-out evaluation of an ONNX file through the same session setup and preprocessing serving uses."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from amaas.manifest import Preprocessing
from amaas.model import create_session
from amaas.preprocessing import normalize
from amaas_export.data import ImageSet

EVAL_BATCH = 256


def onnx_predict(path: Path, images: ImageSet, prep: Preprocessing, input_name: str) -> np.ndarray:
    """Logits (N, classes) for every image in ``images``."""
    session = create_session(path, threads=os.cpu_count() or 1)
    outputs = [
        session.run(None, {input_name: normalize(images.pixels[start : start + EVAL_BATCH], prep)})[0]
        for start in range(0, len(images), EVAL_BATCH)
    ]
    return np.concatenate(outputs)
