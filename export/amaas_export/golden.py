"""Writes the golden samples into an artifact: per class, the first held-out image the served model gets
right, with the top-1 label and score the served model gives it through the serving code path: the same
``Model`` the server runs (PNG decode, the task's geometry, preprocessing, ONNX Runtime, its answers)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from amaas.artifact.golden import GOLDEN_DIR, GoldenSample, write_golden
from amaas.artifact.model import Model
from amaas_export.data import ImageSet

MAX_SAMPLES = 8
# Confident samples keep the check meaningful across CPUs: INT8 kernels differ slightly between instruction
# sets, which moves a 0.9 score by far less than the tolerance but could flip a near-tie.
CONFIDENT = 0.6


def golden_samples(out_dir: Path, model: Model, held_out: ImageSet) -> list[GoldenSample]:
    manifest = model.manifest

    def answer(png: bytes) -> tuple[int, float]:
        (ranked,) = model.infer([png], k=1).results
        return ranked[0].index, ranked[0].score

    chosen: dict[int, tuple[bytes, int, float]] = {}
    for threshold in (CONFIDENT, 0.0):  # confident ones first; any correct one for classes without
        for pixels, label in zip(held_out.pixels, held_out.labels, strict=True):
            if int(label) in chosen or len(chosen) == MAX_SAMPLES:
                continue
            buffer = io.BytesIO()
            Image.fromarray(np.asarray(pixels)).save(buffer, "PNG")
            index, score = answer(buffer.getvalue())
            if index == int(label) and score >= threshold:
                chosen[int(label)] = (buffer.getvalue(), index, score)
    samples = []
    (out_dir / GOLDEN_DIR).mkdir(exist_ok=True)
    labels = manifest.labels
    for i, (png, index, score) in enumerate(chosen.values()):
        name = f"{GOLDEN_DIR}/{i}-{labels[index]}.png".replace(" ", "_")
        (out_dir / name).write_bytes(png)
        samples.append(GoldenSample(file=name, label=labels[index], index=index, score=round(score, 6)))
    write_golden(out_dir, samples)
    return samples
