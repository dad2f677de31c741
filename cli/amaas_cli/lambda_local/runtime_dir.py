"""The Lambda Python runtime's own parts, made once per machine: the interpreter and ``/var/runtime``.

Lambda's Python runtime is an interpreter (``/var/lang/bin/python3.13``) with nothing in its site-packages, and
``/var/runtime`` holding the runtime interface client (``awslambdaric``) and the SDK (boto3 and its
dependencies), precompiled. Here that is:

* ``venv/``: a virtual environment of the template's Python, made without pip and without the host's
  site-packages, so nothing installed on the host leaks into the function;
* ``runtime/``: those packages from PyPI (``pip install --target``), byte-compiled, playing ``/var/runtime``.

They are cached under ``~/.cache/amaas/`` in a folder named by the Python version, the architecture and a hash
of the interpreter and the pinned packages; pip's own cache makes a rebuild after a pin change quick.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from amaas_cli.lambda_local.errors import LambdaSetupError

# The runtime interface client and the SDK Lambda's python3.13 runtime provides, with their dependencies,
# pinned and installed without resolution so the runtime folder is the same wherever it is built.
RUNTIME_PACKAGES = (
    "awslambdaric==4.2.2",
    "simplejson==4.3.0",
    "snapshot-restore-py==1.0.0",
    "boto3==1.44.8",
    "botocore==1.44.8",
    "s3transfer==0.19.3",
    "jmespath==1.1.0",
    "python-dateutil==2.9.0.post0",
    "six==1.17.0",
    "urllib3==2.8.0",
)
MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}
_PROBE = "import platform, sys; print(sys.version_info[0], sys.version_info[1], platform.machine(), sys.executable)"


@dataclass(frozen=True)
class Runtime:
    """An interpreter isolated from the host's packages, and the folder that plays ``/var/runtime``."""

    python: Path
    runtime_dir: Path


def find_python(version: str, architecture: str, *, path: str | None = None, pyenv_root: Path | None = None) -> Path:
    """The ``python<version>`` to run functions with: from ``PATH``, else from pyenv's versions.

    Each candidate is run once to check its version and machine, so a pyenv shim that only works with
    ``PYENV_VERSION`` set is skipped rather than trusted.

    Args:
        version: ``3.13``.
        architecture: The template's ``x86_64`` or ``arm64``.
        path: The search path (default ``$PATH``).
        pyenv_root: pyenv's root (default ``$PYENV_ROOT`` or ``~/.pyenv``).

    Raises:
        LambdaSetupError: No interpreter of that version and architecture.
    """
    machine = MACHINES.get(architecture, architecture)
    candidates: list[str] = []
    found = shutil.which(f"python{version}", path=os.environ.get("PATH", "") if path is None else path)
    if found:
        candidates.append(found)
    root = pyenv_root or Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates += sorted(map(str, root.glob(f"versions/{version}.*/bin/python{version}")), reverse=True)
    seen_machines: set[str] = set()
    for candidate in candidates:
        try:
            probe = subprocess.run([candidate, "-c", _PROBE], capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            continue
        fields = probe.stdout.split(maxsplit=3)
        if probe.returncode != 0 or len(fields) != 4 or f"{fields[0]}.{fields[1]}" != version:
            continue
        if fields[2] == machine:
            return Path(fields[3].strip())
        seen_machines.add(fields[2])
    if seen_machines:
        raise LambdaSetupError(
            f"python{version} here is {', '.join(sorted(seen_machines))}, the template wants {machine}"
        )
    raise LambdaSetupError(
        f"python{version} (the function's runtime) is not installed: put it on PATH or install it with "
        f"`pyenv install {version}`"
    )


def ensure_runtime(python: Path, *, cache: Path | None = None) -> Runtime:
    """The cached runtime for ``python``, built on first use (a few seconds with pip's cache warm).

    Args:
        python: The interpreter ``find_python`` returned.
        cache: Where runtimes are kept (default ``$XDG_CACHE_HOME/amaas`` or ``~/.cache/amaas``).

    Raises:
        LambdaSetupError: pip could not install the runtime packages (offline with a cold cache, say).
    """
    probe = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True, timeout=30, check=True)
    major, minor, machine, _ = probe.stdout.split(maxsplit=3)
    key = hashlib.sha256("\n".join([str(python), probe.stdout, *RUNTIME_PACKAGES]).encode()).hexdigest()[:12]
    base = cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "amaas"
    home = base / f"lambda-runtime-{major}.{minor}-{machine}-{key}"
    if not (home / ".complete").is_file():
        base.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{home.name}-", dir=base))
        staging.chmod(0o755)  # readable by the unprivileged user functions run as
        try:
            _build(python, staging)
            (staging / ".complete").write_text("\n".join(RUNTIME_PACKAGES) + "\n")
            try:
                staging.rename(home)
            except OSError:  # another process finished the same runtime first: use that one
                if not (home / ".complete").is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return Runtime(python=home / "venv" / "bin" / f"python{major}.{minor}", runtime_dir=home / "runtime")


def _build(python: Path, home: Path) -> None:
    print(f"amaas lambda: installing the Lambda runtime for {python} (once) into {home.parent}", file=sys.stderr)
    steps = [
        [str(python), "-m", "venv", "--without-pip", str(home / "venv")],
        [
            str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--root-user-action=ignore",
            "--no-deps", "--only-binary=:all:", "--target", str(home / "runtime"), *RUNTIME_PACKAGES,
        ],
        # Lambda's /var/runtime ships precompiled; the function's own code and layers do not.
        [str(python), "-m", "compileall", "-q", "-j", "0", str(home / "runtime")],
    ]  # fmt: skip
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, timeout=600, check=False)
        if result.returncode != 0:
            detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise LambdaSetupError(f"could not build the Lambda runtime ({step[2]}): {detail[0]}")
