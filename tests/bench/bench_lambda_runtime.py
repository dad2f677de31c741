"""Cold and warm figures of a built function under the local Lambda runtime (`amaas lambda`), and where its
init spends its time.

    python tests/bench/bench_lambda_runtime.py [--build-dir .aws-sam/build] [--function ApiFunction]
        [--event tests/events/classify_png.json] [--cold 5] [--warm 200] [--top 15]

Prints:
  - cold start: process spawn to the first response, over ``--cold`` fresh sandboxes, with REPORT's Init
    Duration and Duration of that first invocation;
  - warm: REPORT Duration and the caller's round trip over ``--warm`` invocations of one sandbox (p50, p90);
  - the ``--top`` imports by cumulative time, from ``python3.13 -X importtime`` in the same sandbox layout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "cli"), str(REPO / "functions")]

from amaas_cli.lambda_local import LocalLambda  # noqa: E402 - after the path set-up above


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", type=Path, default=REPO / ".aws-sam" / "build")
    parser.add_argument("--function", default="ApiFunction")
    parser.add_argument("--event", type=Path, default=REPO / "tests" / "events" / "classify_png.json")
    parser.add_argument("--cold", type=int, default=5)
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    event = json.loads(args.event.read_text())

    colds, inits, firsts = [], [], []
    for _ in range(args.cold):
        with LocalLambda(args.build_dir, args.function) as function:
            process = function.start()
            result = function.invoke(event)
            colds.append((time.monotonic() - process.spawned) * 1000)
            inits.append(result.report.init_ms or 0.0)
            firsts.append(result.report.duration_ms)
            result.check()
    print(f"cold start, spawn to first response: median {statistics.median(colds):.0f} ms "
          f"(min {min(colds):.0f}, max {max(colds):.0f}) over {args.cold} sandboxes")  # fmt: skip
    print(f"  Init Duration median {statistics.median(inits):.0f} ms, "
          f"first Duration median {statistics.median(firsts):.1f} ms")  # fmt: skip

    with LocalLambda(args.build_dir, args.function) as function:
        function.invoke(event).check()
        durations, trips = [], []
        for _ in range(args.warm):
            started = time.perf_counter()
            result = function.invoke(event)
            trips.append((time.perf_counter() - started) * 1000)
            durations.append(result.report.duration_ms)
        memory = result.report.max_memory_mb
    print(f"warm, {args.warm} invocations: Duration p50 {percentile(durations, 0.5):.2f} ms, "
          f"p90 {percentile(durations, 0.9):.2f} ms; round trip p50 {percentile(trips, 0.5):.2f} ms; "
          f"Max Memory Used {memory} MB")  # fmt: skip

    with LocalLambda(args.build_dir, args.function, python_options=("-X", "importtime")) as function:
        logs = function.invoke(event).logs
    imports = []
    for line in logs:
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
            imports.append((int(cumulative), name))
    # awslambdaric imports the handler module with importlib.import_module, which -X importtime does not time:
    # the handler module's own line is missing, and the imports it makes show at the top level.
    print(f"top {args.top} imports by cumulative time (python -X importtime, same layout; the handler module "
          "itself is not timed, Init Duration covers it):")  # fmt: skip
    for cumulative, name in sorted(imports, reverse=True)[: args.top]:
        print(f"  {cumulative / 1000:8.1f} ms  {name}")


if __name__ == "__main__":
    main()
