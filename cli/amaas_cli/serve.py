"""Local serving: ``amaas serve`` runs the Lambda app under uvicorn on 127.0.0.1, and ``amaas demo`` also
sends it a few sample images over real HTTP and prints what comes back."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

from amaas import memory
from amaas.api.app import create_app
from amaas.errors import ModelUnavailableError
from amaas.observability import muted
from amaas.settings import ENV_MODEL_DIR, Settings

LOCAL_MODEL_DIR = Path("dist/model")


def local_settings(model_dir: Path | None, threads: int | None) -> Settings:
    """Settings for a local server: like Lambda's, except that the model defaults to ``dist/model``."""
    settings = Settings.from_env(model_dir=model_dir, ort_threads=threads)
    if model_dir is None and not os.environ.get(ENV_MODEL_DIR):
        settings = replace(settings, model_dir=LOCAL_MODEL_DIR)
    return settings


def serve(model_dir: Path | None, *, host: str, port: int, threads: int | None) -> int:
    server = _server(local_settings(model_dir, threads), host, port, access_log=True)
    if server is None:
        return 2
    print(f"serving {_url(host, port)}  (Ctrl-C to stop)")
    server.run()
    return 0


def demo(model_dir: Path | None, *, host: str, port: int, threads: int | None, samples: Path) -> int:
    server = _server(local_settings(model_dir, threads), host, port, access_log=False)
    if server is None:
        return 2
    if server.config.app.state.model.manifest.task == "detection":
        from amaas_cli import demo_detect

        paths = demo_detect.write_scenes(samples)
        target: Any = demo_detect.detect_samples
    else:
        paths, target = write_samples(samples), _classify_samples
    client = threading.Thread(target=target, args=(server, _url(host, port), paths), daemon=True)
    client.start()
    server.run()
    return 0


def write_samples(folder: Path) -> list[tuple[Path, str]]:
    """One synthetic image per class: PNGs at the native 32 px, JPEGs upscaled to 96 px (the server resizes)."""
    from PIL import Image

    from amaas_export.data import synthetic

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, label in enumerate(synthetic.LABELS):
        image = synthetic.sample(label, variant=0)
        if i % 2:
            path = folder / f"{label}.jpg"
            image.resize((96, 96), Image.Resampling.BICUBIC).save(path, quality=95)
        else:
            path = folder / f"{label}.png"
            image.save(path)
        written.append((path, label))
    return written


def _server(settings: Settings, host: str, port: int, *, access_log: bool) -> Any:
    import uvicorn

    memory.configure_allocator()
    app = create_app(settings)
    try:
        app.state.model.load()
    except ModelUnavailableError as exc:
        print(f"amaas: cannot serve {settings.model_dir}: {exc.message}", file=sys.stderr)
        return None
    manifest = app.state.model.manifest
    print(
        f"model {manifest.name} version {manifest.version} ({len(manifest.labels)} classes) from {settings.model_dir}"
    )
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, access_log=access_log, log_level="warning"))


def _url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def wait_started(server: Any) -> bool:
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(server.started)


def _classify_samples(server: Any, url: str, samples: list[tuple[Path, str]]) -> None:
    if not wait_started(server):
        return
    print(f"\nPOST {url}/v1/classify?top_k=3 with {len(samples)} sample images:\n")
    print(f"{'image':<22} {'expected':<10} {'top-3 (softmax score)':<54} {'server ms':>9}")
    with muted():
        correct = _print_predictions(url, samples)
    print(f"\n{correct}/{len(samples)} top-1 correct. The server keeps running at {url} (Ctrl-C to stop). Try:")
    png = next(p for p, _ in samples if p.suffix == ".png")
    print(f"  curl -s -H 'Content-Type: image/png' --data-binary @{png} '{url}/v1/classify?top_k=3'")
    print(f"  curl -s {url}/v1/health")
    print("From here on, the server's JSON logs and metrics (CloudWatch EMF) follow, as Lambda would write them.\n")


def _print_predictions(url: str, samples: list[tuple[Path, str]]) -> int:
    correct = 0
    for path, expected in samples:
        media_type = "image/png" if path.suffix == ".png" else "image/jpeg"
        request = urllib.request.Request(  # noqa: S310 - an http:// URL we built for our own loopback server
            f"{url}/v1/classify?top_k=3", data=path.read_bytes(), headers={"Content-Type": media_type}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - our own loopback server
                body = json.load(response)
        except urllib.error.URLError as exc:
            print(f"{path.name:<22} request failed: {exc}")
            continue
        ranked = "  ".join(f"{p['label']} ({p['score']:.2f})" for p in body["predictions"])
        server_ms = body["preprocess_ms"] + body["inference_ms"]
        correct += body["predictions"][0]["label"] == expected
        print(f"{path!s:<22} {expected:<10} {ranked:<54} {server_ms:>9.2f}")
    return correct
