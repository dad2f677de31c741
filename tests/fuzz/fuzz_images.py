"""A hostile-image campaign against the decoder, with the goal figures as PASS/FAIL lines.

    python tests/fuzz/fuzz_images.py --count 10000 --seed 0 [--jobs 2]          # in-process target (make fuzz)
    python tests/fuzz/fuzz_images.py --target mypkg.decoder:decode_for_model     # another decoder
    python tests/fuzz/fuzz_images.py --from-dir /tmp/hostile                      # a written corpus
    python tests/fuzz/fuzz_images.py --http http://127.0.0.1:8000/v1/classify --server-pid 1234 \\
        --count 2000 --max-seconds 600                                           # a running server

Goal figures: over >= 10,000 hostile images of <= 4.5 MB, no 5xx and no hang; for every image, peak RSS
growth <= 300 MB and decode CPU <= 2 s on one core. A crash (the worker killed or dead) counts as a 5xx:
on Lambda an out-of-memory or segfaulted runtime answers 502.

Prints counts per category and outcome, the worst input per category and figure, every hang, crash and
server error, and one PASS/FAIL line per figure; exits 1 if any figure fails. ``--results`` keeps one JSON
line per input for later analysis.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tests.fuzz` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz import corpus, harness
from tests.fuzz.harness import OUTCOMES, Result

MAX_RSS_GROWTH_MB = 300.0
MAX_CPU_S = 2.0


def from_dir(folder: Path) -> Iterator[corpus.Item]:
    """Items from a folder written by ``corpus.py --out`` (categories from its index.tsv) or any folder."""
    index = folder / "index.tsv"
    if index.exists():
        for line in index.read_text().splitlines()[1:]:
            name, category, *_ = line.split("\t")
            yield corpus.Item(name, category, (folder / name).read_bytes())
        return
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        yield corpus.Item(path.name, "dir", path.read_bytes())


def cost(result: Result, timeout_s: float) -> float:
    """How far past the figures an input went, as a multiple of the worst-hit budget (hangs rank first)."""
    if result.outcome == "hang":
        return 1000.0 + result.cpu_s
    return max(result.cpu_s / MAX_CPU_S, result.rss_mb / MAX_RSS_GROWTH_MB, result.wall_s / timeout_s)


def _row(result: Result) -> str:
    return (
        f"  {result.name[:96]:<96} {result.bytes:>9,} B  cpu {result.cpu_s:6.2f} s  rss {result.rss_mb:7.1f} MB  "
        f"wall {result.wall_s:6.2f} s  {result.outcome}"
    )


def report(results: Sequence[Result], *, elapsed_s: float, timeout_s: float, top: int, title: str) -> tuple[str, bool]:
    """The campaign report and whether every figure passed."""
    rate = f" in {elapsed_s:.0f} s ({len(results) / elapsed_s:.1f}/s)" if elapsed_s > 0 else ""
    lines = [title, f"{len(results)} inputs{rate}", ""]
    by_category: dict[str, list[Result]] = defaultdict(list)
    for result in results:
        by_category[result.category].append(result)
    header = (
        f"{'category':<14}"
        + "".join(f"{o:>14}" for o in OUTCOMES)
        + f"{'max cpu s':>11}{'max rss MB':>12}{'max wall s':>12}"
    )
    lines.append(header)
    for category in sorted(by_category):
        group = by_category[category]
        counts = Counter(r.outcome for r in group)
        peaks = max(r.cpu_s for r in group), max(r.rss_mb for r in group), max(r.wall_s for r in group)
        lines.append(
            f"{category:<14}"
            + "".join(f"{counts.get(o, 0):>14}" for o in OUTCOMES)
            + f"{peaks[0]:>11.2f}{peaks[1]:>12.1f}{peaks[2]:>12.2f}"
        )
    totals = Counter(r.outcome for r in results)
    lines.append(f"{'all':<14}" + "".join(f"{totals.get(o, 0):>14}" for o in OUTCOMES))
    lines.append("")
    if results:
        for label, key in (("CPU", "cpu_s"), ("RSS growth", "rss_mb"), ("wall", "wall_s")):
            worst = max(results, key=lambda r: float(getattr(r, key)))
            lines.append(f"worst {label}: {getattr(worst, key)} ({worst.name}, {worst.outcome})")
        lines.append("")
    lines.append(f"worst {top} per category (hangs first, then by cost against the figures):")
    for category in sorted(by_category):
        lines.append(f"[{category}]")
        ranked = sorted(by_category[category], key=lambda r: cost(r, timeout_s), reverse=True)[:top]
        lines.extend(_row(r) for r in ranked)
    for outcome in ("hang", "crash", "server_error"):
        hits = [r for r in results if r.outcome == outcome]
        if hits:
            lines.append("")
            lines.append(f"{outcome} ({len(hits)}):")
            lines.extend(f"{_row(r)}  {r.detail}" for r in hits[:60])
            if len(hits) > 60:
                lines.append(f"  ... and {len(hits) - 60} more (see --results)")
    five_xx = totals.get("server_error", 0) + totals.get("crash", 0)
    hangs = totals.get("hang", 0)
    peak_rss = max((r.rss_mb for r in results), default=0.0)
    peak_cpu = max((r.cpu_s for r in results), default=0.0)
    over_rss = sum(r.rss_mb > MAX_RSS_GROWTH_MB for r in results)
    over_cpu = sum(r.cpu_s > MAX_CPU_S for r in results)
    figures = [
        (
            five_xx == 0,
            f"5xx responses: {five_xx} (server_error {totals.get('server_error', 0)} "
            f"+ crash {totals.get('crash', 0)}); goal 0",
        ),
        (hangs == 0, f"hangs: {hangs} (no result within {timeout_s:g} s); goal 0"),
        (
            over_rss == 0,
            f"peak RSS growth: max {peak_rss:.1f} MB, {over_rss} inputs over; goal <= {MAX_RSS_GROWTH_MB:g} MB",
        ),
        (over_cpu == 0, f"decode CPU: max {peak_cpu:.2f} s, {over_cpu} inputs over; goal <= {MAX_CPU_S:g} s"),
    ]
    lines.append("")
    lines.extend(f"{'PASS' if ok else 'FAIL'}  {text}" for ok, text in figures)
    return "\n".join(lines), all(ok for ok, _ in figures)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="first corpus index")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (or HTTP clients)")
    parser.add_argument("--target", default=harness.DEFAULT_TARGET, help="module:function taking the image bytes")
    parser.add_argument("--timeout", type=float, default=harness.DEFAULT_TIMEOUT_S, help="seconds before a hang")
    parser.add_argument("--max-rss-mb", type=float, default=harness.DEFAULT_MAX_RSS_MB, help="kill a worker past this")
    parser.add_argument("--from-dir", type=Path, help="run a written corpus instead of generating one")
    parser.add_argument("--results", type=Path, help="write one JSON line per input here")
    parser.add_argument(
        "--report-only",
        type=Path,
        nargs="+",
        metavar="RESULTS",
        help="print the report of earlier --results files (e.g. a campaign resumed with --start) and exit",
    )
    parser.add_argument("--elapsed", type=float, default=0.0, help="with --report-only: the runs' seconds")
    parser.add_argument("--top", type=int, default=5, help="worst inputs listed per category")
    parser.add_argument(
        "--http", metavar="URL", help="POST to a running server instead, e.g. http://127.0.0.1:8000/v1/classify"
    )
    parser.add_argument("--server-pid", type=int, help="the server's pid, to sample its RSS (HTTP mode)")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop sending after this long (HTTP mode)")
    args = parser.parse_args(argv)
    if args.report_only:
        merged = {}
        for path in args.report_only:
            for line in path.read_text().splitlines():
                result = Result(**json.loads(line))
                merged[result.name] = result
        title = f"hostile images: {len(merged)} results from {', '.join(str(p) for p in args.report_only)}"
        text, passed = report(
            list(merged.values()), elapsed_s=args.elapsed, timeout_s=args.timeout, top=args.top, title=title
        )
        print(text)
        return 0 if passed else 1

    items = from_dir(args.from_dir) if args.from_dir else corpus.generate(args.count, args.seed, args.start)
    sink = args.results.open("w") if args.results else None
    done = Counter[str]()
    started = time.monotonic()

    def on_result(result: Result) -> None:
        done[result.outcome] += 1
        if sink is not None:
            sink.write(result.to_json() + "\n")
        total = sum(done.values())
        if total % 250 == 0:
            summary = ", ".join(f"{k} {v}" for k, v in sorted(done.items()))
            print(f"[{time.monotonic() - started:6.0f} s] {total} inputs: {summary}", file=sys.stderr, flush=True)

    source = f"--from-dir {args.from_dir}" if args.from_dir else f"--count {args.count} --seed {args.seed}"
    if args.http:
        summary = harness.run_http(
            items,
            args.http,
            jobs=args.jobs,
            timeout_s=args.timeout,
            max_seconds=args.max_seconds,
            server_pid=args.server_pid,
            on_result=on_result,
        )
        elapsed = time.monotonic() - started
        title = f"hostile images over HTTP: {args.http} ({source}, {args.jobs} clients)"
        text, _ = report(summary.results, elapsed_s=elapsed, timeout_s=args.timeout, top=args.top, title=title)
        statuses = ", ".join(f"{status or 'no answer'}: {n}" for status, n in sorted(summary.statuses.items()))
        five_xx = sum(n for status, n in summary.statuses.items() if status >= 500)
        hangs = sum(r.outcome == "hang" for r in summary.results)
        lost = sum(r.outcome == "crash" for r in summary.results)
        lines = [text.rsplit("\n\n", 1)[0], "", f"statuses: {statuses}"]
        if args.server_pid:
            lines.append(
                f"server RSS: {summary.rss_start_mb:.0f} MB at start, {summary.rss_after_100_mb:.0f} MB after 100 "
                f"requests, {summary.rss_end_mb:.0f} MB after {len(summary.results)}; peak {summary.peak_mb:.0f} MB"
            )
        figures = [
            (five_xx == 0, f"5xx responses: {five_xx}; goal 0"),
            (hangs == 0, f"hangs: {hangs}; goal 0"),
            (lost == 0, f"connections refused or reset: {lost}; goal 0"),
        ]
        lines += [f"{'PASS' if ok else 'FAIL'}  {line}" for ok, line in figures]
        print("\n".join(lines))
        passed = all(ok for ok, _ in figures)
    else:
        results = harness.run_local(
            items,
            spec=args.target,
            jobs=args.jobs,
            timeout_s=args.timeout,
            max_rss_mb=args.max_rss_mb,
            on_result=on_result,
        )
        elapsed = time.monotonic() - started
        title = f"hostile images against {args.target} ({source}, {args.jobs} workers)"
        text, passed = report(results, elapsed_s=elapsed, timeout_s=args.timeout, top=args.top, title=title)
        print(text)
    if sink is not None:
        sink.close()
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
