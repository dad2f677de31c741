"""``amaas export``: flags (and ``--config FILE``) → ``ExportConfig`` → ``run_export``.

Flags given on the command line override the file. Importing this module does not import torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from amaas_export.config import (
    CALIBRATION_METHODS,
    FOLD_MODES,
    OPTIMIZE_LEVELS,
    QUANT_TYPES,
    QUANTIZE_MODES,
    ExportConfig,
    read_config_file,
)
from amaas_export.errors import ExportError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    suppress = argparse.SUPPRESS
    parser.argument_default = suppress
    parser.add_argument("--config", type=Path, help="TOML file of options (keys named like these flags)")

    source = parser.add_argument_group("model source")
    source.add_argument(
        "--arch", help="cifar-cnn (default), a torchvision classifier (resnet18, ...) or package.module:Class"
    )
    source.add_argument("--weights", help="state dict file (weights_only) or torchvision weights name (IMAGENET1K_V1)")
    source.add_argument("--num-classes", type=int, help="expected number of classes (checked against the data)")
    source.add_argument("--freeze-backbone", action="store_true", help="train only the classifier head")
    source.add_argument("--from-onnx", type=Path, help="an existing ONNX classifier: skip torch entirely")
    source.add_argument("--labels", dest="labels_file", type=Path, help="with --from-onnx: class names, one per line")

    data = parser.add_argument_group("data and preprocessing")
    data.add_argument("--data", help="synthetic[:N] (default), imagefolder:PATH or cifar10:PATH")
    data.add_argument("--image-size", type=int, help="model input side (default: 32 cifar-cnn, weights' crop, or 224)")
    data.add_argument("--resize", type=int, help="shorter side before the centre crop (default: --image-size)")
    data.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"), help="normalisation mean")
    data.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"), help="normalisation std")
    data.add_argument("--channel-order", choices=("RGB", "BGR"))
    data.add_argument("--interpolation", choices=("nearest", "bilinear", "bicubic"))

    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=int, help="training epochs (default 20, or 0 with --weights)")
    training.add_argument("--batch-size", type=int)
    training.add_argument("--learning-rate", type=float)
    training.add_argument("--seed", type=int)

    optimization = parser.add_argument_group("optimization")
    optimization.add_argument("--prune", type=float, help="fraction of channels to remove (structured), e.g. 0.5")
    optimization.add_argument("--prune-epochs", type=int, help="fine-tuning epochs after pruning")
    optimization.add_argument("--quantize", choices=QUANTIZE_MODES, help="int8 (default), auto, or none")
    optimization.add_argument("--calibration", choices=CALIBRATION_METHODS)
    optimization.add_argument("--per-tensor", dest="per_channel", action="store_false", help="one scale per tensor")
    optimization.add_argument("--activation-type", choices=QUANT_TYPES)
    optimization.add_argument("--weight-type", choices=QUANT_TYPES)
    optimization.add_argument("--float-nodes", help="comma-separated node names to keep in float")
    optimization.add_argument("--calibration-samples", type=int)
    optimization.add_argument("--require-int8", action="store_true", help="with --quantize auto: fail, never ship FP32")
    optimization.add_argument(
        "--fold-normalization", choices=FOLD_MODES, help="uint8 input, normalisation in the graph"
    )
    optimization.add_argument("--optimize", choices=OPTIMIZE_LEVELS, help="ORT graph optimizations to bake in")

    gates = parser.add_argument_group("gates")
    gates.add_argument("--max-accuracy-drop", type=float, help="INT8 vs float top-1 drop allowed, points (1.0)")
    gates.add_argument("--max-prune-drop", type=float, help="pruned vs unpruned top-1 drop allowed, points (2.0)")
    gates.add_argument("--parity-tolerance", type=float, help="ONNX vs torch max |logit difference| (1e-4)")
    gates.add_argument("--max-size-mb", type=float, help="served model size budget (100)")

    output = parser.add_argument_group("output")
    output.add_argument("--out", type=Path, help="artifact directory (default dist/model)")
    output.add_argument("--name", help="model name (default <arch>-<data source>)")
    output.add_argument("--model-version", dest="version", help="model version (default: sha256 prefix)")


def build_config(args: argparse.Namespace) -> ExportConfig:
    options = dict(vars(args))
    options.pop("command", None)
    path = options.pop("config", None)
    merged = {**(read_config_file(path) if path else {}), **options}
    return ExportConfig.from_options(merged)


def run(args: argparse.Namespace) -> int:
    try:
        config = build_config(args)
        from amaas_export.pipeline import run_export

        run_export(config)
    except ExportError as exc:
        print(f"amaas export: error: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        print(
            f"amaas export: error: {exc.name} is not installed; install the export extra: pip install 'amaas[export]'",
            file=sys.stderr,
        )
        return 1
    return 0
