"""Structured logs, CloudWatch metrics and X-Ray traces through Powertools for AWS Lambda.

The same code runs on Lambda and under ``amaas serve``: logs are JSON lines on stdout; metrics are CloudWatch
Embedded Metric Format lines on stdout (CloudWatch turns them into metrics on Lambda; locally they stay in
the log); traces go to X-Ray on Lambda, and the Tracer switches itself off anywhere else. Image bytes are
never logged.

Service name and namespace come from Powertools' own variables, ``POWERTOOLS_SERVICE_NAME`` and
``POWERTOOLS_METRICS_NAMESPACE``, set in template.yaml.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit

from amaas.artifact.manifest import Manifest
from amaas.artifact.tasks.classification import Prediction
from amaas.artifact.tasks.detection import Detection
from amaas.errors import UpstreamError

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "amaas")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "AMaaS")


class _CurrentStdout(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is when a record is emitted, not the one at import: servers and test
    runners swap it, and a log line must follow."""

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


logger = Logger(service=SERVICE, logger_handler=_CurrentStdout())
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
# Not auto-patched: patching imports botocore and the X-Ray SDK's patchers (~70 ms of every cold start) for AWS
# calls the classify path never makes. Code that creates AWS clients calls ``trace_aws_calls`` first.
tracer = Tracer(service=SERVICE, auto_patch=False)


_served: dict[str, str] = {}
_muted = threading.Event()
UPSTREAM_STATUS = UpstreamError.status  # S3 failing is not the new version's fault


@functools.cache
def trace_aws_calls() -> None:
    """Has X-Ray trace boto3's calls (S3 and the rest) as subsegments, from the first client made on."""
    tracer.patch(["botocore"])


def new_sandbox_id() -> str:
    """A fresh id for this sandbox (process), on every log line from now on: one per cold start, and a new one
    after each SnapStart restore (``amaas.snapstart``), since restored sandboxes share everything init made."""
    sandbox = uuid.uuid4().hex[:12]
    logger.append_keys(sandbox=sandbox)
    return sandbox


new_sandbox_id()


def bind_model(manifest: Manifest) -> None:
    """Every log line and metric from now on names the served model, so a rollout can be watched."""
    logger.append_keys(model=manifest.name, model_version=manifest.version, model_sha256=manifest.model_sha256)
    _served["model_version"] = manifest.version


def function_version() -> str:
    """The Lambda version serving this request (``$LATEST``, ``7``), or ``local`` under ``amaas serve``."""
    return os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "local")


@contextlib.contextmanager
def traced(step: str, manifest: Manifest) -> Iterator[None]:
    """An X-Ray subsegment ``## <step>`` around one step of a request, annotated with the version of the model
    doing the work so traces can be filtered by it during a rollout. Never given payloads. A no-op where
    tracing is off."""
    with tracer.provider.in_subsegment(name=f"## {step}") as subsegment:
        subsegment.put_annotation(key="model_version", value=manifest.version)
        yield


@contextlib.contextmanager
def muted() -> Iterator[None]:
    """Holds back per-request log lines and metrics (warnings and errors still print): ``amaas demo`` uses it
    while it prints its own table of results."""
    level = logger.log_level
    logger.setLevel(logging.WARNING)
    _muted.set()
    try:
        yield
    finally:
        _muted.clear()
        logger.setLevel(level)


def record_request(method: str, route: str, status: int, latency_ms: float, error_code: str | None) -> None:
    """One request's metrics, flushed at once (on Lambda a request is an invocation)."""
    if _muted.is_set():
        metrics.clear_metrics()
        return
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=latency_ms)
    if error_code:
        with single_metric(name="Errors", unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
            metric.add_dimension(name="code", value=error_code)
            metric.add_dimension(name="service", value=SERVICE)
    if status >= 500 and status != UPSTREAM_STATUS:
        # The app turns failures into 5xx responses, so Lambda's own Errors metric never sees them. This one,
        # keyed by the Lambda version, is what the rollout alarm watches to roll a bad new version back.
        with single_metric(name="ServerErrors", unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
            metric.add_dimension(name="service", value=SERVICE)
            metric.add_dimension(name="function_version", value=function_version())
    metrics.add_metadata(key="route", value=f"{method} {route}")
    if "model_version" in _served:
        metrics.add_dimension(name="model_version", value=_served["model_version"])
    metrics.flush_metrics()


def record_segmentation(dominant: Sequence[str], foreground: Sequence[float]) -> None:
    """Per segmented image: its dominant class (the ``Predictions`` count, as for classification) and the
    fraction of it that is not background, whose drift says the images or the model changed."""
    if _muted.is_set():
        return
    for label, fraction in zip(dominant, foreground, strict=True):
        metrics.add_metric(name="ForegroundFraction", unit=MetricUnit.NoUnit, value=round(fraction, 4))
        with single_metric(name="Predictions", unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
            metric.add_dimension(name="label", value=label)
            metric.add_dimension(name="service", value=SERVICE)


def record_predictions(predictions: Sequence[Sequence[Prediction]]) -> None:
    """Predicted class counts and top-1 confidence: the signals of data drift and of a bad model."""
    if _muted.is_set():
        return
    for ranked in predictions:
        if not ranked:
            continue
        top = ranked[0]
        metrics.add_metric(name="Top1Confidence", unit=MetricUnit.NoUnit, value=round(top.score, 4))
        with single_metric(name="Predictions", unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
            metric.add_dimension(name="label", value=top.label)
            metric.add_dimension(name="service", value=SERVICE)


def record_detections(found: Sequence[Sequence[Detection]]) -> None:
    """Objects found per image and their mean score (an empty-handed or unsure detector is a drifting one),
    and one ``Detections`` count per class found."""
    if _muted.is_set():
        return
    for detections in found:
        metrics.add_metric(name="DetectionsPerImage", unit=MetricUnit.Count, value=len(detections))
        if detections:
            mean = sum(d.score for d in detections) / len(detections)
            metrics.add_metric(name="MeanDetectionScore", unit=MetricUnit.NoUnit, value=round(mean, 4))
        for label in sorted({d.label for d in detections}):
            with single_metric(name="Detections", unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
                metric.add_dimension(name="label", value=label)
                metric.add_dimension(name="service", value=SERVICE)
    logger.info(
        "detections",
        extra={
            "detections": [len(d) for d in found],
            "mean_score": [round(sum(x.score for x in d) / len(d), 4) if d else None for d in found],
        },
    )


def record_batch(messages: int, failed: int, results: Sequence[dict[str, Any]]) -> None:
    """One SQS batch: messages in, messages sent back for retry, images classified, images in error."""
    errors = sum(1 for r in results if r["status"] != "ok")
    metrics.add_metric(name="BatchMessages", unit=MetricUnit.Count, value=messages)
    metrics.add_metric(name="BatchRetries", unit=MetricUnit.Count, value=failed)
    metrics.add_metric(name="BatchImages", unit=MetricUnit.Count, value=len(results) - errors)
    metrics.add_metric(name="BatchImageErrors", unit=MetricUnit.Count, value=errors)
    if "model_version" in _served:
        metrics.add_dimension(name="model_version", value=_served["model_version"])
    metrics.flush_metrics()
