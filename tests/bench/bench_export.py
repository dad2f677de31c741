"""The stage table for resnet18 and mobilenet_v3_small at 224x224, measured on this machine.

    python tests/bench/bench_export.py [--quick] [--only resnet18|mobilenet_v3_small|digits]

For each architecture the script trains once on synthetic shapes (no pretrained weights can be downloaded
here), mostly at 64 px and then at 224 px, saves the weights, and exports them twice with
`amaas export --weights`: once straight to INT8, once through ``--prune 0.5`` (one fine-tuning epoch) then
INT8. Every figure comes from the
manifests those exports write: held-out top-1, file size, parameters, MACs, and ORT p50 latency (batch 1,
1 thread) measured round-robin against the FP32 stage of the same export. It then checks the targets of
issue #3 and repeats the INT8 accuracy check for resnet18 on a real ImageFolder set: scikit-learn's bundled
handwritten digits (1797 8x8 scans) written out as PNG files in class folders.

Takes about 30 minutes on 2 cores; ``--quick`` cuts the data and epochs to check the script in a few.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO)]

TARGETS = {"int8_latency": 0.40, "int8_size": 0.27, "int8_drop": 1.0, "prune_macs": 0.55}


@dataclass(frozen=True)
class Plan:
    """Progressive resizing: most epochs at 64 px (fast), then a few at 224 px so the network adapts to the
    scale it is exported at. Training straight at 224 px would take resnet18 ~35 min here to converge."""

    arch: str
    small: tuple[str, int]  # data, epochs at 64 px
    large: tuple[str, int]  # data, epochs at 224 px (a different seed than the export's held-out split)
    export_data: str
    learning_rate: float
    prune_epochs: int = 1


def plans(quick: bool) -> list[Plan]:
    if quick:
        return [
            Plan("resnet18", ("synthetic:300", 1), ("synthetic:100", 1), "synthetic:300", 0.002),
            Plan("mobilenet_v3_small", ("synthetic:300", 1), ("synthetic:100", 1), "synthetic:300", 0.001),
        ]
    return [
        Plan("resnet18", ("synthetic:6000", 8), ("synthetic:1500", 3), "synthetic:4000", 0.002),
        # MobileNetV3 does not train at all here at 3e-3 or more (10-13% after 12 epochs); 1e-3 reaches 93% at 64 px
        # and half its channels gone need more than one epoch to recover (1 epoch: 92% -> 13%)
        Plan("mobilenet_v3_small", ("synthetic:6000", 12), ("synthetic:1500", 4), "synthetic:4000", 0.001, 4),
    ]


def train_weights(plan: Plan, folder: Path, log: Any) -> Path:
    """Trains with the export's own data and training code; returns the saved state dict."""
    import torch

    from amaas.artifact.manifest import Preprocessing
    from amaas_export import data
    from amaas_export.models import build_model
    from amaas_export.train import train

    torch.manual_seed(0)
    model = None
    # Synthetic phases draw fresh images (other seeds than the export's held-out split); an ImageFolder
    # keeps seed 0 everywhere so its held-out split stays the same images in training and export.
    seeds = (1, 2) if plan.small[0].startswith("synthetic") else (0, 0)
    for side, (spec, epochs), seed in ((64, plan.small, seeds[0]), (224, plan.large, seeds[1])):
        dataset = data.load(spec, Preprocessing(side, side, (0, 0, 0), (1, 1, 1)), seed=seed)
        prep = Preprocessing(side, side, *data.mean_std(dataset.train))
        model = model or build_model(plan.arch, len(dataset.labels))
        log(f"train {plan.arch} on {spec} at {side} px, {epochs} epochs")
        rate = plan.learning_rate if side == 64 else plan.learning_rate / 2
        train(model, dataset.train, dataset.test, prep, epochs=epochs, batch_size=32, learning_rate=rate, seed=seed,
              report=lambda e: log(f"  {e}"))  # fmt: skip
    assert model is not None
    path = folder / f"{plan.arch}.pt"
    torch.save(model.state_dict(), path)
    return path


def export(folder: Path, name: str, log: Any, **options: Any) -> dict[str, Any]:
    from amaas_export.config import ExportConfig
    from amaas_export.pipeline import run_export

    # The benchmark measures; it does not gate (the targets are checked and printed below instead).
    gates = {"max_accuracy_drop": 100, "max_prune_drop": 100}
    config = ExportConfig.from_options({"out": folder / name, "image_size": 224, **gates, **options})
    started = time.perf_counter()
    manifest = run_export(config, log=lambda line: log(f"  [{name}] {line}")).manifest
    return {"manifest": manifest, "seconds": time.perf_counter() - started}


