"""template.yaml through the real validators and the SAM translator."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers import REPO
from tests.infra.conftest import resources_of


def run_tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    assert tool, f"{name} is not installed (pip install -e '.[dev]')"
    return subprocess.run(
        [tool, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
        check=False,
    )


def test_cfn_lint_passes() -> None:
    result = run_tool("cfn-lint", "template.yaml")

    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_lint_passes() -> None:
    result = run_tool("sam", "validate", "--lint", "--template-file", "template.yaml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def logical_name(translated: str) -> str:
    """SAM suffixes layer ids with a content hash (RuntimeLayer4d3c33f2bf); this is the name in template.yaml."""
    return re.sub(r"[0-9a-f]{10}$", "", translated)


def the_function(transformed: dict[str, Any]) -> dict[str, Any]:
    (function,) = resources_of(transformed, "AWS::Lambda::Function").values()
    return function["Properties"]


def test_function_runs_the_mangum_handler_on_python_3_13_with_both_layers(transformed: dict[str, Any]) -> None:
    function = the_function(transformed)

    assert function["Runtime"] == "python3.13"
    assert function["Handler"] == "amaas.handlers.api.handler"
    assert function["Architectures"] == [{"Ref": "Architecture"}]
    assert [logical_name(layer["Ref"]) for layer in function["Layers"]] == ["RuntimeLayer", "ModelLayer"]
    assert function["Environment"]["Variables"]["AMAAS_MODEL_DIR"] == "/opt/model"
    assert function["Timeout"] < 29, "the function gives up before API Gateway's 29 s integration timeout"


def test_published_versions_use_snapstart_behind_the_live_alias(transformed: dict[str, Any]) -> None:
    function = the_function(transformed)
    (alias,) = resources_of(transformed, "AWS::Lambda::Alias").values()
    versions = resources_of(transformed, "AWS::Lambda::Version")

    assert function["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert alias["Properties"]["Name"] == "live"
    assert len(versions) == 1


def test_api_gateway_invokes_the_alias_not_latest(transformed: dict[str, Any]) -> None:
    (alias_name,) = resources_of(transformed, "AWS::Lambda::Alias")
    permissions = resources_of(transformed, "AWS::Lambda::Permission").values()

    assert permissions
    assert all(p["Properties"]["FunctionName"] == {"Ref": alias_name} for p in permissions)


def test_api_passes_every_body_through_as_binary(transformed: dict[str, Any]) -> None:
    (api,) = resources_of(transformed, "AWS::ApiGateway::RestApi").values()

    # images, multipart and tritonclient's binary tensors (sent without a Content-Type) all arrive intact
    assert api["Properties"]["BinaryMediaTypes"] == ["*~1*"]
    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}


def test_s3_reads_only_when_an_image_bucket_is_configured(transformed: dict[str, Any]) -> None:
    function = the_function(transformed)
    (role,) = resources_of(transformed, "AWS::IAM::Role").values()

    assert function["Environment"]["Variables"]["AMAAS_S3_BUCKETS"] == {"Ref": "ImageBucket"}
    conditional = [p for p in role["Properties"]["Policies"] if "Fn::If" in p]
    assert conditional and conditional[0]["Fn::If"][0] == "HasImageBucket"
    assert transformed["Conditions"]["HasImageBucket"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ImageBucket"}, ""]}]}


def test_logs_go_to_a_group_with_retention(transformed: dict[str, Any]) -> None:
    function = the_function(transformed)
    (name, group), *_ = resources_of(transformed, "AWS::Logs::LogGroup").items()

    assert function["LoggingConfig"]["LogGroup"] == {"Ref": name}
    assert function["LoggingConfig"]["LogFormat"] == "JSON"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_model_layer_versions_are_retained_for_rollback(transformed: dict[str, Any]) -> None:
    layers = {
        logical_name(name): layer for name, layer in resources_of(transformed, "AWS::Lambda::LayerVersion").items()
    }

    assert layers["ModelLayer"]["DeletionPolicy"] == "Retain"
    assert layers["RuntimeLayer"]["Properties"]["CompatibleRuntimes"] == ["python3.13"]


def test_outputs_give_the_api_url(transformed: dict[str, Any]) -> None:
    url = transformed["Outputs"]["ApiUrl"]["Value"]["Fn::Sub"]

    assert url.startswith("https://${") and "execute-api" in url and url.endswith("/${StageName}/")
