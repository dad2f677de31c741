"""Logits to ranked, labelled predictions (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    score: float


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of a (N, classes) array, stable for large logits. A row with NaN or +-inf everywhere
    (a broken model) comes out NaN, without numpy warnings."""
    with np.errstate(invalid="ignore"):
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def top_k(logits: np.ndarray, labels: Sequence[str], k: int) -> list[list[Prediction]]:
    """The ``k`` most probable classes of each row, highest score first (ties by lower index).

    ``k`` larger than the number of classes returns every class.
    """
    probabilities = softmax(logits.astype(np.float64))
    k = min(k, probabilities.shape[1])
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return [
        [Prediction(label=labels[int(i)], index=int(i), score=float(row[i])) for i in ranked]
        for row, ranked in zip(probabilities, order, strict=True)
    ]
