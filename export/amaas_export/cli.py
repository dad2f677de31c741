"""``amaas export``: flags (and ``--config FILE``) → ``ExportConfig`` → ``run_export``.

Flags given on the command line override the file, both ways for on/off options (``--no-freeze-backbone``).
Importing this module does not import torch.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from amaas.artifact.manifest import INTERPOLATIONS, LAYOUTS
from amaas.artifact.tasks import TASKS
from amaas_export.config import (
    CALIBRATION_METHODS,
    FOLD_MODES,
    OPTIMIZE_LEVELS,
    QUANT_TYPES,
    QUANTIZE_MODES,
    ExportConfig,
    canonical_options,
    read_config_file,
)
from amaas_export.errors import ExportError

# Exit codes: 1 for an export that cannot or must not ship (bad options or data, a failed gate); 2 is
# argparse's own for unusable flags; 3 for a bug in amaas itself.
EXIT_REFUSED = 1
EXIT_INTERNAL = 3
DEBUG_ENV = "AMAAS_DEBUG"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    suppress = argparse.SUPPRESS
    parser.argument_default = suppress
    on_off = argparse.BooleanOptionalAction
    parser.add_argument("--config", type=Path, help="TOML file of options (keys named like these flags)")

    source = parser.add_argument_group("model source")
    source.add_argument("--task", choices=tuple(TASKS), help="what the model does (default classification)")
    source.add_argument(
        "--arch", help="cifar-cnn (default), a torchvision classifier (resnet18, ...) or package.module:Class"
    )
    source.add_argument("--weights", help="state dict file (weights_only) or torchvision weights name (IMAGENET1K_V1)")
    source.add_argument("--num-classes", type=int, help="expected number of classes (checked against the data)")
    source.add_argument("--freeze-backbone", action=on_off, help="train only the classifier head")
    source.add_argument("--from-onnx", type=Path, help="an existing ONNX classifier: skip torch entirely")
    source.add_argument(
        "--from-keras", type=Path, help="a Keras model (.keras file), converted with tf2onnx (amaas[tensorflow])"
    )
    source.add_argument(
        "--from-savedmodel", type=Path, help="a TensorFlow SavedModel directory, converted with tf2onnx"
    )
    source.add_argument(
        "--labels", dest="labels_file", type=Path, help="class names, one per line (default: the data's classes)"
    )
    source.add_argument("--layout", choices=LAYOUTS, help="imported model's input layout (default: from its shape)")
    source.add_argument(
        "--task-config", type=Path, help="with --from-onnx: JSON of the task's manifest section (its outputs' layout)"
    )

    data = parser.add_argument_group("data and preprocessing")
    data.add_argument("--data", help="synthetic[:N] (default), imagefolder:PATH or cifar10:PATH")
    data.add_argument("--image-size", type=int, help="model input side (default: 32 cifar-cnn, weights' crop, or 224)")
    data.add_argument("--resize", type=int, help="shorter side before the centre crop (default: --image-size)")
    data.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"), help="normalisation mean")
    data.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"), help="normalisation std")
    data.add_argument("--channel-order", choices=("RGB", "BGR"))
    data.add_argument(
        "--scale",
        type=_number,
        help="imported model: pixels are multiplied by this before --mean/--std (default 1/255; 1 for a graph "
        "that scales 0..255 pixels itself, as a Keras Rescaling layer does)",
    )
    data.add_argument(
        "--interpolation", choices=INTERPOLATIONS, help="resize filter (default: the weights', or bilinear)"
    )

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
    optimization.add_argument(
        "--per-channel", action=on_off, help="one weight scale per output channel (default), or per tensor"
    )
    optimization.add_argument("--per-tensor", dest="per_channel", action="store_false", help="= --no-per-channel")
    optimization.add_argument("--activation-type", choices=QUANT_TYPES)
    optimization.add_argument("--weight-type", choices=QUANT_TYPES)
    optimization.add_argument("--float-nodes", help="comma-separated node names to keep in float")
    optimization.add_argument("--calibration-samples", type=int)
    optimization.add_argument("--require-int8", action=on_off, help="with --quantize auto: fail rather than ship FP32")
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


def _number(text: str) -> float:
    """A number or a fraction: ``1``, ``0.5``, ``1/255``."""
    numerator, slash, denominator = text.partition("/")
    try:
        return float(numerator) / float(denominator) if slash else float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a number or a fraction: {text!r}") from None


def build_config(args: argparse.Namespace) -> ExportConfig:
    options = dict(vars(args))
    options.pop("command", None)
    path = options.pop("config", None)
    from_file = canonical_options(read_config_file(path)) if path else {}
    return ExportConfig.from_options({**from_file, **canonical_options(options)})


def run(args: argparse.Namespace) -> int:
    """Runs the export; every failure is one line on stderr and a non-zero exit, never a traceback (unless
    ``AMAAS_DEBUG=1``, for a bug report)."""
    try:
        config = build_config(args)
        from amaas_export.pipeline import run_export

        run_export(config)
    except ExportError as exc:
        print(f"amaas export: error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except ModuleNotFoundError as exc:
        print(
            f"amaas export: error: {exc.name} is not installed; install the export extra: pip install 'amaas[export]'",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    except Exception as exc:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        message = " ".join(str(exc).split())[:500]
        print(
            f"amaas export: internal error ({exc.__class__.__name__}): {message}\n"
            f"This is a bug in amaas; run again with {DEBUG_ENV}=1 to see the traceback, and report it.",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    return 0
