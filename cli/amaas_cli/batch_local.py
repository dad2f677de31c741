"""``amaas batch run``: the same per-image classification over a local folder, with no AWS at all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from amaas.artifact.model import Model
from amaas.batch.results import Item, classify, json_lines

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")


def local_items(folder: Path) -> list[Item]:
    """Every image file under ``folder`` (recursively, in sorted order), keyed by its relative path."""
    items = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        items.append(Item(key=path.relative_to(folder).as_posix(), data=path.read_bytes()))
    return items


def run_local(model: Model, folder: Path, out: Path, top_k: int) -> list[dict[str, Any]]:
    """Classifies a folder; writes a JSON per image plus summary.jsonl under ``out``."""
    results = classify(model, local_items(folder), top_k)
    out.mkdir(parents=True, exist_ok=True)
    for result in results:
        target = out / (result["key"] + ".json")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(result, indent=2) + "\n")
    (out / "summary.jsonl").write_bytes(json_lines(results))
    return results
