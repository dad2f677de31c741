"""``amaas demo`` for a detector: a few held-out synthetic scenes, each sent to ``POST /v1/detect`` over real
HTTP, with the boxes found printed beside the true ones and drawn into ``<samples>/detections.png``."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SCENES = 6
SIDE = 160  # drawn larger than the model's input: the server stretches it down and the boxes back up


def write_scenes(folder: Path) -> list[tuple[Path, str]]:
    """PNG scenes with their true objects (``label [x0, y0, x1, y1]``, one per line) as the expected text."""
    from PIL import Image

    from amaas_export.data import scenes

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(SCENES):
        scene = scenes.scene(i, split="sample", size=SIDE)
        path = folder / f"scene-{i}.png"
        Image.fromarray(scene.image).save(path)
        truth = [f"{scenes.LABELS[c]} {_box(b)}" for b, c in zip(scene.boxes.tolist(), scene.labels, strict=True)]
        written.append((path, "; ".join(truth)))
    return written


def detect_samples(server: Any, url: str, samples: list[tuple[Path, str]]) -> None:
    from amaas.observability import muted
    from amaas_cli.serve import wait_started

    if not wait_started(server):
        return
    print(f"\nPOST {url}/v1/detect with {len(samples)} synthetic scenes ({SIDE}x{SIDE}):\n")
    answers = []
    with muted():
        for path, truth in samples:
            request = urllib.request.Request(  # noqa: S310 - an http:// URL we built for our own loopback server
                f"{url}/v1/detect", data=path.read_bytes(), headers={"Content-Type": "image/png"}
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - our loopback server
                    body = json.load(response)
            except urllib.error.URLError as exc:
                print(f"{path.name}: request failed: {exc}")
                continue
            found = "; ".join(f"{d['label']} {d['score']:.2f} {_box(d['box'])}" for d in body["detections"])
            print(f"{path}  ({body['preprocess_ms'] + body['inference_ms']:.1f} ms on the server)")
            print(f"  true:  {truth}\n  found: {found or 'nothing above the score threshold'}")
            answers.append((path, body["detections"]))
    picture = samples[0][0].parent / "detections.png"
    _draw(answers, picture)
    print(f"\nThe boxes found are drawn in {picture}. The server keeps running at {url} (Ctrl-C to stop). Try:")
    example = samples[0][0]
    print(f"  curl -s -H 'Content-Type: image/png' --data-binary @{example} '{url}/v1/detect?score_threshold=0.5'")
    print(f"  open {url}/ for the playground, which draws the boxes")
    print("From here on, the server's JSON logs and metrics (CloudWatch EMF) follow, as Lambda would write them.\n")


def _box(box: list[float]) -> str:
    return "[" + ", ".join(f"{v:.0f}" for v in box) + "]"


def _draw(answers: list[tuple[Path, list[dict[str, Any]]]], path: Path) -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    tiles = []
    for image_path, detections in answers:
        image = Image.open(image_path).convert("RGB")
        draw = ImageDraw.Draw(image)
        for d in detections:
            draw.rectangle(d["box"], outline=(230, 0, 0), width=2)
            draw.text((d["box"][0] + 2, d["box"][1] + 1), f"{d['label']} {d['score']:.2f}", fill=(230, 0, 0))
        tiles.append(np.asarray(image))
    if tiles:
        Image.fromarray(np.concatenate(tiles, 1)).save(path)
