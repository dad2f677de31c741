"""``amaas lambda invoke``: run a built function on this machine the way AWS Lambda runs it, without Docker.

    amaas lambda invoke ApiFunction -e tests/events/classify_png.json -e tests/events/health.json

Each response is printed on stdout, one JSON document per line; the function's logs and Lambda's START, END
and REPORT lines go to stderr. Several events go through one warm process, as Lambda reuses a sandbox.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from amaas_cli.lambda_local.errors import LambdaSetupError


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="amaas lambda", description="Run built Lambda functions locally, no Docker.")
    commands = parser.add_subparsers(dest="command", required=True)
    invoke = commands.add_parser("invoke", help="invoke a function of a `sam build` with events")
    invoke.add_argument("function", help="the function's logical id in the template, such as ApiFunction")
    invoke.add_argument(
        "-e", "--event", action="append", required=True, type=Path,
        help="an event file (repeat for several; `-` reads stdin); one warm process runs them all",
    )  # fmt: skip
    invoke.add_argument("--build-dir", type=Path, default=Path(".aws-sam/build"), help="default: %(default)s")
    invoke.add_argument("--parameter-overrides", nargs="+", default=[], metavar="KEY=VALUE",
                        help="template parameter values")  # fmt: skip
    invoke.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra environment variable for the function, such as AWS_ENDPOINT_URL")  # fmt: skip
    invoke.add_argument("-X", dest="python_x", action="append", default=[], metavar="OPTION",
                        help="a python -X option for the runtime process, such as importtime")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        return _invoke(args)
    except LambdaSetupError as exc:
        print(f"amaas lambda: {exc}", file=sys.stderr)
        return 2


def _pairs(values: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise LambdaSetupError(f"{what} {value!r} is not KEY=VALUE")
        pairs[key] = rest
    return pairs


def _invoke(args: argparse.Namespace) -> int:
    from amaas_cli.lambda_local.function import LocalLambda

    events = []
    for path in args.event:
        try:
            text = sys.stdin.read() if str(path) == "-" else path.read_text()
            events.append(json.loads(text))
        except (OSError, ValueError) as exc:
            raise LambdaSetupError(f"cannot read event {path}: {exc}") from exc
    overrides = _pairs(args.parameter_overrides, "parameter override")
    env = _pairs(args.env, "--env")
    options = [part for x in args.python_x for part in ("-X", x)]

    def echo(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    failed = 0
    with LocalLambda(args.build_dir, args.function, env=env, parameter_overrides=overrides, echo=echo,
                     python_options=options) as function:  # fmt: skip
        for path, event in zip(args.event, events, strict=True):
            result = function.invoke(event)
            print(result.raw.decode(errors="replace"), flush=True)
            if result.error is not None:
                failed += 1
                print(f"amaas lambda: {path}: {result.error.error_type}: {result.error.message}", file=sys.stderr)
    return 1 if failed else 0
