"""Serving figures for a model artifact, each against a baseline measured in the same run.

    python tests/bench/bench_serving.py [--model-dir dist/model] [--requests 500]

Prints:
  - cold start: a fresh Python importing the Lambda handler module (which loads and warms the model),
    against a fresh Python importing onnxruntime alone; and that process's peak RSS;
  - warm latency per request (batch 1, 1 ORT thread): raw ``session.run`` on a ready tensor (the floor),
    ``ImageClassifier.classify`` (decode + preprocess + run + top-k), and the whole Lambda handler
    (API Gateway event → Mangum → FastAPI → JSON), with the ratio of each to the floor;
  - FP32 vs INT8 is in the artifact's MODEL_CARD.md (sizes, accuracy); latency per stage is issue #3's job.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO)]

COLD_HANDLER = """
import resource, time
t = time.perf_counter()
import amaas.handlers.api as api
assert api.app.state.classifier.ready
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
COLD_BASELINE = """
import resource, time
t = time.perf_counter()
import onnxruntime
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def timed(fn: Callable[[], object], n: int) -> list[float]:
    fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cold(script: str, model_dir: Path, runs: int) -> tuple[float, float]:
    env = {**os.environ, "AMAAS_MODEL_DIR": str(model_dir), "AMAAS_ORT_THREADS": "1"}
    seconds, rss = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        s, kb = out.stdout.split()
        seconds.append(float(s))
        rss.append(int(kb) / 1024)
    return statistics.median(seconds) * 1000, statistics.median(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "dist" / "model")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--cold-runs", type=int, default=5)
    args = parser.parse_args()
    if not (args.model_dir / "manifest.json").is_file():
        sys.exit(f"no artifact at {args.model_dir}; run `make export` (or pass --model-dir)")

    from amaas.model import ImageClassifier
    from amaas.preprocessing import decode, prepare
    from tests.helpers import LambdaContext, event_image, load_event

    handler_ms, handler_rss = cold(COLD_HANDLER, args.model_dir, args.cold_runs)
    ort_ms, ort_rss = cold(COLD_BASELINE, args.model_dir, args.cold_runs)

    os.environ["AMAAS_MODEL_DIR"] = str(args.model_dir)
    os.environ["AMAAS_ORT_THREADS"] = "1"
    import amaas.handlers.api as api

    classifier = ImageClassifier(args.model_dir, threads=1)
    classifier.load()
    event = load_event("classify_png")
    image = event_image(event)
    tensor = prepare(
        [decode(image, max_pixels=40_000_000)], classifier.manifest.preprocessing, classifier.manifest.input
    )
    context = LambdaContext()
    n = args.requests

    floor = timed(lambda: classifier.predict(tensor), n)
    wrapper = timed(lambda: classifier.classify([image], 5), n)
    handler = timed(lambda: api.handler(event, context), n)
    assert json.loads(api.handler(event, context)["body"])["predictions"]

    manifest = classifier.manifest
    print(f"model: {manifest.name} {manifest.version} ({manifest.architecture}, input {list(manifest.input.shape)})")
    print(f"cold start (median of {args.cold_runs} fresh processes):")
    print(f"  import onnxruntime only        {ort_ms:8.1f} ms   peak RSS {ort_rss:6.1f} MB   (baseline)")
    print(
        f"  import handler + load + warm   {handler_ms:8.1f} ms   peak RSS {handler_rss:6.1f} MB   "
        f"({handler_ms / ort_ms:.2f}x time, +{handler_rss - ort_rss:.1f} MB)"
    )
    print(f"warm requests (n={n}, batch 1, 1 ORT thread):        p50 ms    p99 ms   p50 vs ORT run")
    base = statistics.median(floor)
    for name, samples in [
        ("ORT session.run (floor)", floor),
        ("classify(): decode+prep+run", wrapper),
        ("Lambda handler, full path", handler),
    ]:
        p50 = statistics.median(samples)
        print(f"  {name:<46} {p50:8.3f}  {percentile(samples, 0.99):8.3f}   {p50 / base:6.2f}x")


if __name__ == "__main__":
    main()
