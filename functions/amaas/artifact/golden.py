"""Golden samples: a few held-out images the export ships inside the artifact with the served model's own
answers, so a new deployment can be checked against its model before any user traffic reaches it (the
pre-traffic hook, ``amaas.rollout``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

GOLDEN_DIR = "golden"
GOLDEN_FILE = f"{GOLDEN_DIR}/golden.json"
SCORE_TOLERANCE = 0.02


@dataclass(frozen=True)
class GoldenSample:
    file: str
    label: str
    index: int
    score: float


def read_golden(model_dir: Path) -> list[GoldenSample]:
    document = json.loads((model_dir / GOLDEN_FILE).read_text())
    return [GoldenSample(s["file"], s["label"], int(s["index"]), float(s["score"])) for s in document["samples"]]


def write_golden(model_dir: Path, samples: list[GoldenSample]) -> None:
    (model_dir / GOLDEN_DIR).mkdir(exist_ok=True)
    document = {"score_tolerance": SCORE_TOLERANCE, "samples": [asdict(s) for s in samples]}
    (model_dir / GOLDEN_FILE).write_text(json.dumps(document, indent=2) + "\n")
