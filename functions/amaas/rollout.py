"""The pre-traffic check: a new function version must answer the artifact's golden samples (``amaas.artifact
.golden``) as the export recorded, before any user traffic reaches it (``amaas.handlers.pretraffic``)."""

from __future__ import annotations

import base64
import io
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from amaas.artifact.golden import SCORE_TOLERANCE, GoldenSample, read_golden
from amaas.artifact.manifest import read_manifest


@dataclass(frozen=True)
class CheckReport:
    passed: bool
    problems: list[str]
    latency_ms: float


Invoke = Callable[[dict[str, Any]], dict[str, Any]]
Compare = Callable[[Path, GoldenSample, dict[str, Any]], str | None]


@dataclass(frozen=True)
class GoldenRoute:
    path: str
    accept: str | None = None


def _top_class(model_dir: Path, sample: GoldenSample, response: dict[str, Any]) -> str | None:
    top = json.loads(response["body"])["predictions"][0]
    if top["label"] != sample.label or abs(top["score"] - sample.score) > SCORE_TOLERANCE:
        return f"got {top['label']} {top['score']:.4f}, expected {sample.label} {sample.score:.4f}"
    return None


def _mask_agreement(model_dir: Path, sample: GoldenSample, response: dict[str, Any]) -> str | None:
    body = response.get("body") or ""
    data = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode("latin-1")
    with Image.open(model_dir / sample.answer["mask"]) as recorded:
        expected = np.asarray(recorded)
    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as answered:
            got = np.asarray(answered)
    except OSError:
        return "the answer is not a PNG mask"
    if got.shape != expected.shape:
        return f"mask of shape {got.shape}, expected {expected.shape}"
    agreement = float((got == expected).mean())
    if agreement < float(sample.answer["min_agreement"]):
        return f"mask agrees on {agreement:.2%} of pixels, at least {float(sample.answer['min_agreement']):.0%} needed"
    return None


def _boxes(model_dir: Path, sample: GoldenSample, response: dict[str, Any]) -> str | None:
    """Every recorded detection found again: same class, IoU at least the sample's ``min_iou``, score within
    ``SCORE_TOLERANCE`` (detections near the score threshold may come and go; recorded ones may not)."""
    got = json.loads(response["body"]).get("detections", [])
    for want in sample.answer["detections"]:
        same = [d for d in got if d["index"] == want["index"]]
        best = max(same, key=lambda d: _iou(d["box"], want["box"]), default=None)
        if best is None or _iou(best["box"], want["box"]) < float(sample.answer["min_iou"]):
            return f"no {want['label']} at {want['box']} (IoU >= {sample.answer['min_iou']})"
        if abs(best["score"] - want["score"]) > SCORE_TOLERANCE:
            return f"{want['label']} scored {best['score']:.4f}, expected {want['score']:.4f}"
    return None


def _iou(a: list[float], b: list[float]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# Per task: the route its golden samples are sent to, and how an answer is compared with the recorded one.
GOLDEN_CHECKS: dict[str, tuple[GoldenRoute, Compare]] = {
    "classification": (GoldenRoute("/v1/classify"), _top_class),
    "segmentation": (GoldenRoute("/v1/segment", accept="image/png"), _mask_agreement),
    "detection": (GoldenRoute("/v1/detect"), _boxes),
}


def check_version(invoke: Invoke, model_dir: Path, *, expected_sha256: str, max_latency_ms: float) -> CheckReport:
    """Sends every golden sample (and a health check) to a function version through ``invoke``, which
    takes an API Gateway event and returns the Lambda response; compares with the artifact's answers.

    The version must report the expected model sha256, answer each sample as recorded (``GOLDEN_CHECKS``: the
    label with a score within ``SCORE_TOLERANCE``; a mask agreeing on the sample's ``min_agreement`` of its
    pixels), and answer with a median latency under ``max_latency_ms``.
    """
    problems: list[str] = []
    health = invoke(api_event("GET", "/v1/health"))
    served = json.loads(health.get("body") or "{}").get("model", {}).get("sha256")
    if health.get("statusCode") != 200 or served != expected_sha256:
        problems.append(
            f"health: status {health.get('statusCode')}, model sha256 {served} (expected {expected_sha256})"
        )
    timings = []
    route, compare = GOLDEN_CHECKS[read_manifest(model_dir).task]
    for sample in read_golden(model_dir):
        image = (model_dir / sample.file).read_bytes()
        started = time.perf_counter()
        response = invoke(api_event("POST", route.path, body=image, content_type="image/png", accept=route.accept))
        timings.append((time.perf_counter() - started) * 1000)
        if response.get("statusCode") != 200:
            problems.append(f"{sample.file}: status {response.get('statusCode')}")
            continue
        problem = compare(model_dir, sample, response)
        if problem:
            problems.append(f"{sample.file}: {problem}")
    latency = statistics.median(timings) if timings else 0.0
    if latency > max_latency_ms:
        problems.append(f"median latency {latency:.0f} ms is over the {max_latency_ms:.0f} ms budget")
    return CheckReport(passed=not problems, problems=problems, latency_ms=latency)


def api_event(
    method: str, path: str, *, body: bytes | None = None, content_type: str | None = None, accept: str | None = None
) -> dict[str, Any]:
    """A minimal API Gateway REST proxy event, as the function receives from its API."""
    headers = {"Content-Type": content_type} if content_type else {}
    if accept:
        headers["Accept"] = accept
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
