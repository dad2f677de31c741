"""One function process (one Lambda sandbox): spawned once, then reused for invocation after invocation until
it fails, times out or is closed."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from amaas_cli.lambda_local import sandbox
from amaas_cli.lambda_local.errors import LambdaSetupError
from amaas_cli.lambda_local.memory import MemoryGuard
from amaas_cli.lambda_local.runtime_api import RuntimeApi
from amaas_cli.lambda_local.runtime_dir import Runtime
from amaas_cli.lambda_local.template import FunctionSpec

Echo = Callable[[str], None]


class LogPump:
    """Collects the process's stdout and stderr, which Lambda merges into one log stream, line by line.

    ``settle`` returns once everything the process wrote so far has been read: the runtime writes its logs
    before it posts a response, so after ``settle`` an invocation's lines are all in ``lines``.
    """

    def __init__(self, fds: Sequence[int], echo: Echo | None) -> None:
        self.lines: list[str] = []
        self._echo = echo
        self._partial = {fd: b"" for fd in fds}
        self._open = set(fds)
        self._wake_r, self._wake_w = os.pipe()
        self._settled = self._requested = 0
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="lambda-logs", daemon=True)
        self._thread.start()

    def settle(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._requested += 1
            ticket = self._requested
        os.write(self._wake_w, b".")
        with self._cond:
            self._cond.wait_for(lambda: self._settled >= ticket or self._closed, timeout)

    def add(self, line: str) -> None:
        """A line of Lambda's own (START, REPORT, a timeout notice) in the stream."""
        with self._cond:
            self.lines.append(line)
        if self._echo:
            self._echo(line)

    def close(self) -> bool:
        """Waits for the streams to end; True once the pump has stopped and its descriptors are closed. A
        grandchild that escaped the process group can keep a stream open: the pump is then left running."""
        self._thread.join(timeout=2)
        if self._thread.is_alive():
            return False
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        return True

    def _run(self) -> None:
        while self._open:
            readable, _, _ = select.select([*self._open, self._wake_r], [], [])
            for fd in readable:
                if fd != self._wake_r:
                    self._read(fd)
            if self._wake_r in readable:
                os.read(self._wake_r, 4096)
                with self._cond:
                    ticket = self._requested
                while self._open and (more := select.select(list(self._open), [], [], 0)[0]):
                    for fd in more:
                        self._read(fd)
                for fd in list(self._partial):
                    self._flush(fd)
                with self._cond:
                    self._settled = ticket
                    self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _read(self, fd: int) -> None:
        chunk = os.read(fd, 65536)
        if not chunk:
            self._open.discard(fd)
            self._flush(fd)
            return
        *complete, self._partial[fd] = (self._partial[fd] + chunk).split(b"\n")
        for line in complete:
            self._emit(line)

    def _flush(self, fd: int) -> None:
        if self._partial.get(fd):
            self._emit(self._partial[fd])
            self._partial[fd] = b""

    def _emit(self, raw: bytes) -> None:
        # The runtime joins a multi-line error into one record with carriage returns.
        for line in raw.decode(errors="replace").split("\r"):
            self.add(line)


class FunctionProcess:
    """``python -m awslambdaric <handler>`` in a fresh sandbox, talking to its own Runtime API."""

    def __init__(
        self,
        spec: FunctionSpec,
        runtime: Runtime,
        env: dict[str, str],
        echo: Echo | None,
        python_options: Sequence[str] = (),
    ) -> None:
        self.spec = spec
        self.root = Path(tempfile.mkdtemp(prefix=f"amaas-lambda-{spec.logical_id}-"))
        self.task, self.opt = sandbox.prepare(spec, self.root)
        self.api = RuntimeApi()
        self.invocations = 0
        environment = sandbox.environment(spec, runtime, self.task, self.opt, self.api.address, env)
        drop_root = os.geteuid() == 0
        self.spawned = time.monotonic()
        try:
            self.popen = subprocess.Popen(
                # -P: the working directory (/var/task) is not put first a second time; PYTHONPATH has the order
                [str(runtime.python), "-P", *python_options, "-m", "awslambdaric", spec.handler],
                cwd=self.task,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # preexec_fn is safe with threads running here: it makes system calls only, no locks, no imports
                preexec_fn=sandbox.preexec(spec.memory_mb, drop_root=drop_root),
                start_new_session=True,  # its own process group, so a timeout kills whatever it started too
            )
        except (OSError, subprocess.SubprocessError) as exc:  # preexec_fn failing surfaces as SubprocessError
            self.api.close()
            sandbox.make_writable(self.task)
            sandbox.make_writable(self.opt)
            shutil.rmtree(self.root, ignore_errors=True)
            raise LambdaSetupError(f"cannot start the runtime process for {spec.logical_id}: {exc}") from exc
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self.logs = LogPump([self.popen.stdout.fileno(), self.popen.stderr.fileno()], echo)
        self.memory = MemoryGuard(self.popen.pid, spec.memory_mb)
        threading.Thread(target=self._reap, name="lambda-reaper", daemon=True).start()

    @property
    def init_ms(self) -> float | None:
        """Spawn to the end of init: the runtime's first ``next`` call, or with SnapStart its ``restore/next``."""
        end = self.api.restore_at or self.api.ready_at
        return None if end is None else (end - self.spawned) * 1000

    @property
    def restore_ms(self) -> float | None:
        """With SnapStart, the after-restore hooks: ``restore/next`` to the first ``next``."""
        if self.api.restore_at is None or self.api.ready_at is None:
            return None
        return (self.api.ready_at - self.api.restore_at) * 1000

    def exited(self) -> int | None:
        return self.popen.poll()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()

    def close(self) -> None:
        self.kill()
        self.memory.stop()
        self.api.close()
        if self.logs.close():
            for stream in (self.popen.stdout, self.popen.stderr):
                if stream:
                    stream.close()
        for top in (self.task, self.opt):
            sandbox.make_writable(top)
        shutil.rmtree(self.root, ignore_errors=True)

    def _reap(self) -> None:
        self.popen.wait()
        with self.api.changed:
            self.api.changed.notify_all()
