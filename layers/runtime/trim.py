"""Trims a pip --target tree down to what serving imports, then prints its size.

What goes, and why it is safe:
  - test suites, caches, type stubs, C headers and static libraries: never imported at run time;
  - onnxruntime's Python tooling (quantization, transformers, tools, backend, datasets): model-building
    tools that need packages the layer does not ship;
  - Powertools' event handler and utilities other than those its logger, metrics and tracer import (half
    its size, and the bytecode doubles whatever is left);
  - Pillow extensions for fonts, AVIF, colour management and Tk, and the bundled libraries only they use:
    serving decodes JPEG/PNG/WebP/GIF/BMP, all of which live in ``_imaging`` and ``_webp``;
  - symbols in the packages' own shared objects (``strip --strip-unneeded``) where the local strip
    understands the machine; never in the auditwheel-bundled ``*.libs``, which patchelf rewrote and strip
    corrupts ("ELF load command address/offset not page-aligned").

Bundled libraries are removed only when no remaining shared object needs them (read from ELF NEEDED
entries), so a wrong rule fails here, not at import time on Lambda.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

DIRECTORIES = [
    "**/__pycache__",
    "**/tests",
    "numpy/f2py",
    "numpy/_pyinstaller",
    "numpy/_core/include",
    "numpy/_core/lib",
    "onnxruntime/tools",
    "onnxruntime/transformers",
    "onnxruntime/quantization",
    "onnxruntime/backend",
    "onnxruntime/datasets",
    "aws_lambda_powertools/event_handler",
]
# Folders of which only these entries stay
KEEP_ONLY = {
    "aws_lambda_powertools/utilities": {"__init__.py", "jmespath_utils", "typing", "serialization.py"},
}
FILES = [
    "**/*.pyc",
    "**/*.pyi",
    "**/*.pxd",
    "**/*.a",
    "PIL/_avif.*.so",
    "PIL/_imagingft.*.so",
    "PIL/_imagingcms.*.so",
    "PIL/_imagingtk.*.so",
]
LIBRARY_DIRS = ["numpy.libs", "pillow.libs"]


def trim(root: Path, machine: str) -> None:
    for pattern in DIRECTORIES:
        for path in sorted(root.glob(pattern), reverse=True):
            if path.is_dir():
                shutil.rmtree(path)
    for folder, kept in KEEP_ONLY.items():
        for path in (root / folder).iterdir() if (root / folder).is_dir() else ():
            if path.name not in kept:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    for pattern in FILES:
        for path in root.glob(pattern):
            path.unlink()
    _remove_unneeded_libraries(root)
    _strip(root, machine)


def _needed(path: Path) -> set[str]:
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=False).stdout
    return set(re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out))


def _remove_unneeded_libraries(root: Path) -> None:
    bundled = {p.name: p for d in LIBRARY_DIRS for p in (root / d).glob("*.so*")}
    users = [p for p in root.rglob("*.so*") if p.parent.name not in LIBRARY_DIRS]
    wanted: set[str] = set()
    frontier = set().union(*(_needed(p) for p in users))
    while frontier:
        name = frontier.pop()
        if name in bundled and name not in wanted:
            wanted.add(name)
            frontier |= _needed(bundled[name])
    for name, path in bundled.items():
        if name not in wanted:
            path.unlink()


def _strip(root: Path, machine: str) -> None:
    strip = shutil.which("strip")
    if strip is None:
        print("trim: no strip on PATH; shared objects left as they are", file=sys.stderr)
        return
    for path in root.rglob("*.so*"):
        if path.parent.name in LIBRARY_DIRS:
            continue  # auditwheel rewrote these with patchelf; strip would corrupt their program headers
        result = subprocess.run([strip, "--strip-unneeded", str(path)], capture_output=True, check=False)
        if result.returncode != 0:
            print(f"trim: strip could not handle {path.name} ({machine}); left unstripped", file=sys.stderr)


def size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--machine", default="x86_64")
    args = parser.parse_args()
    before = size(args.root)
    trim(args.root, args.machine)
    after = size(args.root)
    print(f"runtime layer: {before / 1e6:.1f} MB installed, {after / 1e6:.1f} MB after trimming (unzipped)")


if __name__ == "__main__":
    main()
