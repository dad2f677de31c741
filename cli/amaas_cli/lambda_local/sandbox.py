"""The execution environment of one function process: its file system, its environment and its limits.

* ``task/`` plays ``/var/task`` (a copy of the function's build folder) and ``opt/`` plays ``/opt`` (the
  layers extracted in order into one folder, later ones overwriting earlier ones). Both are made read-only,
  as Lambda mounts them, so the function cannot write ``__pycache__`` or anything else there.
* Read-only mode bits do not stop root. As root the process therefore runs as ``nobody`` (Lambda runs
  functions as an unprivileged user too), keeping only ``CAP_DAC_READ_SEARCH``: the right to *read* any file,
  which it needs because the interpreter may live under a private home (pyenv in ``/root``), and which grants
  no write at all.
* Memory: see ``MemoryGuard``.
"""

from __future__ import annotations

import ctypes
import os
import resource
import secrets
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path

from amaas_cli.lambda_local.runtime_dir import Runtime
from amaas_cli.lambda_local.template import FunctionSpec

NOBODY = 65534
_LANG_PATH = "/usr/local/bin:/usr/bin:/bin"


def prepare(spec: FunctionSpec, root: Path) -> tuple[Path, Path]:
    """Copies the function to ``root/task`` and its layers to ``root/opt``, read-only; returns both."""
    task, opt = root / "task", root / "opt"
    shutil.copytree(spec.code_dir, task, symlinks=True)
    opt.mkdir()
    for layer in spec.layer_dirs:
        shutil.copytree(layer, opt, symlinks=True, dirs_exist_ok=True)
    for top in (task, opt):
        make_read_only(top)
    root.chmod(0o755)  # mkdtemp makes it 0700, which would hide task/ and opt/ from the unprivileged user
    return task, opt


def make_read_only(top: Path) -> None:
    """Every file and folder under ``top`` readable (and, where it was, executable) by all, writable by none."""
    for folder, _, files in os.walk(top, topdown=False):
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink():
                path.chmod(0o555 if path.stat().st_mode & stat.S_IXUSR else 0o444)
        Path(folder).chmod(0o555)


def make_writable(top: Path) -> None:
    """Undoes ``make_read_only`` so the folder can be deleted by a user who is not root."""
    for folder, _, _ in os.walk(top):
        Path(folder).chmod(0o755)


def environment(
    spec: FunctionSpec, runtime: Runtime, task: Path, opt: Path, api: str, extra: dict[str, str]
) -> dict[str, str]:
    """The process environment Lambda gives a function: the template's variables (paths under ``/opt`` and
    ``/var/task`` rewritten to the emulated folders), Lambda's own variables, and ``extra`` from the caller.
    Nothing else from the host's environment gets in."""

    def local(value: str) -> str:
        for lambda_dir, here in (("/opt", opt), ("/var/task", task)):
            if value == lambda_dir or value.startswith(lambda_dir + "/"):
                return str(here) + value[len(lambda_dir) :]
        return value

    version = spec.python_version
    site = opt / "python" / "lib" / f"python{version}" / "site-packages"
    stream = time.strftime("%Y/%m/%d", time.gmtime()) + f"/[$LATEST]{secrets.token_hex(16)}"
    env = {name: local(value) for name, value in spec.environment.items()}
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "AWS_LAMBDA_RUNTIME_API": api,
            "AWS_REGION": spec.region,
            "AWS_DEFAULT_REGION": spec.region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "AWS_ACCESS_KEY_ID": "ASIALOCALLAMBDAFAKE00",
            "AWS_SECRET_ACCESS_KEY": "local-lambda-fake-secret-access-key-0000",
            "AWS_SESSION_TOKEN": "local-lambda-fake-session-token",
            "LAMBDA_TASK_ROOT": str(task),
            "LAMBDA_RUNTIME_DIR": str(runtime.runtime_dir),
            "_HANDLER": spec.handler,
            "TZ": ":UTC",
            "LANG": "en_US.UTF-8",
            "PATH": os.pathsep.join([str(runtime.python.parent), _LANG_PATH, str(opt / "bin")]),
            "LD_LIBRARY_PATH": os.pathsep.join(map(str, [runtime.runtime_dir, task, task / "lib", opt / "lib"])),
            # Lambda's Python runtime puts the function first, then the layers, then its own packages.
            "PYTHONPATH": os.pathsep.join(map(str, [task, site, opt / "python", runtime.runtime_dir])),
        }
    )
    if spec.log_format == "JSON":
        env.update(AWS_LAMBDA_LOG_FORMAT="JSON", AWS_LAMBDA_LOG_LEVEL=spec.log_level or "INFO")
    if spec.tracing:  # X-Ray's daemon address; traces are marked unsampled, so nothing is ever sent to it
        env.update(
            AWS_XRAY_CONTEXT_MISSING="LOG_ERROR",
            AWS_XRAY_DAEMON_ADDRESS="127.0.0.1:2000",
            _AWS_XRAY_DAEMON_ADDRESS="127.0.0.1",
            _AWS_XRAY_DAEMON_PORT="2000",
        )
    credentials = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    if set(credentials) & set(extra):  # the caller's credentials replace the fake ones, all of them
        for name in credentials:
            env.pop(name)
    env.update(extra)
    return env


def preexec(memory_mb: int, *, drop_root: bool) -> Callable[[], None]:
    """What the forked child does before it executes the runtime: a data-size backstop (see ``MemoryGuard``)
    and, as root, the switch to an unprivileged user. It only makes system calls: no imports, no locks."""
    libc = ctypes.CDLL(None, use_errno=True)
    prctl, capset = libc.prctl, libc.capset  # looked up here: the dynamic loader's lock is not safe after fork
    header, data = _capabilities(_CAP_DAC_READ_SEARCH)
    limit = memory_mb * BACKSTOP_FACTOR << 20
    hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)

    def run() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        if not drop_root:
            return
        _check(prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0))
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
        _check(capset(ctypes.byref(header), ctypes.byref(data)))
        _check(prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, _CAP_DAC_READ_SEARCH, 0, 0))

    return run


BACKSTOP_FACTOR = 2
_PR_SET_KEEPCAPS = 8
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_RAISE = 2
_CAP_DAC_READ_SEARCH = 2
_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _capabilities(capability: int) -> tuple[_CapHeader, ctypes.Array[_CapData]]:
    """The capset(2) arguments that keep exactly ``capability`` (inheritable too, as ambient ones must be)."""
    bit = 1 << capability
    data = (_CapData * 2)(_CapData(bit, bit, bit), _CapData(0, 0, 0))
    return _CapHeader(_CAPABILITY_VERSION_3, 0), data


def _check(result: int) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
