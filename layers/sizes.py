"""Prints the unzipped size of every built function with its layers and fails past Lambda's limits.

Run after ``sam build`` (``make build`` does): ``python layers/sizes.py .aws-sam/build``. Lambda refuses a
function whose code plus layers exceed 250 MB unzipped (262,144,000 bytes) or that uses more than 5 layers.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

LIMIT_BYTES = 262_144_000
MAX_LAYERS = 5
RUNTIME_LAYER_GOAL_BYTES = 150_000_000


@dataclass(frozen=True)
class FunctionSize:
    name: str
    code: int
    layers: dict[str, int]

    @property
    def total(self) -> int:
        return self.code + sum(self.layers.values())


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def measure(build_dir: Path) -> list[FunctionSize]:
    template: dict[str, Any] = yaml.safe_load((build_dir / "template.yaml").read_text())
    resources: dict[str, Any] = template.get("Resources", {})
    global_layers = template.get("Globals", {}).get("Function", {}).get("Layers", [])
    sizes = []
    for name, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        layers = resource.get("Properties", {}).get("Layers", global_layers)
        layer_ids = [layer["Ref"] for layer in layers if isinstance(layer, dict) and "Ref" in layer]
        sizes.append(
            FunctionSize(
                name=name,
                code=tree_size(build_dir / name),
                layers={layer: tree_size(build_dir / layer) for layer in layer_ids},
            )
        )
    return sizes


def report(sizes: list[FunctionSize]) -> list[str]:
    """Prints a table and returns the list of limits broken."""
    problems = []
    print(f"{'function':<24} {'code MB':>8} {'layers MB':>10} {'total MB':>9}  (limit {LIMIT_BYTES / 1e6:.1f} MB)")
    for size in sizes:
        layers = sum(size.layers.values())
        print(f"{size.name:<24} {size.code / 1e6:>8.2f} {layers / 1e6:>10.2f} {size.total / 1e6:>9.2f}")
        for layer, layer_size in size.layers.items():
            print(f"  {layer:<22} {layer_size / 1e6:>19.2f}")
        if size.total > LIMIT_BYTES:
            problems.append(
                f"{size.name} is {size.total / 1e6:.1f} MB unzipped; Lambda's limit is {LIMIT_BYTES / 1e6:.1f} MB"
            )
        if len(size.layers) > MAX_LAYERS:
            problems.append(f"{size.name} uses {len(size.layers)} layers; Lambda allows {MAX_LAYERS}")
    runtime = max((s.layers.get("RuntimeLayer", 0) for s in sizes), default=0)
    if runtime > RUNTIME_LAYER_GOAL_BYTES:
        print(f"note: RuntimeLayer is {runtime / 1e6:.1f} MB, above the {RUNTIME_LAYER_GOAL_BYTES / 1e6:.0f} MB goal")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_dir", type=Path, nargs="?", default=Path(".aws-sam/build"))
    args = parser.parse_args()
    if not (args.build_dir / "template.yaml").is_file():
        sys.exit(f"sizes: no built template in {args.build_dir}; run sam build first")
    problems = report(measure(args.build_dir))
    if problems:
        sys.exit("sizes: over Lambda's limits:\n  " + "\n  ".join(problems))


if __name__ == "__main__":
    main()
