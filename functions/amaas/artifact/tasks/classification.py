"""Classification: one label per image. The model sees the centre crop of the image (torchvision's eval
transform) and answers logits ``[N, classes]``; its answer is the top-k softmax classes, its quality top-1."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from amaas.artifact.imaging import Decoded, Limits, decode_sized
from amaas.artifact.manifest import Manifest
from amaas.errors import ManifestError


@dataclass(frozen=True)
class Prediction:
    """One class for one image: the single form of a prediction, from the model to every answer."""

    label: str
    index: int
    score: float

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "index": self.index, "score": round(self.score, 6)}


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


def top1(logits: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of rows whose highest logit is the true class: the quality every export gate compares."""
    return float((logits.argmax(axis=1) == truth).mean())


class Classification:
    """The classification task as the model holds it: how an image becomes its input, how its output
    becomes answers, and how answers are scored."""

    name: str = "classification"
    metric: str = "top1"

    def check(self, manifest: Manifest) -> None:
        """The logits output must have one column per label."""
        classes = manifest.output.shape[-1] if manifest.output.shape else -1
        if classes not in (-1, len(manifest.labels)):
            raise ManifestError(f"manifest lists {len(manifest.labels)} labels but the model outputs {classes} classes")

    def pixels(self, data: bytes, manifest: Manifest, limits: Limits) -> Decoded:
        """The centre crop the model takes, as uint8 (crop, crop, 3) RGB."""
        return decode_sized(data, manifest.preprocessing, limits)

    def decode(
        self, outputs: Sequence[np.ndarray], manifest: Manifest, sizes: Sequence[tuple[int, int]], **options: Any
    ) -> list[Any]:
        """Each image's ``k`` most probable classes (``k=``, required), from the model's logits (its first
        output), as ``list[list[Prediction]]``."""
        return top_k(outputs[0], manifest.labels, int(options["k"]))

    def to_json(self, answer: Any, manifest: Manifest) -> dict[str, Any]:
        return {"predictions": [p.to_json() for p in answer]}


CLASSIFICATION = Classification()
