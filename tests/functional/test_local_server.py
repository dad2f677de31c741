"""`amaas serve`: the same app on a real HTTP server on 127.0.0.1, driven over the loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from amaas.manifest import read_manifest
from tests.helpers import event_image, load_event


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def amaas(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from amaas.cli import main; sys.exit(main())", *args]


@pytest.fixture(scope="module")
def server(artifact: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        amaas("serve", "--model-dir", str(artifact), "--port", str(port)),
        stdout=subprocess.PIPE,
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
        pytest.fail(f"amaas serve did not come up:\n{process.communicate()[0]}")
    yield url
    process.send_signal(signal.SIGINT)
    # uvicorn shuts down gracefully, then re-raises the signal, as a Ctrl-C'd program should
    assert process.wait(timeout=20) in (0, -signal.SIGINT), "Ctrl-C stops the server"
    assert process.stdout is not None
    process.stdout.close()


def test_served_over_http_like_on_lambda(server: str, artifact: Path) -> None:
    image = event_image(load_event("classify_png"))

    response = httpx.post(f"{server}/v1/classify?top_k=3", content=image, headers={"Content-Type": "image/png"})

    assert response.status_code == 200
    result = response.json()
    assert result["predictions"][0]["label"] == "star"
    assert result["model"]["version"] == read_manifest(artifact).version
    assert len(response.headers["x-request-id"]) == 32


def test_openapi_documents_the_routes_and_errors(server: str) -> None:
    schema = httpx.get(f"{server}/openapi.json").json()

    classify = schema["paths"]["/v1/classify"]["post"]
    assert {"image/png", "image/jpeg", "application/json"} <= set(classify["requestBody"]["content"])
    assert {"200", "400", "413", "415", "422"} <= set(classify["responses"])
    assert {"/v1/health", "/v1/model"} <= set(schema["paths"])


def test_serve_without_a_model_explains_and_exits(tmp_path: Path) -> None:
    result = subprocess.run(
        amaas("serve", "--model-dir", str(tmp_path), "--port", str(free_port())),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "AMAAS_MODEL_DIR": ""},
        check=False,
    )

    assert result.returncode == 2
    assert "export a model first" in result.stderr
