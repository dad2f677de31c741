from __future__ import annotations

import importlib
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from amaas.artifact.manifest import Manifest, read_manifest
from amaas_cli.main import main
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
    """Runs `amaas export ARGS --out <fresh dir>` in-process and captures what it prints.

    Normalisation stays outside the graph unless a test asks (or its --config says) otherwise: ``auto`` decides
    by timing, and the model's input layout must not depend on how busy the machine is."""
    runs = iter(range(1000))

    def run(*args: str, out: Path | None = None) -> ExportRun:
        if "--fold-normalization" not in args and "--config" not in args:
            args = (*args, "--fold-normalization", "off")
        target = out or tmp_path / f"model-{next(runs)}"
        code = main(["export", *args, "--out", str(target)])
        captured = capsys.readouterr()
        return ExportRun(code, target, captured.out, captured.err)

    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def amaas(*args: str) -> list[str]:
    """The `amaas` command, run by this interpreter."""
    return [sys.executable, "-c", "import sys; from amaas_cli.main import main; sys.exit(main())", *args]


@pytest.fixture(scope="session")
def local_server(artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`amaas serve` on 127.0.0.1 with the fixture model; yields its URL. Its log goes to a file: a pipe nobody
    reads fills up (64 kB of JSON log lines) and then blocks the server mid-request."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        amaas("serve", "--model-dir", str(artifact), "--port", str(port)),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        process.kill()
        process.wait()
        pytest.fail(f"amaas serve did not come up:\n{log_path.read_text()}")
    yield url
    process.send_signal(signal.SIGINT)
    # uvicorn shuts down gracefully, then re-raises the signal, as a Ctrl-C'd program should
    assert process.wait(timeout=20) in (0, -signal.SIGINT), "Ctrl-C stops the server"
    log.close()


@pytest.fixture(scope="session")
def lambda_url(handler_module: Any) -> Iterator[str]:
    """The Lambda handler behind an emulated API Gateway stage (tests/gateway.py); yields the stage URL."""
    from tests.gateway import api_gateway

    with api_gateway(handler_module.handler) as url:
        yield url


@pytest.fixture(params=["local", "lambda"])
def base_url(request: pytest.FixtureRequest) -> str:
    """Both ways the API is served: `amaas serve`, and the Lambda handler behind API Gateway."""
    fixture = "local_server" if request.param == "local" else "lambda_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture(scope="session")
def lambda_runtime_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder holding the local Lambda runtime (python3.13 venv + awslambdaric and boto3 from PyPI),
    built once for the session as `amaas lambda` builds it on first use; skipped without python3.13."""
    from amaas_cli.lambda_local import LambdaSetupError
    from amaas_cli.lambda_local.runtime_dir import ensure_runtime, find_python

    try:
        python = find_python("3.13", "x86_64" if platform.machine() == "x86_64" else "arm64")
    except LambdaSetupError as exc:
        pytest.skip(str(exc))
    cache = tmp_path_factory.mktemp("xdg-cache") / "amaas"  # where `amaas lambda` looks with XDG_CACHE_HOME set
    ensure_runtime(python, cache=cache)
    return cache
