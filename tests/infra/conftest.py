from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import REPO
from tests.infra.cfn import resolve

Transform = Callable[..., dict[str, Any]]


def translate(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """template.yaml as CloudFormation deploys it: LanguageExtensions' condition resolution for these
    parameter values, then the SAM translator (the library CloudFormation's transform runs), with managed
    policies listed from IAM (here moto's)."""
    import boto3
    from moto import mock_aws
    from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    template = resolve(yaml_parse((REPO / "template.yaml").read_text()), overrides)
    # `sam package` replaces local code paths with the S3 objects it uploads; the transform expects those.
    for name, resource in template["Resources"].items():
        for key in ("CodeUri", "ContentUri", "Location"):
            if isinstance(resource.get("Properties", {}).get(key), str):
                resource["Properties"][key] = (
                    f"s3://amaas-deploy/{name}"
                    if key != "Location"
                    else f"https://s3.amazonaws.com/amaas-deploy/{name}.yaml"
                )
    parameter_values = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", **(overrides or {})}
    with pytest.MonkeyPatch.context() as patch, mock_aws():
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        iam = boto3.client("iam", region_name="us-east-1")
        result: dict[str, Any] = transform(template, parameter_values, ManagedPolicyLoader(iam))
    return result


@pytest.fixture(scope="session")
def transformed() -> dict[str, Any]:
    """The default deployment: API keys, SnapStart, no CORS, no image bucket."""
    return translate()


@pytest.fixture(scope="session")
def transformed_iam() -> dict[str, Any]:
    """The other choices: SigV4 auth, provisioned concurrency, a CORS origin, an image bucket."""
    return translate(
        {
            "AuthMode": "IAM",
            "ProvisionedConcurrency": 2,
            "CorsOrigin": "https://app.example.com",
            "ImageBucket": "photos",
        }
    )


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


# The job resources exist only with a source bucket; these are the values the tests deploy them with.
JOB_OVERRIDES = {"JobSourceBucket": "amaas-photos", "JobSourcePrefix": "albums/"}
JOB_VALUES = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "amaas",
    "BatchBucket": "amaas-batch-jobs",
    "BatchJobFunction.Arn": "arn:aws:lambda:us-east-1:123456789012:function:amaas-batch-job",
    "BatchJobLogGroup.Arn": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/amaas-batch-job:*",
}


@pytest.fixture(scope="session")
def transformed_jobs() -> dict[str, Any]:
    """A deployment with batch jobs: a source bucket and folder, results in the stack's batch bucket."""
    return translate(JOB_OVERRIDES)


def job_values(template: dict[str, Any], overrides: dict[str, Any]) -> dict[str, str]:
    """Every parameter (its default, or its override) and the job resources' deployed names, as text."""
    parameters = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    return {**parameters, **{k: str(v) for k, v in overrides.items()}, **JOB_VALUES}
