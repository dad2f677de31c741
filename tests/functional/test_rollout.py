"""Safe model updates: the export ships golden samples, and the pre-traffic hook checks a new version with
them before CodeDeploy shifts any traffic, telling CodeDeploy Succeeded or Failed."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from mangum import Mangum

from amaas.api.app import create_app
from amaas.artifact.golden import GOLDEN_FILE, read_golden
from amaas.artifact.manifest import read_manifest, verify_files
from amaas.handlers import pretraffic
from amaas.rollout import check_version
from amaas.settings import Settings
from tests.functional.conftest import Export
from tests.helpers import LambdaContext


def version_serving(model_dir: Path) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A published API version with ``model_dir`` in its model layer, invoked directly (as the hook does)."""
    handler = Mangum(create_app(Settings(model_dir=model_dir)), lifespan="off")
    return lambda event: handler(event, LambdaContext())


def test_export_ships_golden_samples_with_the_served_models_answers(artifact: Path) -> None:
    manifest = read_manifest(artifact)
    samples = read_golden(artifact)

    verify_files(artifact, manifest)
    assert GOLDEN_FILE in manifest.files and all(s.file in manifest.files for s in samples)
    assert 5 <= len(samples) <= 8
    assert len({s.label for s in samples}) == len(samples), "one per class"
    assert all(s.score >= 0.6 for s in samples), "confident samples, robust to INT8 kernel differences between CPUs"


def test_a_version_serving_its_model_passes(artifact: Path) -> None:
    report = check_version(
        version_serving(artifact), artifact, expected_sha256=read_manifest(artifact).model_sha256, max_latency_ms=2000
    )

    assert report.passed, report.problems
    assert report.latency_ms > 0


def test_a_version_serving_another_model_fails(artifact: Path, export: Export) -> None:
    # GIVEN a new version whose model layer holds some other model (a wrong build, a half-trained export)
    other = export("--data", "synthetic:1000", "--epochs", "1", "--max-accuracy-drop", "100").out

    report = check_version(
        version_serving(other), artifact, expected_sha256=read_manifest(artifact).model_sha256, max_latency_ms=2000
    )

    assert not report.passed
    assert any(p.startswith("health: ") and "expected" in p for p in report.problems)
    assert any("golden/" in p and "expected" in p for p in report.problems)


def test_a_version_over_the_latency_budget_fails(artifact: Path) -> None:
    report = check_version(
        version_serving(artifact), artifact, expected_sha256=read_manifest(artifact).model_sha256, max_latency_ms=0.0001
    )

    assert not report.passed and "over the 0 ms budget" in report.problems[-1]


class _Versions:
    """Lambda's Invoke for one published version, served in-process."""

    def __init__(self, model_dir: Path) -> None:
        self.serve = version_serving(model_dir)
        self.invoked: list[str] = []

    def invoke(self, FunctionName: str, Payload: bytes) -> dict[str, Any]:
        self.invoked.append(FunctionName)
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(self.serve(json.loads(Payload))).encode())}


@pytest.mark.parametrize(("good", "status"), [(True, "Succeeded"), (False, "Failed")])
def test_hook_reports_to_codedeploy(
    artifact: Path, export: Export, monkeypatch: pytest.MonkeyPatch, good: bool, status: str
) -> None:
    target = "arn:aws:lambda:us-east-1:123456789012:function:amaas-api:7"
    served = artifact if good else export("--data", "synthetic:1000", "--epochs", "1", "--max-accuracy-drop", "100").out
    versions = _Versions(served)
    codedeploy = boto3.client("codedeploy", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(codedeploy)
    stub.add_response(
        "put_lifecycle_event_hook_execution_status",
        {"lifecycleEventHookExecutionId": "hook-1"},
        {"deploymentId": "d-123", "lifecycleEventHookExecutionId": "hook-1", "status": status},
    )
    monkeypatch.setattr(pretraffic, "_clients", lambda: (versions, codedeploy))
    monkeypatch.setenv(pretraffic.ENV_TARGET, target)
    monkeypatch.setenv("AMAAS_MODEL_DIR", str(artifact))  # the hook's own layer: the model being deployed

    with stub:
        result = pretraffic.handler(
            {"DeploymentId": "d-123", "LifecycleEventHookExecutionId": "hook-1"}, LambdaContext()
        )

    stub.assert_no_pending_responses()
    assert result == {"status": status}
    assert set(versions.invoked) == {target}, "only the new version is invoked"
    assert len(versions.invoked) == 1 + len(read_golden(artifact))
