"""The pre-traffic check: a new function version must answer the artifact's golden samples (``amaas.artifact
.golden``) as the export recorded, before any user traffic reaches it (``amaas.handlers.pretraffic``)."""

from __future__ import annotations

import base64
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amaas.artifact.golden import SCORE_TOLERANCE, read_golden


@dataclass(frozen=True)
class CheckReport:
    passed: bool
    problems: list[str]
    latency_ms: float


Invoke = Callable[[dict[str, Any]], dict[str, Any]]


def check_version(invoke: Invoke, model_dir: Path, *, expected_sha256: str, max_latency_ms: float) -> CheckReport:
    """Sends every golden sample (and a health check) to a function version through ``invoke``, which
    takes an API Gateway event and returns the Lambda response; compares with the artifact's answers.

    The version must report the expected model sha256, return each sample's label with a score within
    ``SCORE_TOLERANCE``, and answer with a median latency under ``max_latency_ms``.
    """
    problems: list[str] = []
    health = invoke(api_event("GET", "/v1/health"))
    served = json.loads(health.get("body") or "{}").get("model", {}).get("sha256")
    if health.get("statusCode") != 200 or served != expected_sha256:
        problems.append(
            f"health: status {health.get('statusCode')}, model sha256 {served} (expected {expected_sha256})"
        )
    timings = []
    for sample in read_golden(model_dir):
        image = (model_dir / sample.file).read_bytes()
        started = time.perf_counter()
        response = invoke(api_event("POST", "/v1/classify", body=image, content_type="image/png"))
        timings.append((time.perf_counter() - started) * 1000)
        if response.get("statusCode") != 200:
            problems.append(f"{sample.file}: status {response.get('statusCode')}")
            continue
        top = json.loads(response["body"])["predictions"][0]
        if top["label"] != sample.label or abs(top["score"] - sample.score) > SCORE_TOLERANCE:
            problems.append(
                f"{sample.file}: got {top['label']} {top['score']:.4f}, expected {sample.label} {sample.score:.4f}"
            )
    latency = statistics.median(timings) if timings else 0.0
    if latency > max_latency_ms:
        problems.append(f"median latency {latency:.0f} ms is over the {max_latency_ms:.0f} ms budget")
    return CheckReport(passed=not problems, problems=problems, latency_ms=latency)


def api_event(method: str, path: str, *, body: bytes | None = None, content_type: str | None = None) -> dict[str, Any]:
    """A minimal API Gateway REST proxy event, as the function receives from its API."""
    headers = {"Content-Type": content_type} if content_type else {}
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "requestContext": {"requestId": "pre-traffic-check", "stage": "hook", "identity": {"sourceIp": "127.0.0.1"}},
        "body": base64.b64encode(body).decode() if body else None,
        "isBase64Encoded": body is not None,
    }
