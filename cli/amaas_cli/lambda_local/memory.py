"""Lambda's memory limit, and its Max Memory Used figure, for one function process.

Lambda enforces ``MemorySize`` on what the sandbox keeps resident (a cgroup limit): past it the kernel kills
the runtime with SIGKILL and the invocation fails with ``Runtime.OutOfMemory``. An address-space limit
(``RLIMIT_AS``) is not that. Measured for the API function (demo model, python3.13, onnxruntime + numpy):

========================  ==============  ===============  ============
setting                   address space   data (VmData)    resident
========================  ==============  ===============  ============
1 ORT thread (template)   263 MB          156 MB           109 MB
6 ORT threads             624 MB          190 MB           110 MB
========================  ==============  ===============  ============

Every thread reserves an 8 MB stack and a 64 MB malloc arena that it mostly never touches. Under
``RLIMIT_AS`` = 256 MB (the template's smallest ``MemorySize``) the function fails to load its model while
using 109 MB, and at 1024 MB six threads would spend 60% of the limit on reservations. So the limit is
enforced the way Lambda does it: ``MemoryGuard`` watches the process's resident high-water mark (``VmHWM``,
the figure Lambda reports as Max Memory Used) and kills it with SIGKILL once it passes ``MemorySize``.
Because ``VmHWM`` is a high-water mark, a spike between two polls is still seen. ``RLIMIT_DATA`` at twice
``MemorySize`` stays as a backstop that protects the host from a runaway allocation between polls; it counts
only writable memory (not reservations), so a process under the real limit never reaches it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

POLL_SECONDS = 0.02


def peak_mb(pid: int) -> int | None:
    """The process's resident high-water mark in MB (``VmHWM``), or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return None


class MemoryGuard:
    """Kills the process group of ``pid`` with SIGKILL when its resident peak passes ``limit_mb``."""

    def __init__(self, pid: int, limit_mb: int) -> None:
        self.pid = pid
        self.limit_mb = limit_mb
        self.peak = 0
        self.exceeded = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"lambda-memory-{pid}", daemon=True)
        self._thread.start()

    def sample(self) -> int:
        """The peak so far in MB, read now."""
        peak = peak_mb(self.pid)
        if peak is not None:
            self.peak = max(self.peak, peak)
        return self.peak

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            if peak_mb(self.pid) is None:
                return
            if self.sample() > self.limit_mb:
                self.exceeded = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                return
