"""Golden samples: a few held-out images the export ships inside the artifact with the served model's own
answers, so a new deployment can be checked against its model before any user traffic reaches it (the
pre-traffic hook, ``amaas.rollout``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

GOLDEN_DIR = "golden"
GOLDEN_FILE = f"{GOLDEN_DIR}/golden.json"
SCORE_TOLERANCE = 0.02


@dataclass(frozen=True)
class GoldenSample:
    """One held-out image and the served model's answer to it: its top class and score (for a dense task, the
    class covering most of the image and the fraction it covers), plus the task's own expected ``answer``
    (segmentation: ``{"mask": <palette PNG file>, "min_agreement": 0.98}``)."""

    file: str
    label: str
    index: int
    score: float
    answer: Mapping[str, Any] = field(default_factory=dict)


def read_golden(model_dir: Path) -> list[GoldenSample]:
    document = json.loads((model_dir / GOLDEN_FILE).read_text())
    return [
        GoldenSample(s["file"], s["label"], int(s["index"]), float(s["score"]), s.get("answer") or {})
        for s in document["samples"]
    ]


def write_golden(model_dir: Path, samples: list[GoldenSample]) -> None:
    (model_dir / GOLDEN_DIR).mkdir(exist_ok=True)
    document = {
        "score_tolerance": SCORE_TOLERANCE,
        "samples": [{k: v for k, v in asdict(s).items() if v or k != "answer"} for s in samples],
    }
    (model_dir / GOLDEN_FILE).write_text(json.dumps(document, indent=2) + "\n")
