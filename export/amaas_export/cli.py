"""``amaas export``: flags → ``ExportConfig`` → ``run_export``. Importing this module does not import torch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from amaas_export.config import DEFAULT_EPOCHS, ExportConfig
from amaas_export.errors import ExportError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ExportConfig()
    parser.add_argument("--arch", default=defaults.arch, help="cifar-cnn or a torchvision classifier (resnet18, ...)")
    parser.add_argument(
        "--data",
        default=defaults.data,
        help="synthetic[:N], imagefolder:PATH or cifar10:PATH (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, default=defaults.out, help="artifact directory (default: %(default)s)")
    parser.add_argument(
        "--epochs",
        type=int,
        help=f"training epochs (default: {DEFAULT_EPOCHS}, or 0 when --weights is given)",
    )
    parser.add_argument("--weights", type=Path, help="state dict to start from (loaded with weights_only=True)")
    parser.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=defaults.max_accuracy_drop,
        help="largest INT8 top-1 drop below FP32 allowed, in points (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--image-size", type=int, help="input side in pixels (default: 32)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--calibration-samples", type=int, default=defaults.calibration_samples)
    parser.add_argument("--name", help="model name in the manifest (default: <arch>-<data source>)")
    parser.add_argument("--model-version", dest="version", help="model version (default: sha256 prefix)")


def run(args: argparse.Namespace) -> int:
    try:
        config = ExportConfig(
            arch=args.arch,
            data=args.data,
            out=args.out,
            epochs=args.epochs,
            weights=args.weights,
            max_accuracy_drop=args.max_accuracy_drop,
            seed=args.seed,
            image_size=args.image_size,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            calibration_samples=args.calibration_samples,
            name=args.name,
            version=args.version,
        )
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