def table(title: str, rows: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
    print(f"\n{title}")
    print(
        f"{'stage':<13} {'top-1':>7} {'size MB':>8} {'params M':>9} {'MACs M':>9} {'p50 ms':>8}"
        f" {'size x':>7} {'MACs x':>7} {'latency x':>9}"
    )
    for name, stage, base in rows:
        print(
            f"{name:<13} {stage['top1']:>7.2%} {stage['bytes'] / 1e6:>8.2f} {stage['params'] / 1e6:>9.3f} "
            f"{stage['macs'] / 1e6:>9.1f} {stage['latency_ms']:>8.2f} {stage['bytes'] / base['bytes']:>7.3f} "
            f"{stage['macs'] / base['macs']:>7.3f} {stage['latency_ms'] / base['latency_ms']:>9.3f}"
        )


def stages(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in result["manifest"].details["stages"]}


def check(label: str, value: float, limit: float, unit: str = "x") -> bool:
    ok = value <= limit
    print(f"  {'PASS' if ok else 'MISS'}  {label}: {value:.3f}{unit} (target <= {limit}{unit})")
    return ok


def write_digits(root: Path) -> Path:
    """scikit-learn's digits (bundled with the package, no download) as an ImageFolder tree of PNGs."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for index, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        folder = root / f"digit_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (255 - image * (255 / 16)).astype(np.uint8)  # dark ink on white paper
        Image.fromarray(pixels, mode="L").resize((32, 32), Image.Resampling.BICUBIC).save(folder / f"{index}.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data, to check the script itself")
    parser.add_argument("--only", choices=("resnet18", "mobilenet_v3_small", "digits"), help="one part of the run")
    args = parser.parse_args()
    started = time.perf_counter()

    def log(line: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f}s] {line}", flush=True)

    outcomes: list[bool] = []
    with tempfile.TemporaryDirectory(prefix="amaas-bench-") as tmp:
        folder = Path(tmp)
        for plan in plans(args.quick):
            if args.only and plan.arch != args.only:
                continue
            weights = train_weights(plan, folder, log)
            common = {"arch": plan.arch, "data": plan.export_data, "weights": str(weights), "batch_size": 32}
            plain = export(folder, f"{plan.arch}-int8", log, **common)
            pruned = export(
                folder,
                f"{plan.arch}-pruned",
                log,
                **common,
                prune=0.5,
                prune_epochs=plan.prune_epochs,
                learning_rate=plan.learning_rate / 2,
            )
            a, b = stages(plain), stages(pruned)
            title = f"{plan.arch} at 224x224, held-out {plan.export_data}"
            table(
                f"{title}; ratios vs the FP32 stage of the same export",
                [("fp32", a["fp32"], a["fp32"]), ("int8", a["int8"], a["fp32"]),
                 ("pruned 0.5", b["pruned"], b["fp32"]), ("pruned+int8", b["int8"], b["fp32"])],
            )  # fmt: skip
            drop = plain["manifest"].metrics["top1_drop_points"]
            print(f"  exports took {plain['seconds']:.0f}s and {pruned['seconds']:.0f}s")
            if plan.arch == "resnet18":
                latency = a["int8"]["latency_ms"] / a["fp32"]["latency_ms"]
                macs = b["pruned"]["macs"] / b["fp32"]["macs"]
                outcomes += [
                    check("resnet18 INT8 latency vs FP32", latency, TARGETS["int8_latency"]),
                    check("resnet18 INT8 size vs FP32", a["int8"]["bytes"] / a["fp32"]["bytes"], TARGETS["int8_size"]),
                    check("resnet18 INT8 top-1 drop, synthetic", drop, TARGETS["int8_drop"], " points"),
                    check("resnet18 --prune 0.5 MACs vs unpruned", macs, TARGETS["prune_macs"]),
                ]
            else:
                print(f"  INT8 top-1 drop {drop:+.2f} points")

        if args.only in (None, "digits"):
            root = write_digits(folder / "digits")
            spec = f"imagefolder:{root}"
            log("resnet18 on scikit-learn digits (ImageFolder, 10 classes, 1797 images)")
            digits_plan = Plan("resnet18", (spec, 1 if args.quick else 15), (spec, 1 if args.quick else 3), spec, 0.002)
            weights = train_weights(digits_plan, folder, log)
            digits = export(
                folder, "digits-model", log, arch="resnet18", data=spec, weights=str(weights), batch_size=32
            )
            d = stages(digits)
            table(
                "resnet18 on the digits ImageFolder set at 224x224",
                [("fp32", d["fp32"], d["fp32"]), ("int8", d["int8"], d["fp32"])],
            )
            drop = digits["manifest"].metrics["top1_drop_points"]
            outcomes.append(check("resnet18 INT8 top-1 drop, ImageFolder", drop, 1.0, " points"))
    print(f"\n{sum(outcomes)}/{len(outcomes)} targets met; total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
