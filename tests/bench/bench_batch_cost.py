"""What a batch job costs and how long it takes, for 1M and 10M images, from the per-image time measured here.

    python tests/bench/bench_batch_cost.py [--model-dir dist/model] [--batch 100] [--concurrency 100 1000]

Measures, for two kinds of image (32 px PNGs, as the CIFAR-sized fixture model takes them, and 1024x768 JPEG
photographs of about 100 KB), the job function's own handler (``amaas.handlers.batch_job``) classifying
Distributed Map item batches of ``--batch`` images against moto's in-process S3 (listing-shaped items: read
each image, check for an existing result, write a result per image and the batch's summary part), one ONNX
Runtime thread, on one core: the median per-image wall time of three batches. moto's S3 runs in this process
and takes CPU that real S3 does not, so the figure errs high. Also the function's cold init (import + model
load), paid once per concurrent environment.

Then prints, per kind of image, a markdown table of Lambda GB-seconds and requests, Step Functions state
transitions (one per child execution started plus one per state it runs; retries would add one each, none
counted) and S3 requests, priced with the list prices below, and the throughput and time at each concurrency
(concurrency x images per second of one function, one vCPU per environment at 1,769 MB as here, but at most
3,500 images/s: S3's PUT rate for one prefix before it repartitions).
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO)]

# us-east-1 list prices (USD) as published on aws.amazon.com/{lambda,step-functions,s3}/pricing, as known on
# 2025-06-01 (not re-read from this offline machine; pass --prices to override with a JSON object).
PRICES_AS_OF = "2025-06-01"
PRICES = {
    "lambda_gb_s_x86": 0.0000166667,
    "lambda_gb_s_arm": 0.0000133334,
    "lambda_request": 0.20 / 1e6,
    "sfn_transition": 0.025 / 1e3,
    "s3_get": 0.0004 / 1e3,
    "s3_put_list": 0.005 / 1e3,
}
MEMORY_MB = 1769  # template.yaml's BatchMemorySize default: one vCPU
TIMEOUT_S = 300  # BatchJobFunction's Timeout
PARENT_TRANSITIONS = 4  # CheckScope, Settings, Route, the Map state
CHILD_TRANSITIONS = 2  # the child execution started, its Classify task
SIZES = (1_000_000, 10_000_000)
# S3's request rates per partitioned prefix (it repartitions under sustained load, but starts here): a job writes
# its results under one output prefix, so this caps its rate until S3 scales out
S3_PUTS_PER_S = 3500


def images(kind: str, n: int) -> list[bytes]:
    from PIL import Image

    from amaas_export.data import synthetic

    out = []
    for i in range(n):
        picture = synthetic.sample(synthetic.LABELS[i % len(synthetic.LABELS)], variant=i)
        buffer = io.BytesIO()
        if kind == "photo":
            noise = Image.effect_noise((1024, 768), 24).convert("RGB")
            Image.blend(picture.resize((1024, 768), Image.Resampling.BICUBIC), noise, 0.15).save(
                buffer, "JPEG", quality=90
            )
        else:
            picture.save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def measure(model_dir: Path, kind: str, batch: int) -> dict[str, float]:
    """Per-image handler time (ms), per-image classification alone (ms), cold init (s), mean image bytes."""
    import boto3
    from moto import mock_aws

    os.environ.update(
        AWS_DEFAULT_REGION="us-east-1", AMAAS_MODEL_DIR=str(model_dir), AMAAS_S3_BUCKETS="photos", AMAAS_ORT_THREADS="1"
    )
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    data = images(kind, batch)
    with mock_aws():
        from amaas import storage

        storage._client.cache_clear()
        s3 = boto3.client("s3")
        for bucket in ("photos", "results"):
            s3.create_bucket(Bucket=bucket)
        items = []
        for i, body in enumerate(data):
            etag = s3.put_object(Bucket="photos", Key=f"in/{i:05d}.img", Body=body)["ETag"]
            items.append({"Key": f"in/{i:05d}.img", "Etag": etag, "Size": len(body)})
        sys.modules.pop("amaas.handlers.batch_job", None)
        module = importlib.import_module("amaas.handlers.batch_job")
        from tests.helpers import LambdaContext

        per_image = []
        for run in range(4):  # the first warms caches and is not counted
            event = {
                "Items": items,
                "BatchInput": {
                    "job": f"bench{run}",
                    "source": {"bucket": "photos", "scope": "in/", "keys": "literal"},
                    "output": {"bucket": "results", "prefix": f"jobs/bench{run}/"},
                },
            }
            t = time.perf_counter()
            counts = module.handler(json.loads(json.dumps(event)), LambdaContext())
            assert counts["classified"] == batch, counts
            per_image.append((time.perf_counter() - t) * 1000 / batch)
        from amaas.batch.results import Item, classify

        compute = []
        for _ in range(3):
            t = time.perf_counter()
            classify(module.model, [Item(f"{i}", body) for i, body in enumerate(data)], 3)
            compute.append((time.perf_counter() - t) * 1000 / batch)
    return {
        "handler_ms": statistics.median(per_image[1:]),
        "compute_ms": statistics.median(compute),
        "init_s": cold_init(),
        "bytes": sum(map(len, data)) / len(data),
    }


def cold_init() -> float:
    """Seconds for a fresh Python to import the job handler module (which loads the model), as a cold start does."""
    script = "import time; t = time.perf_counter(); import amaas.handlers.batch_job; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=os.environ)
    return float(out.stdout.strip().splitlines()[-1])


def costs(
    n: int, per_image_ms: float, init_s: float, batch: int, concurrency: int, prices: dict[str, float]
) -> dict[str, float]:
    gb = MEMORY_MB / 1024
    batches = math.ceil(n / batch)
    gb_s = (n * per_image_ms / 1000 + min(concurrency, batches) * init_s) * gb
    transitions = PARENT_TRANSITIONS + CHILD_TRANSITIONS * batches
    gets = 2 * n  # the image, and the check for an existing result (billed even when there is none)
    puts = n + batches + math.ceil(n / 1000) + 3  # results, summary parts, listing pages, result writer files
    rate = min(concurrency * 1000 / per_image_ms, S3_PUTS_PER_S)  # images per second
    return {
        "gb_s": gb_s,
        "lambda_x86": gb_s * prices["lambda_gb_s_x86"] + batches * prices["lambda_request"],
        "lambda_arm": gb_s * prices["lambda_gb_s_arm"] + batches * prices["lambda_request"],
        "requests": batches,
        "transitions": transitions,
        "sfn": transitions * prices["sfn_transition"],
        "s3": gets * prices["s3_get"] + puts * prices["s3_put_list"],
        "rate": rate,
        "capped": float(rate == S3_PUTS_PER_S),
        "hours": (n / rate + init_s) / 3600,
    }


def table(figures: dict[str, float], batch: int, concurrencies: list[int], prices: dict[str, float]) -> str:
    rows = [
        "| images | Lambda GB-s | Lambda $ (x86 / arm64) | SFN transitions ($) | S3 requests $ | total $ (x86) | "
        + " | ".join(f"time at {c:,} concurrent" for c in concurrencies)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(concurrencies),
    ]
    for n in SIZES:
        c = costs(n, figures["handler_ms"], figures["init_s"], batch, concurrencies[0], prices)
        times = [costs(n, figures["handler_ms"], figures["init_s"], batch, k, prices) for k in concurrencies]
        total = c["lambda_x86"] + c["sfn"] + c["s3"]
        rows.append(
            f"| {n:,} | {c['gb_s']:,.0f} | {c['lambda_x86']:,.2f} / {c['lambda_arm']:,.2f} | "
            f"{c['transitions']:,.0f} ({c['sfn']:,.2f}) | {c['s3']:,.2f} | {total:,.2f} | "
            + " | ".join(
                f"{t['hours'] * 60:,.1f} min ({t['rate']:,.0f} img/s{', S3-capped' if t['capped'] else ''})"
                for t in times
            )
            + " |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "dist" / "model")
    parser.add_argument("--batch", type=int, default=100, help="images per job function invocation (JobBatchSize)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[10, 100, 1000], help="JobMaxConcurrency values")
    parser.add_argument("--prices", type=json.loads, default={}, help="JSON object overriding list prices")
    args = parser.parse_args()
    prices = {**PRICES, **args.prices}
    print(f"prices: us-east-1 list prices as of {PRICES_AS_OF}: {json.dumps(prices)}")
    print(f"job function: {MEMORY_MB} MB (one vCPU), batches of {args.batch}, 1 ONNX Runtime thread; cores here: "
          f"{len(os.sched_getaffinity(0))}, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    for kind, label in (("cifar", "32 px PNG"), ("photo", "1024x768 JPEG photo")):
        f = measure(args.model_dir, kind, args.batch)
        print(f"\n{label} (~{f['bytes'] / 1024:,.0f} KiB): {f['handler_ms']:.2f} ms per image through the job handler "
              f"({f['compute_ms']:.2f} ms of it decode + model), cold init {f['init_s']:.2f} s; a batch of "
              f"{args.batch} takes {f['handler_ms'] * args.batch / 1000:.1f} s of the {TIMEOUT_S} s timeout "
              f"(at most {int(TIMEOUT_S * 500 / f['handler_ms']):,} images per batch with 2x headroom)\n")  # fmt: skip
        print(table(f, args.batch, args.concurrency, prices))


if __name__ == "__main__":
    main()
