"""The ``amaas`` command: ``export`` a model, ``serve`` it locally, or run the ``demo``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="amaas", description="Image models as a serverless service.")
    commands = parser.add_subparsers(dest="command", required=True)

    from amaas_export import cli as export_cli

    export_cli.add_arguments(commands.add_parser("export", help="train or load, quantize and package a model"))

    serve = commands.add_parser("serve", help="serve a model artifact on a local HTTP server")
    _add_serve_arguments(serve)

    demo = commands.add_parser("demo", help="serve, classify sample images, keep serving")
    _add_serve_arguments(demo)
    demo.add_argument("--samples", type=Path, default=Path("dist/samples"), help="where to write sample images")

    args = parser.parse_args(argv)
    if args.command == "export":
        return export_cli.run(args)
    from amaas import local

    if args.command == "serve":
        return local.serve(args.model_dir, host=args.host, port=args.port, threads=args.threads)
    return local.demo(args.model_dir, host=args.host, port=args.port, threads=args.threads, samples=args.samples)


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", type=Path, help="artifact directory (default: $AMAAS_MODEL_DIR or dist/model)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads (default: $AMAAS_ORT_THREADS or 1)")
