"""`amaas serve`: the same app on a real HTTP server on 127.0.0.1, driven over the loopback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from amaas.artifact.manifest import read_manifest
from amaas.artifact.model import Model
from tests.functional.conftest import amaas, free_port
from tests.helpers import event_image, load_event


def test_served_over_http_like_on_lambda(local_server: str, artifact: Path) -> None:
    image = event_image(load_event("classify_png"))

    response = httpx.post(f"{local_server}/v1/classify?top_k=3", content=image, headers={"Content-Type": "image/png"})

    assert response.status_code == 200
    result = response.json()
    assert result["predictions"][0]["label"] == "star"
    assert result["model"]["version"] == read_manifest(artifact).version
    assert len(response.headers["x-request-id"]) == 32


def test_openapi_documents_the_routes_and_errors(local_server: str) -> None:
    schema = httpx.get(f"{local_server}/openapi.json").json()

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


def test_demo_prints_a_clean_table_then_keeps_serving_with_logs(artifact: Path, tmp_path: Path) -> None:
    port = free_port()
    demo = subprocess.Popen(
        amaas("demo", "--model-dir", str(artifact), "--port", str(port), "--samples", str(tmp_path / "samples")),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert demo.stdout is not None
        lines: list[str] = []
        for line in demo.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("From here on"):
                break
        # AFTER the table, a request of the user's shows up in the log as Lambda would write it
        httpx.get(f"http://127.0.0.1:{port}/v1/health", headers={"x-request-id": "after-demo"}, timeout=10)
    finally:
        demo.terminate()
        rest, _ = demo.communicate(timeout=20)

    header = next(i for i, line in enumerate(lines) if line.startswith("image "))
    table = lines[header + 1 : next(i for i, line in enumerate(lines) if "top-1 correct" in line)]
    rows = [line for line in table if line.strip()]
    assert len(rows) == 10, "one row per sample image, and nothing else: no JSON log or metric lines in between"
    assert all(row.startswith(str(tmp_path / "samples")) for row in rows)
    # AND each row shows the server's own answer for that sample file, counted right in the summary line
    classifier = Model(artifact)
    answers = {}
    for row in rows:
        path = Path(row.split()[0])
        (ranked,) = classifier.infer([path.read_bytes()], k=1).results
        answers[path] = (row.split()[2], ranked[0].label, row.split()[1])
    assert all(shown == direct for shown, direct, _ in answers.values()), answers
    correct = int(next(line for line in lines if "top-1 correct" in line).split("/")[0])
    assert correct == sum(shown == expected for shown, _, expected in answers.values())
    assert correct >= 6, "the demo model recognises most of its own classes"
    assert '"request_id":"after-demo"' in rest
