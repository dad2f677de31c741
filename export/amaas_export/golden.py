"""Writes the golden samples into an artifact: per class, the first held-out image the served model gets
right, with the top-1 label and score the served model gives it through the serving code path (PNG decode,
preprocessing, ONNX Runtime, softmax)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from amaas.imaging import Limits, decode_pixels
from amaas.manifest import Preprocessing, TensorSpec
from amaas.model import create_session
from amaas.postprocessing import top_k
from amaas.preprocessing import model_input
from amaas.rollout import GOLDEN_DIR, GoldenSample, write_golden
from amaas_export.data import ImageSet

MAX_SAMPLES = 8
# Confident samples keep the check meaningful across CPUs: INT8 kernels differ slightly between instruction
# sets, which moves a 0.9 score by far less than the tolerance but could flip a near-tie.
CONFIDENT = 0.6


def golden_samples(
    out_dir: Path, model_path: Path, spec: TensorSpec, prep: Preprocessing, labels: tuple[str, ...], held_out: ImageSet
) -> list[GoldenSample]:
    session = create_session(model_path, threads=1)

    def answer(png: bytes) -> tuple[int, float]:
        pixels = decode_pixels(png, prep, Limits())
        logits = session.run(None, {spec.name: model_input(pixels[None], prep, spec)})[0]
        best = top_k(logits, labels, 1)[0][0]
        return best.index, best.score

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
    for i, (png, index, score) in enumerate(chosen.values()):
        name = f"{GOLDEN_DIR}/{i}-{labels[index]}.png".replace(" ", "_")
        (out_dir / name).write_bytes(png)
        samples.append(GoldenSample(file=name, label=labels[index], index=index, score=round(score, 6)))
    write_golden(out_dir, samples)
    return samples
