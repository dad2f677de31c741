"""Compiles a built layer or function bundle to bytecode with the Lambda runtime's own Python.

Lambda's ``/opt`` and ``/var/task`` are read-only: a bundle without ``.pyc`` files is compiled from source on
every cold start (FastAPI, pydantic and numpy alone take most of a second). The bytecode is written with
``--invalidation-mode unchecked-hash``, so it stays valid whatever timestamps the zip gives the sources, and
the sources stay beside it for tracebacks. Bytecode is the same on every architecture, so any python3.13
compiles for arm64 too. Without one the build goes on and says so: the bundle still works, only slower to start.

    python layers/bytecode.py DIR [--python-version 3.13]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from pathlib import Path

# sam runs this with whatever python3 is first on PATH: the repository's own local tools are found from here
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))

from amaas_cli.lambda_local.errors import LambdaSetupError
from amaas_cli.lambda_local.runtime_dir import find_python


def compile_tree(root: Path, version: str) -> str:
    """Compiles every module under ``root``; returns the line the build prints."""
    host = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    try:
        python = find_python(version, host)
    except LambdaSetupError as exc:
        return f"bytecode: NOT compiled for {root.name}: {exc}; every cold start will compile it from source"
    before = sum(1 for _ in root.rglob("*.pyc"))
    result = subprocess.run(
        [str(python), "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    compiled = list(root.rglob("*.pyc"))
    size = sum(p.stat().st_size for p in compiled) / 1e6
    # modules that do not compile under the runtime (a vendored test file written for Python 2) stay source-only
    skipped = result.stdout.count("***") if result.returncode else 0
    note = f", {skipped} files left as source (they do not compile)" if skipped else ""
    return (
        f"bytecode: {len(compiled) - before} modules in {root.name} compiled by Python {version} "
        f"({python}), unchecked-hash, +{size:.1f} MB{note}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--python-version", default="3.13")
    args = parser.parse_args()
    if not args.root.is_dir():
        sys.exit(f"bytecode: {args.root} is not a directory")
    print(compile_tree(args.root, args.python_version))


if __name__ == "__main__":
    main()
