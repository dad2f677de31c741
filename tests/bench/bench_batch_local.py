"""`amaas batch run DIR --workers N` throughput, against --workers 1 in the same run.

    python tests/bench/bench_batch_local.py [--model-dir dist/model] [--images 2000] [--kind cifar|photo]
                                            [--workers 1 2] [--rounds 3]

Writes a folder of ``--images`` images (32 px PNGs, or 1024x768 JPEG photographs), then runs the real command
(a fresh ``amaas`` process each time, model loads and worker start-up included) for each worker count, in
alternating rounds so a busy machine weighs on both alike; prints each run's wall time and images per second,
the median per worker count, and each median's ratio to the first worker count's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO)]

from tests.bench.bench_batch_cost import images  # noqa: E402 - after the path above


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "dist" / "model")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--kind", choices=("cifar", "photo"), default="cifar")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    amaas = shutil.which("amaas", path=str(Path(sys.executable).parent))
    assert amaas, "amaas is not installed in this environment (pip install -e .)"

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        distinct = images(args.kind, min(args.images, 100))
        for i in range(args.images):
            (folder / f"{i:06d}.{'jpg' if args.kind == 'photo' else 'png'}").write_bytes(distinct[i % len(distinct)])
        print(f"{args.images:,} {args.kind} images; cores here: {len(os.sched_getaffinity(0))}, "
              f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        walls: dict[int, list[float]] = {n: [] for n in args.workers}
        for round_ in range(args.rounds):
            for n in args.workers:
                out = Path(tmp) / f"out-{n}-{round_}"
                command = [amaas, "batch", "run", str(folder), "--model-dir", str(args.model_dir), "--out", str(out)]
                started = time.perf_counter()
                subprocess.run([*command, "--workers", str(n)], check=True, capture_output=True)
                walls[n].append(time.perf_counter() - started)
                print(f"  round {round_ + 1}, --workers {n}: {walls[n][-1]:.2f} s, "
                      f"{args.images / walls[n][-1]:,.0f} images/s")  # fmt: skip
                shutil.rmtree(out)
        base = statistics.median(walls[args.workers[0]])
        for n in args.workers:
            median = statistics.median(walls[n])
            print(f"--workers {n}: median {median:.2f} s, {args.images / median:,.0f} images/s, "
                  f"throughput x{base / median:.2f} of --workers {args.workers[0]}")  # fmt: skip


if __name__ == "__main__":
    main()
