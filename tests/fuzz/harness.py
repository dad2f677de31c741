"""Runs hostile inputs through a decode target in long-lived worker processes and measures each one.

Per input: CPU seconds (the worker's user + system time, every thread), wall seconds, and peak RSS growth
(Linux: the peak is reset through ``/proc/self/clear_refs`` before the input, so VmHWM afterwards is this
input's peak; growth = VmHWM - VmRSS before it). A watchdog in the parent kills a worker that runs past the
timeout (a hang) or past the RSS ceiling (an OOM on Lambda), records what it had used, and starts a new one;
a worker that dies on its own (segfault, abort) is a crash.

Outcomes: ``ok``; ``client_error`` (an ``AmaasError`` with status < 500); ``server_error`` (an ``AmaasError``
with status >= 500, or any other exception: it would escape as a 500); ``hang``; ``crash``.

HTTP mode POSTs each input to a running server and classifies by status instead (5xx = server_error,
no answer within the timeout = hang, connection refused/reset = crash), sampling the server's RSS.
"""

from __future__ import annotations

import contextlib
import gc
import http.client
import importlib
import json
import os
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO

if __package__ in (None, ""):  # run as a script (the worker): make `tests.fuzz` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz.corpus import Item, media_type

REPO = Path(__file__).resolve().parents[2]
OUTCOMES = ("ok", "client_error", "server_error", "hang", "crash")
DEFAULT_TARGET = "tests.fuzz.harness:target"
# Five times the 2 s CPU budget: an input still running then has failed that figure whatever it does next,
# and waiting for the API function's own 25 s Timeout would make a campaign against a slow decoder take hours.
DEFAULT_TIMEOUT_S = 10.0
# Four times the API function's default 1024 MB: an input past this would have killed the function long before.
DEFAULT_MAX_RSS_MB = 4096
# A worker whose resting RSS has grown this much since it started is replaced, so that memory a previous
# input left in the allocator's free lists cannot hide the next input's growth.
RECYCLE_GROWTH_MB = 200


def target(data: bytes) -> None:
    """What the server does to one image today (``Model.pixels`` with the default manifest geometry).

    The one place to change when the decoder's API changes; ``--target module:function`` swaps it without
    editing this file.
    """
    from amaas.artifact.imaging import decode_pixels
    from amaas.artifact.manifest import Preprocessing
    from amaas.settings import Settings

    prep = Preprocessing(resize=256, crop=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    decode_pixels(data, prep, Settings().decode_limits)


@dataclass(frozen=True)
class Result:
    """One input's measurements. ``rss_mb`` is peak growth over the worker's RSS just before the input."""

    name: str
    category: str
    bytes: int
    outcome: str
    cpu_s: float
    wall_s: float
    rss_mb: float
    detail: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))


# ================================================================================================== worker


