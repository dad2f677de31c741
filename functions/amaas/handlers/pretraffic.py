"""CodeDeploy pre-traffic hook: ``amaas.handlers.pretraffic.handler``.

Before CodeDeploy shifts any traffic to a newly published version of the API function, this invokes that
version directly with the artifact's golden samples and reports Succeeded or Failed. A failure stops the
deployment; the alias keeps pointing at the old version. The hook has the same model layer as the new
version, so the expected answers come from the model being deployed.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from amaas.artifact.manifest import read_manifest
from amaas.observability import logger, trace_aws_calls, tracer
from amaas.rollout import check_version

ENV_TARGET = "AMAAS_TARGET_VERSION"  # the new version's ARN, set by template.yaml
ENV_MAX_LATENCY = "AMAAS_HOOK_MAX_LATENCY_MS"


@functools.cache
def _clients() -> tuple[Any, Any]:
    import boto3

    trace_aws_calls()
    return boto3.client("lambda"), boto3.client("codedeploy")


def _invoker(function_arn: str) -> Any:
    lambda_client, _ = _clients()

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        response = lambda_client.invoke(FunctionName=function_arn, Payload=json.dumps(event).encode())
        if response.get("FunctionError"):
            return {"statusCode": 502, "body": response["Payload"].read().decode(errors="replace")[:500]}
        result: dict[str, Any] = json.loads(response["Payload"].read())
        return result

    return invoke


@tracer.capture_lambda_handler
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    target = os.environ[ENV_TARGET]
    model_dir = Path(os.environ.get("AMAAS_MODEL_DIR", "/opt/model"))
    status = "Failed"
    try:
        manifest = read_manifest(model_dir)
        report = check_version(
            _invoker(target),
            model_dir,
            expected_sha256=manifest.model_sha256,
            max_latency_ms=float(os.environ.get(ENV_MAX_LATENCY, "2000")),
        )
        status = "Succeeded" if report.passed else "Failed"
        logger.info(
            "pre-traffic check",
            extra={"target": target, "status": status, "problems": report.problems, "latency_ms": report.latency_ms},
        )
    except Exception:  # noqa: BLE001 - whatever went wrong, CodeDeploy must hear Failed, not time out
        logger.exception("pre-traffic check could not run", extra={"target": target})
    _, codedeploy = _clients()
    codedeploy.put_lifecycle_event_hook_execution_status(
        deploymentId=event["DeploymentId"],
        lifecycleEventHookExecutionId=event["LifecycleEventHookExecutionId"],
        status=status,
    )
    return {"status": status}
