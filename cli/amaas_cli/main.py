"""The ``amaas`` command: ``export`` a model, ``serve`` it locally, run the ``demo``, ``batch`` classify, or run a
built function under a local ``lambda`` runtime."""

from __future__ import annotations

import argparse
import sys
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

    batch = commands.add_parser("batch", help="classify a folder of images, locally or on the deployed stack")
    jobs = batch.add_subparsers(dest="batch_command", required=True)
    run = jobs.add_parser("run", help="classify a local folder with no AWS at all")
    run.add_argument("folder", type=Path)
    run.add_argument("--out", type=Path, help="results folder (default: <folder>-results)")
    run.add_argument("--model-dir", type=Path, help="artifact directory (default: $AMAAS_MODEL_DIR or dist/model)")
    run.add_argument("--top-k", type=int, default=3)
    run.add_argument(
        "--workers", type=_workers, default=1, help="processes, each with its own model (0: one per core; default 1)"
    )
    submit = jobs.add_parser("submit", help="upload a folder to the batch bucket (S3 -> SQS -> Lambda)")
    submit.add_argument("folder", type=Path)
    submit.add_argument("--bucket", required=True, help="the stack's BatchBucketName output")
    submit.add_argument("--prefix", help="job name under incoming/ (default: <folder>-<UTC time>)")
    results = jobs.add_parser("results", help="gather a job's results into one table and its summary.jsonl")
    results.add_argument("--bucket")
    results.add_argument("--prefix", help="the job name submit printed")
    results.add_argument("--out", type=Path, help="also write the results as JSON lines")
    from amaas_cli import batch_jobs  # `start`, `status` and `results JOB`: Step Functions jobs (local tools)

    batch_jobs.add_results_arguments(results)
    batch_jobs.add_parsers(jobs)

    # Everything after `lambda` is parsed by amaas_cli, imported only when used (it is not in the Lambda bundle).
    local_lambda = commands.add_parser(
        "lambda", help="run a built function the way AWS Lambda does, without Docker", add_help=False, prefix_chars="\0"
    )
    local_lambda.add_argument("args", nargs=argparse.REMAINDER)

    args = parser.parse_args(argv)
    if args.command == "lambda":
        from amaas_cli.lambda_local.cli import main as lambda_main

        return lambda_main(args.args)
    if args.command == "export":
        return export_cli.run(args)
    if args.command == "batch":
        return _batch(args)
    from amaas_cli import serve as local

    if args.command == "serve":
        return local.serve(args.model_dir, host=args.host, port=args.port, threads=args.threads)
    return local.demo(args.model_dir, host=args.host, port=args.port, threads=args.threads, samples=args.samples)


def _workers(text: str) -> int:
    if not text.isdecimal():
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of worker processes (0 or more)")
    return int(text)


def _batch(args: argparse.Namespace) -> int:
    from amaas_cli import jobs

    if args.batch_command in ("start", "status") or (args.batch_command == "results" and args.job):
        from amaas_cli import batch_jobs

        return batch_jobs.main(args)
    if args.batch_command == "results" and not (args.bucket and args.prefix):
        print("amaas batch results: give a job id, or --bucket and --prefix", file=sys.stderr)
        return 2

    if args.batch_command == "run":
        from amaas.errors import ModelUnavailableError
        from amaas.serving import serving_model
        from amaas_cli.batch_local import run_local, run_parallel, worker_count
        from amaas_cli.serve import local_settings

        if not args.folder.is_dir():
            print(f"amaas batch run: {args.folder} is not a folder", file=sys.stderr)
            return 2
        settings = local_settings(args.model_dir, None)
        out = args.out or args.folder.with_name(args.folder.name + "-results")
        workers = worker_count(args.workers)
        try:
            if workers == 1:
                results = run_local(serving_model(settings), args.folder, out, args.top_k)
            else:
                results = run_parallel(settings, args.folder, out, args.top_k, workers)
        except ModelUnavailableError as exc:
            print(f"amaas batch run: cannot load {settings.model_dir}: {exc.message}", file=sys.stderr)
            return 2
        print(jobs.table(results))
        print(f"results: {out}/ (one JSON per image, summary.jsonl)")
        return 0

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = boto3.client("s3")
    try:
        return _batch_aws(args, s3)
    except (BotoCoreError, ClientError) as exc:  # no credentials, no such bucket, access denied: say so, briefly
        print(f"amaas batch {args.batch_command}: AWS refused or could not be reached: {exc}", file=sys.stderr)
        return 2


def _batch_aws(args: argparse.Namespace, s3: object) -> int:
    from amaas.batch import json_lines
    from amaas_cli import jobs

    if args.batch_command == "submit":
        if not args.folder.is_dir():
            print(f"amaas batch submit: {args.folder} is not a folder", file=sys.stderr)
            return 2
        prefix = args.prefix or jobs.default_prefix(args.folder)
        count = jobs.submit(args.folder, args.bucket, prefix, s3)
        print(f"submitted {count} images to s3://{args.bucket}/incoming/{prefix}/")
        print(f"gather with: amaas batch results --bucket {args.bucket} --prefix {prefix}")
        return 0
    gathered = jobs.gather(args.bucket, args.prefix, s3)
    print(jobs.table(gathered.results))
    if gathered.pending:
        print(f"{len(gathered.pending)} images have no result yet")
    summary = jobs.write_summary(args.bucket, args.prefix, gathered.results, s3)
    print(f"summary: s3://{args.bucket}/{summary}")
    if args.out:
        args.out.write_bytes(json_lines(gathered.results))
    return 0


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", type=Path, help="artifact directory (default: $AMAAS_MODEL_DIR or dist/model)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads (default: $AMAAS_ORT_THREADS or 1)")
