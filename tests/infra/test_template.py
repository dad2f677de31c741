"""template.yaml through the real validators and the SAM translator: who gets in, how a new model reaches
users, how batch work flows, and what each function may touch."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO
from tests.infra.conftest import resources_of

OPEN_PATHS = {"/", "/v1/health", "/v2/health/live", "/v2/health/ready"}


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


def test_cfn_lint_passes_on_the_stack_and_its_nested_monitoring() -> None:
    result = run_tool("cfn-lint", "template.yaml", "infra/monitoring.yaml")

    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_lint_passes() -> None:
    result = run_tool("sam", "validate", "--lint", "--template-file", "template.yaml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def logical_name(translated: str) -> str:
    """SAM suffixes some ids with a content hash (RuntimeLayer4d3c33f2bf); this is the name in template.yaml."""
    return re.sub(r"[0-9a-f]{10}$", "", translated)


def function(template: dict[str, Any], name: str) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"][name]["Properties"]
    return properties


def methods(template: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    (api,) = resources_of(template, "AWS::ApiGateway::RestApi").values()
    paths = api["Properties"]["Body"]["paths"]
    return {(path, verb): spec for path, verbs in paths.items() for verb, spec in verbs.items() if verb != "options"}


# ---------------------------------------------------------------- who gets in


def test_api_keys_on_every_route_but_health_and_the_playground(transformed: dict[str, Any]) -> None:
    routes = methods(transformed)

    assert {path for path, _ in routes} == OPEN_PATHS | {"/{proxy+}"}
    for (path, _), spec in routes.items():
        assert (spec["security"] == [{"api_key": []}]) == (path not in OPEN_PATHS), path


def test_usage_plan_throttles_and_quota_come_from_parameters(transformed: dict[str, Any]) -> None:
    (plan,) = resources_of(transformed, "AWS::ApiGateway::UsagePlan").values()
    (stage,) = resources_of(transformed, "AWS::ApiGateway::Stage").values()

    # SAM resolves these parameters at transform time: the defaults, 50 rps, bursts of 100, 100k a month
    assert plan["Properties"]["Throttle"] == {"RateLimit": 50, "BurstLimit": 100}
    assert plan["Properties"]["Quota"] == {"Limit": 100000, "Period": "MONTH"}
    assert resources_of(transformed, "AWS::ApiGateway::ApiKey") and resources_of(
        transformed, "AWS::ApiGateway::UsagePlanKey"
    )
    (settings,) = stage["Properties"]["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == {"Ref": "ThrottleRateLimit"} and settings["ThrottlingBurstLimit"] == {
        "Ref": "ThrottleBurstLimit"
    }


def test_iam_mode_signs_every_route_but_health_and_drops_keys(transformed_iam: dict[str, Any]) -> None:
    routes = methods(transformed_iam)

    for (path, _), spec in routes.items():
        assert spec["security"] == ([{"NONE": []}] if path in OPEN_PATHS else [{"AWS_IAM": []}]), path
    assert not resources_of(transformed_iam, "AWS::ApiGateway::UsagePlan")
    assert not resources_of(transformed_iam, "AWS::ApiGateway::ApiKey")


def integrations(template: dict[str, Any]) -> list[dict[str, Any]]:
    (api,) = resources_of(template, "AWS::ApiGateway::RestApi").values()
    return [spec["x-amazon-apigateway-integration"] for verbs in api["Properties"]["Body"]["paths"].values()
            for spec in verbs.values()]  # fmt: skip


def test_cors_preflights_reach_the_app_without_a_key_and_only_the_configured_origin_is_allowed(
    transformed: dict[str, Any], transformed_iam: dict[str, Any]
) -> None:
    for template, open_security in ((transformed, []), (transformed_iam, [{"NONE": []}])):
        (api,) = resources_of(template, "AWS::ApiGateway::RestApi").values()
        preflight = api["Properties"]["Body"]["paths"]["/{proxy+}"]["options"]
        # a browser's preflight carries no key or signature; the app answers it from its allow-list
        assert preflight["security"] == open_security
        assert preflight["x-amazon-apigateway-integration"]["type"] == "aws_proxy"
        # no MOCK integration anywhere: with "*/*" binary media types API Gateway fails them with a 500
        assert {i["type"] for i in integrations(template)} == {"aws_proxy"}
    assert function(transformed_iam, "ApiFunction")["Environment"]["Variables"]["AMAAS_CORS_ORIGINS"] == {
        "Ref": "CorsOrigin"
    }
    # errors API Gateway makes itself (no key, throttled) carry the origin too, so the page can show them
    (with_cors,) = resources_of(transformed_iam, "AWS::ApiGateway::RestApi").values()
    responses = with_cors["Properties"]["Body"]["x-amazon-apigateway-gateway-responses"]
    for kind in ("DEFAULT_4XX", "DEFAULT_5XX"):
        origin = responses[kind]["responseParameters"]["gatewayresponse.header.Access-Control-Allow-Origin"]
        assert origin == {"Fn::Sub": "'${CorsOrigin}'"}
    (without,) = resources_of(transformed, "AWS::ApiGateway::RestApi").values()
    assert "x-amazon-apigateway-gateway-responses" not in without["Properties"]["Body"]
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((REPO / "template.yaml").read_text())
    assert template["Parameters"]["CorsOrigin"]["Default"] == "", "no origin, let alone *, by default"


def test_api_passes_every_body_through_as_binary(transformed: dict[str, Any]) -> None:
    (api,) = resources_of(transformed, "AWS::ApiGateway::RestApi").values()

    # images, multipart and tritonclient's binary tensors (sent without a Content-Type) all arrive intact
    assert api["Properties"]["BinaryMediaTypes"] == ["*~1*"]
    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}


def test_every_request_is_access_logged_as_json_without_bodies(transformed: dict[str, Any]) -> None:
    import json

    (stage,) = resources_of(transformed, "AWS::ApiGateway::Stage").values()
    setting = stage["Properties"]["AccessLogSetting"]

    # one JSON object per request, to a log group of the stack with a retention
    assert setting["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    assert transformed["Resources"]["ApiAccessLogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    fields = json.loads(setting["Format"])
    # who called (IP, API key or IAM principal), what (route), how it went (status, latency)
    assert {
        fields[k] for k in ("requestId", "sourceIp", "apiKeyId", "principal", "route", "status", "latencyMs")
    } == {
        "$context.requestId", "$context.identity.sourceIp", "$context.identity.apiKeyId",
        "$context.identity.userArn", "$context.resourcePath", "$context.status", "$context.responseLatency",
    }  # fmt: skip
    # and nothing of the request or response itself
    assert not any(word in setting["Format"] for word in ("body", "header", "querystring", "requestOverride"))
    # API Gateway can write them: the account's CloudWatch role is set before the stage (and outlives the stack)
    account = transformed["Resources"]["ApiGatewayAccount"]
    assert account["Properties"]["CloudWatchRoleArn"] == {"Fn::GetAtt": ["ApiGatewayLoggingRole", "Arn"]}
    assert transformed["Resources"]["ApiGatewayLoggingRole"]["DeletionPolicy"] == "Retain"


# ---------------------------------------------------------------- least privilege


def statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    policies = template["Resources"][role]["Properties"].get("Policies", [])
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


@pytest.mark.parametrize("role", ["ApiFunctionRole", "BatchFunctionRole", "PreTrafficHookRole"])
def test_roles_grant_nothing_on_wildcards_but_xray(transformed_iam: dict[str, Any], role: str) -> None:
    for statement in statements(transformed_iam, role):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not any(a.endswith("*") for a in actions), statement
        if statement["Resource"] == "*":
            assert set(actions) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}, (
                "X-Ray has no resource-level permissions"
            )
    assert "ManagedPolicyArns" not in transformed_iam["Resources"][role]["Properties"]


def test_every_function_uses_its_own_role(transformed: dict[str, Any]) -> None:
    roles = {
        "ApiFunction": "ApiFunctionRole",
        "BatchFunction": "BatchFunctionRole",
        "BatchJobFunction": "BatchJobFunctionRole",
        "PreTrafficHookFunction": "PreTrafficHookRole",
    }

    for name, resource in resources_of(transformed, "AWS::Lambda::Function").items():
        assert resource["Properties"]["Role"] == {"Fn::GetAtt": [roles[name], "Arn"]}


def test_batch_role_reads_incoming_reads_and_writes_results_and_consumes_its_queue(transformed: dict[str, Any]) -> None:
    by_action = {
        tuple(s["Action"]) if isinstance(s["Action"], list) else (s["Action"],): s["Resource"]
        for s in statements(transformed, "BatchFunctionRole")
    }

    assert by_action[("s3:GetObject", "s3:GetObjectVersion")]["Fn::Join"][1][-1] == "/incoming/*"
    # a result is read back before it is replaced, so an older upload's answer never overwrites a newer one's
    assert by_action[("s3:GetObject", "s3:PutObject")]["Fn::Join"][1][-1] == "/results/*"
    # listing, only under incoming/ and results/, turns a missing image or result into NoSuchKey, not AccessDenied
    (listing,) = [s for s in statements(transformed, "BatchFunctionRole") if s["Action"] == "s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["incoming/*", "results/*"]}}
    assert not any(isinstance(part, str) and "*" in part for part in listing["Resource"]["Fn::Join"][1])
    sqs = by_action[
        ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility")
    ]
    assert sqs == {"Fn::GetAtt": ["BatchQueue", "Arn"]}


def test_api_reads_s3_only_when_an_image_bucket_is_configured(
    transformed: dict[str, Any], transformed_iam: dict[str, Any]
) -> None:
    assert not any("s3:GetObject" in str(s["Action"]) for s in statements(transformed, "ApiFunctionRole"))
    (read,) = [s for s in statements(transformed_iam, "ApiFunctionRole") if s["Action"] == "s3:GetObject"]
    assert read["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::${ImageBucket}/*"}


def test_hook_may_only_invoke_the_new_version_and_report(transformed: dict[str, Any]) -> None:
    actions = {
        s["Action"] if isinstance(s["Action"], str) else tuple(s["Action"]): s["Resource"]
        for s in statements(transformed, "PreTrafficHookRole")
    }

    (version,) = resources_of(transformed, "AWS::Lambda::Version")
    assert actions["lambda:InvokeFunction"] == {"Ref": version}
    assert (
        "deploymentgroup:${ServerlessDeploymentApplication}/*"
        in actions["codedeploy:PutLifecycleEventHookExecutionStatus"]["Fn::Sub"]
    )


def test_batch_bucket_is_private_encrypted_tls_only_and_expires_work(transformed: dict[str, Any]) -> None:
    bucket = transformed["Resources"]["BatchBucket"]["Properties"]
    (policy,) = resources_of(transformed, "AWS::S3::BucketPolicy").values()

    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-incoming"]["Prefix"] == "incoming/" and rules["expire-results"]["Prefix"] == "results/"
    (deny,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_queues_and_the_alarm_topic_refuse_plain_http(transformed: dict[str, Any]) -> None:
    denied = {}
    for kind, key in (("AWS::SQS::QueuePolicy", "Queues"), ("AWS::SNS::TopicPolicy", "Topics")):
        for policy in resources_of(transformed, kind).values():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                if statement["Effect"] == "Deny":
                    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                    denied.update({target["Ref"]: statement for target in policy["Properties"][key]})

    assert set(denied) == {"BatchQueue", "BatchDeadLetterQueue", "AlarmTopic"}


def test_alarms_can_publish_to_the_alarm_topic(transformed: dict[str, Any]) -> None:
    # CloudWatch cannot use the AWS-managed SNS key, so an alarm topic encrypted with it never notifies anyone
    topic = transformed["Resources"]["AlarmTopic"]["Properties"]
    (policy,) = resources_of(transformed, "AWS::SNS::TopicPolicy").values()
    (allow,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]

    assert topic.get("KmsMasterKeyId") != "alias/aws/sns"
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"} and allow["Action"] == "sns:Publish"


# ---------------------------------------------------------------- safe model updates


def test_new_versions_reach_users_by_canary_with_rollback_alarms_and_a_pre_traffic_check(
    transformed: dict[str, Any],
) -> None:
    (alias,) = resources_of(transformed, "AWS::Lambda::Alias").values()
    (group,) = resources_of(transformed, "AWS::CodeDeploy::DeploymentGroup").values()

    assert alias["Properties"]["Name"] == "live"
    assert alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]["BeforeAllowTrafficHook"] == {
        "Ref": "PreTrafficHookFunction"
    }
    config = group["Properties"]["DeploymentConfigName"]["Fn::Sub"]
    assert config == ["CodeDeployDefault.Lambda${ConfigName}", {"ConfigName": "Canary10Percent5Minutes"}], (
        "canary by default"
    )
    alarms = group["Properties"]["AlarmConfiguration"]
    assert alarms["Enabled"] is True
    assert {a["Name"]["Ref"] for a in alarms["Alarms"]} == {
        "NewVersionErrorsAlarm",
        "NewVersionServerErrorsAlarm",
        "NewVersionLatencyAlarm",
    }
    assert "DEPLOYMENT_STOP_ON_ALARM" in group["Properties"]["AutoRollbackConfiguration"]["Events"]


def test_rollback_alarms_watch_the_new_version_only(transformed: dict[str, Any]) -> None:
    (version,) = resources_of(transformed, "AWS::Lambda::Version")
    for name, metric in (("NewVersionErrorsAlarm", "Errors"), ("NewVersionLatencyAlarm", "Duration")):
        alarm = transformed["Resources"][name]["Properties"]
        dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        assert alarm["MetricName"] == metric
        assert dimensions["ExecutedVersion"] == {"Fn::GetAtt": [version, "Version"]}
        assert dimensions["Resource"] == {"Fn::Sub": "${ApiFunction}:live"}
    assert transformed["Resources"]["NewVersionLatencyAlarm"]["Properties"]["ExtendedStatistic"] == "p99"
    # the app's own 5xx answers (which Lambda counts as successful invocations), by the version that sent them
    server_errors = transformed["Resources"]["NewVersionServerErrorsAlarm"]["Properties"]
    dimensions = {d["Name"]: d["Value"] for d in server_errors["Dimensions"]}
    assert (server_errors["Namespace"], server_errors["MetricName"]) == ("AMaaS", "ServerErrors")
    assert dimensions == {"service": "amaas", "function_version": {"Fn::GetAtt": [version, "Version"]}}
    variables = function(transformed, "ApiFunction")["Environment"]["Variables"]
    assert variables["POWERTOOLS_SERVICE_NAME"] == "amaas" and variables["POWERTOOLS_METRICS_NAMESPACE"] == "AMaaS"


def test_the_hook_is_named_for_codedeploy_and_targets_the_new_version(transformed: dict[str, Any]) -> None:
    hook = function(transformed, "PreTrafficHookFunction")

    assert hook["FunctionName"]["Fn::Join"][1][0] == "CodeDeployHook_"
    (version,) = resources_of(transformed, "AWS::Lambda::Version")
    assert hook["Environment"]["Variables"]["AMAAS_TARGET_VERSION"] == {"Ref": version}
    assert hook["Handler"] == "amaas.handlers.pretraffic.handler"


def test_snapstart_by_default_provisioned_concurrency_by_parameter(
    transformed: dict[str, Any], transformed_iam: dict[str, Any]
) -> None:
    (default_alias,) = resources_of(transformed, "AWS::Lambda::Alias").values()
    (provisioned_alias,) = resources_of(transformed_iam, "AWS::Lambda::Alias").values()

    assert function(transformed, "ApiFunction")["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert "ProvisionedConcurrencyConfig" not in default_alias["Properties"]
    assert "SnapStart" not in function(transformed_iam, "ApiFunction"), (
        "Lambda refuses SnapStart with provisioned concurrency"
    )
    assert provisioned_alias["Properties"]["ProvisionedConcurrencyConfig"] == {
        "ProvisionedConcurrentExecutions": {"Ref": "ProvisionedConcurrency"}
    }


def test_api_gateway_invokes_the_alias_not_latest(transformed: dict[str, Any]) -> None:
    (alias_name,) = resources_of(transformed, "AWS::Lambda::Alias")
    permissions = [
        p for n, p in resources_of(transformed, "AWS::Lambda::Permission").items() if n.startswith("ApiFunction")
    ]

    assert permissions
    assert all(p["Properties"]["FunctionName"] == {"Ref": alias_name} for p in permissions)


def test_model_layer_versions_are_retained_for_rollback(transformed: dict[str, Any]) -> None:
    layers = {
        logical_name(name): layer for name, layer in resources_of(transformed, "AWS::Lambda::LayerVersion").items()
    }

    assert layers["ModelLayer"]["DeletionPolicy"] == "Retain"
    assert layers["RuntimeLayer"]["Properties"]["CompatibleRuntimes"] == ["python3.13"]


# ---------------------------------------------------------------- batch


def test_queue_redrives_to_the_dlq_after_three_receives(transformed: dict[str, Any]) -> None:
    queue = transformed["Resources"]["BatchQueue"]["Properties"]

    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["BatchDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 3,
    }
    assert queue["VisibilityTimeout"] >= 6 * function(transformed, "BatchFunction")["Timeout"]
    assert queue["SqsManagedSseEnabled"] is True


def test_uploads_under_incoming_notify_the_queue_that_drives_the_batch_function(transformed: dict[str, Any]) -> None:
    (notification,) = transformed["Resources"]["BatchBucket"]["Properties"]["NotificationConfiguration"][
        "QueueConfigurations"
    ]
    (mapping,) = resources_of(transformed, "AWS::Lambda::EventSourceMapping").values()

    assert notification["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "incoming/"}]
    assert notification["Queue"] == {"Fn::GetAtt": ["BatchQueue", "Arn"]}
    assert mapping["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["BatchQueue", "Arn"]}
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


# ---------------------------------------------------------------- operations


def test_functions_trace_and_log_to_groups_with_retention(transformed: dict[str, Any]) -> None:
    groups = resources_of(transformed, "AWS::Logs::LogGroup")
    for name, resource in resources_of(transformed, "AWS::Lambda::Function").items():
        properties = resource["Properties"]
        assert properties["TracingConfig"] == {"Mode": "Active"}, name
        (group,) = [g for g in groups if {"Ref": g} == properties["LoggingConfig"]["LogGroup"]]
        assert groups[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    (stage,) = resources_of(transformed, "AWS::ApiGateway::Stage").values()
    assert stage["Properties"]["TracingEnabled"] is True


def test_monitoring_has_the_alarms_and_a_dashboard() -> None:
    from samtranslator.yaml_helper import yaml_parse

    monitoring = yaml_parse((REPO / "infra" / "monitoring.yaml").read_text())
    alarms = [r["Properties"] for r in monitoring["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    watched = Counter(
        (a["MetricName"], next(d["Name"] for d in a["Dimensions"] if d["Name"] != "Stage")) for a in alarms
    )

    assert watched == {
        ("5XXError", "ApiName"): 1,
        ("Latency", "ApiName"): 1,
        ("Throttles", "FunctionName"): 2,  # the API function and the batch function
        ("ApproximateNumberOfMessagesVisible", "QueueName"): 1,  # the DLQ
        ("ApproximateAgeOfOldestMessage", "QueueName"): 1,
    }
    throttled = {a["Dimensions"][0]["Value"]["Ref"] for a in alarms if a["MetricName"] == "Throttles"}
    assert throttled == {"ApiFunctionName", "BatchFunctionName"}
    assert next(a for a in alarms if a["MetricName"] == "Latency")["ExtendedStatistic"] == "p99"
    assert all(a["AlarmActions"] == [{"Ref": "AlarmTopicArn"}] for a in alarms)
    assert any(r["Type"] == "AWS::CloudWatch::Dashboard" for r in monitoring["Resources"].values())


def test_outputs_give_the_api_url_and_the_key(transformed: dict[str, Any]) -> None:
    url = transformed["Outputs"]["ApiUrl"]["Value"]["Fn::Sub"]

    assert url.startswith("https://${") and "execute-api" in url and url.endswith("/${StageName}/")
    assert transformed["Outputs"]["ApiKeyId"]["Condition"] == "UseApiKey"


def test_samconfig_environments_name_real_parameters_with_allowed_values() -> None:
    import tomllib

    from samtranslator.yaml_helper import yaml_parse

    from tests.infra.conftest import translate

    parameters = yaml_parse((REPO / "template.yaml").read_text())["Parameters"]
    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    for env in ("dev", "prod"):
        overrides = dict(item.split("=", 1) for item in config[env]["deploy"]["parameters"]["parameter_overrides"])
        for name, value in overrides.items():
            assert name in parameters, f"{env}: {name} is not a template parameter"
            allowed = parameters[name].get("AllowedValues")
            assert allowed is None or value in map(str, allowed), f"{env}: {name}={value}"
        assert translate(overrides)["Resources"], env


def test_usage_plan_follows_parameter_overrides() -> None:
    from tests.infra.conftest import translate

    template = translate({"ThrottleRateLimit": 7, "ThrottleBurstLimit": 9, "QuotaLimit": 500, "QuotaPeriod": "DAY"})

    (plan,) = resources_of(template, "AWS::ApiGateway::UsagePlan").values()
    assert plan["Properties"]["Throttle"] == {"RateLimit": 7, "BurstLimit": 9}
    assert plan["Properties"]["Quota"] == {"Limit": 500, "Period": "DAY"}
