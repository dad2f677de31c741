from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from amaas.cli import main
from amaas.manifest import Manifest, read_manifest
from tests.helpers import LambdaContext

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture(scope="session")
def handler_module(artifact: Path) -> Iterator[Any]:
    """amaas.handlers.api imported the way Lambda imports it: once, with the environment template.yaml sets."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AMAAS_MODEL_DIR", str(artifact))
        patch.setenv("AMAAS_ORT_THREADS", "1")
        sys.modules.pop("amaas.handlers.api", None)
        module = importlib.import_module("amaas.handlers.api")
        yield module
        sys.modules.pop("amaas.handlers.api", None)


@pytest.fixture
def invoke(handler_module: Any) -> Invoke:
    """Calls the Lambda handler with an API Gateway event, as the Lambda runtime does."""

    def call(event: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = handler_module.handler(event, LambdaContext())
        return response

    return call


@dataclass
class ExportRun:
    """One `amaas export` run through the real CLI entry point."""

    code: int
    out: Path
    stdout: str
    stderr: str

    @property
    def manifest(self) -> Manifest:
        assert self.code == 0, self.stderr
        return read_manifest(self.out)

    def stage(self, name: str) -> dict[str, Any]:
        stages: list[dict[str, Any]] = self.manifest.details["stages"]
        return next(s for s in stages if s["name"] == name)


Export = Callable[..., ExportRun]


@pytest.fixture
def export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Export:
    """Runs `amaas export ARGS --out <fresh dir>` in-process and captures what it prints."""
    runs = iter(range(1000))

    def run(*args: str, out: Path | None = None) -> ExportRun:
        target = out or tmp_path / f"model-{next(runs)}"
        code = main(["export", *args, "--out", str(target)])
        captured = capsys.readouterr()
        return ExportRun(code, target, captured.out, captured.err)

    return run
