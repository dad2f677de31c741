"""Serving figures for a model artifact, each against a baseline measured in the same run.

    python tests/bench/bench_serving.py [--model-dir dist/model] [--requests 500]

Prints:
  - cold start: a fresh Python importing the Lambda handler module (which loads and warms the model),
    against a fresh Python importing onnxruntime alone; and that process's peak RSS;
  - warm latency per request (batch 1, 1 ORT thread): raw ``session.run`` on a ready tensor (the floor),
    ``Model.infer`` (decode + preprocess + run + top-k), and the whole Lambda handler
    (API Gateway event → Mangum → FastAPI → JSON), with the ratio of each to the floor;
  - batching: one request of 8 images against 8 requests of one (per image);
  - explanations: occlusion at grid 8 and 16 (65 and 257 model runs) through ``amaas.explain``;
  - FP32 vs INT8 and the other export stages are in the artifact's MODEL_CARD.md.

For an ImageNet-sized model: ``amaas export --arch resnet18 --data synthetic:300 --epochs 1 --image-size 224
--max-accuracy-drop 100 --out dist/resnet18`` (accuracy is irrelevant to timing), then ``--model-dir dist/resnet18``.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
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
assert api.app.state.model.ready
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
        s, kb = out.stdout.strip().splitlines()[-1].split()  # the last line; logs come before it
        seconds.append(float(s))
        rss.append(int(kb) / 1024)
    return statistics.median(seconds) * 1000, statistics.median(rss)


# us-east-1 list prices (x86): Lambda per GB-second and per request, API Gateway REST per request.
LAMBDA_GB_SECOND = 0.0000166667
LAMBDA_REQUEST = 0.20 / 1e6
REST_API_REQUEST = 3.50 / 1e6
FULL_VCPU_MB = 1769


def print_cost(warm_ms: float, memory_mb: int = 1024) -> None:
    """Price per million requests at ``memory_mb``, from the warm handler time measured here. Lambda gives a
    function memory/1769 of a vCPU, so a single-threaded request runs that much slower than on a full core."""
    lambda_ms = warm_ms / min(1.0, memory_mb / FULL_VCPU_MB)
    billed_ms = max(1, math.ceil(lambda_ms))
    compute = billed_ms / 1000 * memory_mb / 1024 * LAMBDA_GB_SECOND * 1e6
    requests = LAMBDA_REQUEST * 1e6
    gateway = REST_API_REQUEST * 1e6
    print(
        f"cost per million requests at {memory_mb} MB: ~{lambda_ms:.2f} ms on Lambda, billed {billed_ms} ms -> "
        f"Lambda compute ${compute:.2f} + Lambda requests ${requests:.2f} + API Gateway ${gateway:.2f} "
        f"= ${compute + requests + gateway:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "dist" / "model")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--cold-runs", type=int, default=5)
    args = parser.parse_args()
    if not (args.model_dir / "manifest.json").is_file():
        sys.exit(f"no artifact at {args.model_dir}; run `make export` (or pass --model-dir)")

    from amaas import explain
    from amaas.artifact.imaging import Limits, decode
    from amaas.artifact.model import Model
    from amaas.artifact.preprocessing import prepare
    from tests.helpers import LambdaContext, event_image, load_event

    handler_ms, handler_rss = cold(COLD_HANDLER, args.model_dir, args.cold_runs)
    ort_ms, ort_rss = cold(COLD_BASELINE, args.model_dir, args.cold_runs)

    os.environ["AMAAS_MODEL_DIR"] = str(args.model_dir)
    os.environ["AMAAS_ORT_THREADS"] = "1"
    import amaas.handlers.api as api

    classifier = Model(args.model_dir, threads=1)
    classifier.load()
    event = load_event("classify_png")
    image = event_image(event)
    tensor = prepare([decode(image, Limits())], classifier.manifest.preprocessing, classifier.manifest.input)
    context = LambdaContext()
    n = args.requests

    floor = timed(lambda: classifier.predict(tensor), n)
    wrapper = timed(lambda: classifier.infer([image], k=5), n)
    handler = timed(lambda: api.handler(event, context), n)
    assert json.loads(api.handler(event, context)["body"])["predictions"]
    batch_event = {
        **event,
        "body": json.dumps({"images": [base64.b64encode(image).decode()] * 8}),
        "isBase64Encoded": False,
        "headers": {**event["headers"], "Content-Type": "application/json"},
        "multiValueHeaders": {**event["multiValueHeaders"], "Content-Type": ["application/json"]},
    }
    batched = timed(lambda: api.handler(batch_event, context), max(n // 8, 20))
    explain_runs = max(5, min(50, n // 20))
    explain8 = timed(lambda: explain.occlusion(classifier, image, grid=8), explain_runs)
    explain16 = timed(lambda: explain.occlusion(classifier, image, grid=16), explain_runs)

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
        ("Model.infer(): decode+prep+run", wrapper),
        ("Lambda handler, full path", handler),
    ]:
        p50 = statistics.median(samples)
        print(f"  {name:<46} {p50:8.3f}  {percentile(samples, 0.99):8.3f}   {p50 / base:6.2f}x")
    single, per_image = statistics.median(handler), statistics.median(batched) / 8
    print(
        f"batching: 8 images in one request {per_image:.3f} ms per image, "
        f"{single:.3f} ms alone ({per_image / single:.2f}x)"
    )
    print_cost(single)
    e8, e16 = statistics.median(explain8), statistics.median(explain16)
    print(f"explanations (n={explain_runs}, p50): grid 8 (65 model runs) {e8:.1f} ms, grid 16 (257 runs) {e16:.1f} ms")


if __name__ == "__main__":
    main()