def _status_kb(pid: int | str, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM); 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_ticks_s(pid: int) -> float:
    """User + system CPU seconds of a process, read from outside it (for a worker about to be killed)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def load_target(spec: str) -> Callable[[bytes], object]:
    module, _, name = spec.partition(":")
    function: Callable[[bytes], object] = getattr(importlib.import_module(module), name or "target")
    return function


def _classify(exc: BaseException) -> tuple[str, str]:
    from amaas.errors import AmaasError

    if isinstance(exc, AmaasError):
        outcome = "client_error" if exc.status < 500 else "server_error"
        return outcome, f"{type(exc).__name__}({exc.status}): {exc.message}"[:300]
    if isinstance(exc, MemoryError):
        return "server_error", "MemoryError: an allocation past the worker's address-space ceiling (would OOM Lambda)"
    return "server_error", f"{type(exc).__name__}: {exc}"[:300]


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker_main(spec: str, max_rss_mb: float = DEFAULT_MAX_RSS_MB) -> int:
    """The worker loop: length-prefixed inputs on stdin; ``S <baseline kB>`` then ``R <json>`` lines out."""
    # A backstop under the parent's RSS watchdog: this machine is shared, and one input (1xN PNG) asks for
    # over 20 GB. Address space, not RSS, so it is generous: allocations fail with MemoryError past it.
    ceiling = int((2 * max_rss_mb + 2048) * 1024 * 1024)
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))
    function = load_target(spec)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    # Warm-up: the first call imports Pillow's plugins and amaas; that cost belongs to no input.
    with contextlib.suppress(Exception):  # an empty body is an error by design; only the imports matter
        function(b"")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    stdout.write(f"READY {_status_kb('self', 'VmRSS')}\n".encode())
    stdout.flush()
    while True:
        header = stdin.read(4)
        if len(header) < 4:
            return 0
        (length,) = struct.unpack("<I", header)
        data = stdin.read(length)
        gc.collect()
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to the current RSS: the peak from here on is this input's
        baseline = _status_kb("self", "VmRSS")
        stdout.write(f"S {baseline}\n".encode())
        stdout.flush()
        cpu, wall = _cpu_s(), time.perf_counter()
        outcome, detail = "ok", ""
        try:
            function(data)
        except Exception as exc:  # noqa: BLE001 - every exception is data here: its class decides the outcome
            outcome, detail = _classify(exc)
        cpu, wall = _cpu_s() - cpu, time.perf_counter() - wall
        peak = _status_kb("self", "VmHWM")
        del data
        payload = {"outcome": outcome, "cpu_s": cpu, "wall_s": wall, "rss_kb": peak - baseline, "detail": detail}
        stdout.write(f"R {json.dumps(payload)}\n".encode())
        stdout.flush()


# ================================================================================================== parent


class WorkerProcess:
    """One long-lived worker subprocess and the watchdog that runs inputs through it."""

    def __init__(self, spec: str, *, timeout_s: float, max_rss_mb: float, log: IO[bytes] | None = None) -> None:
        self.spec = spec
        self.timeout_s = timeout_s
        self.max_rss_kb = int(max_rss_mb * 1024)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.fresh_rss_kb = 0
        self._buffer = b""
        self._eof = False
        self.restarts = 0

    def start(self) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            # A fixed mmap threshold: glibc otherwise raises it after the first large free, and large
            # buffers freed by one input stay in the heap, hiding the next input's growth from VmHWM.
            "MALLOC_MMAP_THRESHOLD_": "131072",
            "MALLOC_TRIM_THRESHOLD_": "131072",
            "OMP_NUM_THREADS": "1",
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.fuzz.harness",
                "--worker",
                "--target",
                self.spec,
                "--max-rss-mb",
                str(self.max_rss_kb // 1024),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log if self.log is not None else subprocess.DEVNULL,
            cwd=REPO,
            env=env,
        )
        self._buffer, self._eof = b"", False
        line = self._readline(time.monotonic() + 120)
        if line is None or not line.startswith("READY"):
            self.stop()
            raise RuntimeError(f"the worker for {self.spec} did not start; run it with a log to see why")
        self.fresh_rss_kb = int(line.split()[1])

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self._reap()

    def _reap(self) -> int:
        assert self.proc is not None
        code = self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        self.proc = None
        return code

    def _readline(self, deadline: float, on_poll: Callable[[], str | None] | None = None) -> str | None:
        """A line from the worker; None on EOF or deadline. ``on_poll`` runs every 20 ms and may return a
        reason to give up (the RSS ceiling)."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], min(remaining, 0.02))
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    self._eof = True  # the worker is gone (or going): not a hang, whatever the clock says
                    return None
                self._buffer += chunk
            elif on_poll is not None and on_poll() is not None:
                return None
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def run(self, entry: Item) -> Result:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None
        pid = self.proc.pid
        base = Result(entry.name, entry.category, len(entry.data), "crash", 0.0, 0.0, 0.0)
        try:
            self.proc.stdin.write(struct.pack("<I", len(entry.data)) + entry.data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            return self._died(base, time.perf_counter())
        started = time.perf_counter()
        line = self._readline(time.monotonic() + 60)
        if line is None or not line.startswith("S "):
            return self._died(base, started)
        baseline_kb = int(line.split()[1])
        cpu_before = _cpu_ticks_s(pid)
        peak = {"kb": 0}
        too_big: list[str] = []

        def watch() -> str | None:
            hwm = _status_kb(pid, "VmHWM")
            peak["kb"] = max(peak["kb"], hwm)
            if hwm > self.max_rss_kb:
                too_big.append(f"killed by the harness at {hwm // 1024} MB RSS (ceiling {self.max_rss_kb // 1024} MB)")
                return too_big[0]
            return None

        line = self._readline(time.monotonic() + self.timeout_s, watch)
        if line is not None and line.startswith("R "):
            measured = json.loads(line[2:])
            result = Result(
                entry.name,
                entry.category,
                len(entry.data),
                measured["outcome"],
                round(measured["cpu_s"], 4),
                round(measured["wall_s"], 4),
                round(measured["rss_kb"] / 1024, 1),
                measured["detail"],
            )
            if _status_kb(pid, "VmRSS") - self.fresh_rss_kb > RECYCLE_GROWTH_MB * 1024:
                self.stop()
                self.restarts += 1
            return result
        # No result: hung, over the RSS ceiling, or dead. Measure from outside before killing it.
        watch()
        measured_from_outside = replace(
            base,
            cpu_s=round(_cpu_ticks_s(pid) - cpu_before, 3),
            rss_mb=round(max(peak["kb"] - baseline_kb, 0) / 1024, 1),
        )
        if self._eof or self.proc.poll() is not None:
            return self._died(measured_from_outside, started)
        self.stop()
        self.restarts += 1
        wall = round(time.perf_counter() - started, 3)
        if too_big:
            return replace(measured_from_outside, wall_s=wall, detail=too_big[0])
        detail = f"no result within {self.timeout_s:g} s; killed"
        return replace(measured_from_outside, outcome="hang", wall_s=wall, detail=detail)

    def _died(self, base: Result, started: float) -> Result:
        """The worker exited on its own (a segfault, an abort, the kernel's OOM killer): a crash."""
        code = self._reap() if self.proc is not None else None
        self.restarts += 1
        reason = (
            f"worker died: {signal.Signals(-code).name}" if code is not None and code < 0 else f"worker exited {code}"
        )
        return replace(base, outcome="crash", wall_s=round(time.perf_counter() - started, 3), detail=reason)


def run_local(
    items: Iterable[Item],
    *,
    spec: str = DEFAULT_TARGET,
    jobs: int = 2,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_rss_mb: float = DEFAULT_MAX_RSS_MB,
    log_path: Path | None = None,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Runs every item through ``spec`` in ``jobs`` workers; results in completion order."""
    source: Iterator[Item] = iter(items)
    lock = threading.Lock()
    results: list[Result] = []
    errors: list[BaseException] = []
    log = log_path.open("ab") if log_path is not None else None

    def next_item() -> Item | None:
        with lock:  # the generator is not thread-safe; building an item under the lock keeps it ordered
            return next(source, None)

    def loop() -> None:
        worker = WorkerProcess(spec, timeout_s=timeout_s, max_rss_mb=max_rss_mb, log=log)
        try:
            while (entry := next_item()) is not None:
                result = worker.run(entry)
                with lock:
                    results.append(result)
                    if on_result is not None:
                        on_result(result)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
            errors.append(exc)
        finally:
            worker.stop()

    threads = [threading.Thread(target=loop, name=f"fuzz-worker-{i}", daemon=True) for i in range(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if log is not None:
        log.close()
    if errors:
        raise errors[0]
    return results


# ==================================================================================================== HTTP


@dataclass
class HttpSummary:
    results: list[Result]
    statuses: dict[int, int]
    rss_start_mb: float
    rss_after_100_mb: float
    rss_end_mb: float
    peak_mb: float


def run_http(
    items: Iterable[Item],
    url: str,
    *,
    jobs: int = 2,
    timeout_s: float = 30.0,
    max_seconds: float = 600.0,
    server_pid: int | None = None,
    octet_stream_every: int = 5,
    on_result: Callable[[Result], None] | None = None,
) -> HttpSummary:
    """POSTs each item to ``url`` (e.g. ``http://127.0.0.1:8000/v1/classify``) with the Content-Type its name
    claims (every ``octet_stream_every``-th as application/octet-stream), stopping after ``max_seconds``."""
    parsed = urllib.parse.urlsplit(url)
    path = parsed.path or "/v1/classify"
    source: Iterator[Item] = iter(items)
    lock = threading.Lock()
    results: list[Result] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + max_seconds
    rss = {"start": _status_kb(server_pid, "VmRSS") if server_pid else 0, "after_100": 0}

    def connect() -> http.client.HTTPConnection:
        if parsed.scheme == "https":
            return http.client.HTTPSConnection(parsed.netloc, timeout=timeout_s)
        return http.client.HTTPConnection(parsed.netloc, timeout=timeout_s)

    def loop() -> None:
        while time.monotonic() < deadline:
            with lock:
                entry = next(source, None)
                sequence = len(results)
            if entry is None:
                break
            content_type = "application/octet-stream" if sequence % octet_stream_every == 0 else media_type(entry.name)
            # A connection per request: on a kept-alive one, the server closing it while a slow request ran
            # surfaces as a broken pipe on the next, a client artefact that would count as a crash.
            connection = connect()
            started = time.perf_counter()
            status, outcome, detail = 0, "ok", ""
            try:
                headers = {"Content-Type": content_type, "Connection": "close"}
                connection.request("POST", path, body=entry.data, headers=headers)
                response = connection.getresponse()
                status = response.status
                body = response.read()
                outcome = "ok" if status < 400 else "client_error" if status < 500 else "server_error"
                if status >= 400:
                    detail = f"{status} {body[:200].decode(errors='replace')}"
            except TimeoutError:
                outcome, detail = "hang", f"no response within {timeout_s:g} s"
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                outcome, detail = "crash", f"{type(exc).__name__}: {exc}"[:300]
            finally:
                connection.close()
            wall = time.perf_counter() - started
            result = Result(entry.name, entry.category, len(entry.data), outcome, 0.0, round(wall, 4), 0.0, detail)
            with lock:
                results.append(result)
                statuses[status] = statuses.get(status, 0) + 1
                if len(results) == 100 and server_pid:
                    rss["after_100"] = _status_kb(server_pid, "VmRSS")
                if on_result is not None:
                    on_result(result)

    threads = [threading.Thread(target=loop, name=f"fuzz-http-{i}", daemon=True) for i in range(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    end = _status_kb(server_pid, "VmRSS") if server_pid else 0
    peak = _status_kb(server_pid, "VmHWM") if server_pid else 0
    return HttpSummary(results, statuses, rss["start"] / 1024, rss["after_100"] / 1024, end / 1024, peak / 1024)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--worker"]:
        spec = args[args.index("--target") + 1] if "--target" in args else DEFAULT_TARGET
        ceiling = float(args[args.index("--max-rss-mb") + 1]) if "--max-rss-mb" in args else DEFAULT_MAX_RSS_MB
        return worker_main(spec, ceiling)
    print("usage: tests/fuzz/fuzz_images.py runs campaigns; this module is their worker", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
