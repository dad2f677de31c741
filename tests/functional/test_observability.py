"""What operators see: one structured JSON log line per request (request id, model version, latency; never
image bytes) and CloudWatch Embedded Metric Format metrics (latency, errors by code, predictions by class,
top-1 confidence), from the Lambda handler and from `amaas serve` alike."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from mangum import Mangum

from amaas.api.app import create_app
from amaas.artifact.manifest import read_manifest
from amaas.settings import Settings
from tests.events.generate import REQUEST_ID
from tests.functional.conftest import Invoke, amaas, free_port
from tests.helpers import LambdaContext, load_event


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return lines


def emf(lines: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """The EMF documents carrying ``metric``."""
    return [
        line for line in lines
        if any(m["Name"] == metric for d in line.get("_aws", {}).get("CloudWatchMetrics", []) for m in d["Metrics"])
    ]  # fmt: skip


def test_a_classification_logs_one_structured_line_and_its_metrics(
    invoke: Invoke, artifact: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    event = load_event("classify_png")
    capfd.readouterr()

    invoke(event)

    lines = json_lines(capfd.readouterr().out)
    manifest = read_manifest(artifact)
    (access,) = [line for line in lines if line.get("message") == "request"]
    assert access["request_id"] == REQUEST_ID
    assert access["model_version"] == manifest.version and access["model"] == manifest.name
    assert access["model_sha256"] == manifest.model_sha256, "the whole hash, so a rollout can be matched exactly"
    assert access["status"] == 200 and access["route"] == "/v1/classify" and access["latency_ms"] > 0
    assert access["level"] == "INFO" and access["service"] == "amaas"
    (request_metrics,) = emf(lines, "Latency")
    assert request_metrics["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "AMaaS"
    assert request_metrics["model_version"] == manifest.version
    (confidence,) = request_metrics["Top1Confidence"]  # EMF carries a metric's values as a list
    assert 0 < confidence <= 1
    (prediction,) = emf(lines, "Predictions")
    assert prediction["label"] == "star" and prediction["Predictions"] in (1, [1])


def test_errors_are_counted_by_code(invoke: Invoke, capfd: pytest.CaptureFixture[str]) -> None:
    capfd.readouterr()

    invoke(load_event("classify_corrupt"))

    (error,) = emf(json_lines(capfd.readouterr().out), "Errors")
    assert error["code"] == "invalid_image" and error["Errors"] in (1, [1])


def test_server_errors_are_counted_by_lambda_version_for_the_rollout_alarm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # GIVEN version 7 of the function, published without a usable model
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "7")
    handler = Mangum(create_app(Settings(model_dir=tmp_path / "no-model")), lifespan="off")
    capfd.readouterr()

    # WHEN it answers an unknown route (the client's fault) and a health check (the version's fault)
    unknown = load_event("health")
    unknown["path"], unknown["requestContext"]["path"] = "/v1/nope", "/prod/v1/nope"
    statuses = [handler(event, LambdaContext())["statusCode"] for event in (unknown, load_event("health"))]

    # THEN only the 503 counts as a server error of version 7: what template.yaml's rollback alarm watches
    assert statuses == [404, 503]
    server_errors = emf(json_lines(capfd.readouterr().out), "ServerErrors")
    assert len(server_errors) == 1
    assert all(e["function_version"] == "7" and e["service"] == "amaas" for e in server_errors)
    (dimensions,) = server_errors[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert sorted(dimensions) == ["function_version", "service"]


def test_client_errors_are_not_server_errors(invoke: Invoke, capfd: pytest.CaptureFixture[str]) -> None:
    capfd.readouterr()

    invoke(load_event("classify_corrupt"))

    assert not emf(json_lines(capfd.readouterr().out), "ServerErrors")


def test_image_bytes_never_reach_the_logs(invoke: Invoke, capfd: pytest.CaptureFixture[str]) -> None:
    event = load_event("classify_json")
    capfd.readouterr()

    invoke(event)

    output = capfd.readouterr().out
    encoded_image = json.loads(event["body"])["image"]
    assert encoded_image[:40] not in output and event["body"][:40] not in output


def test_amaas_serve_writes_the_same_logs_and_metrics(artifact: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        amaas("serve", "--model-dir", str(artifact), "--port", str(port)), stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(
                    f"http://127.0.0.1:{port}/v1/health", headers={"x-request-id": "probe"}, timeout=1
                ).is_success:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        httpx.post(
            f"http://127.0.0.1:{port}/v1/classify",
            content=b"junk",
            headers={"content-type": "image/png", "x-request-id": "local-1"},
        )
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=20)

    lines = json_lines(output)
    access = [line for line in lines if line.get("message") == "request" and line.get("request_id") == "local-1"]
    assert access and access[0]["status"] == 400
    assert any(line.get("code") == "invalid_image" for line in emf(lines, "Errors"))
