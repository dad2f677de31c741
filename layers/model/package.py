"""Copies a verified model artifact into a layer directory.

Only the manifest and the files it lists are copied, after their sha256 has been checked, so the layer
holds exactly what the export produced and the API will accept at load time.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from amaas.artifact.manifest import MANIFEST_FILE, read_manifest, verify_files
from amaas.errors import ManifestError


def package(artifact: Path, target: Path) -> None:
    manifest = read_manifest(artifact)
    verify_files(artifact, manifest)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in (MANIFEST_FILE, *manifest.files):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(artifact / name, target / name)
    total = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"model layer: {manifest.name} {manifest.version}, {len(manifest.files) + 1} files, {total / 1e6:.2f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path, help="directory written by amaas export")
    parser.add_argument("target", type=Path, help="layer directory to fill (becomes /opt/model)")
    args = parser.parse_args()
    try:
        package(args.artifact, args.target)
    except ManifestError as exc:
        sys.exit(f"model layer: {args.artifact} is not a deployable artifact: {exc.message}. Run `amaas export` first.")


if __name__ == "__main__":
    main()
