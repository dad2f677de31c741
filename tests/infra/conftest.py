from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import REPO


@pytest.fixture(scope="session")
def transformed() -> dict[str, Any]:
    """template.yaml turned into plain CloudFormation by the SAM translator (the library CloudFormation's
    transform runs), with managed policies listed from IAM, here moto's."""
    import boto3
    from moto import mock_aws
    from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((REPO / "template.yaml").read_text())
    # `sam package` replaces local code paths with the S3 objects it uploads; the transform expects those.
    for name, resource in template["Resources"].items():
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = f"s3://amaas-deploy/{name}.zip"
    with pytest.MonkeyPatch.context() as patch, mock_aws():
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        iam = boto3.client("iam", region_name="us-east-1")
        result: dict[str, Any] = transform(template, {}, ManagedPolicyLoader(iam))
    return result


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}
