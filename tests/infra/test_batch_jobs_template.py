"""The batch job state machine as template.yaml deploys it: its definition (after the SAM transform and the
definition substitutions) checked as ASL by cfn-lint and by the rules the job's correctness needs, and the two
roles scoped to exactly the job's bucket and prefixes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.infra.cfn import deployed, state_machine_definition
from tests.infra.conftest import JOB_OVERRIDES, JOB_VALUES, job_values
from tests.infra.test_template import statements

THROTTLING = {"Lambda.TooManyRequestsException", "Lambda.ServiceException"}


@pytest.fixture(scope="module")
def definition(transformed_jobs: dict[str, Any]) -> dict[str, Any]:
    return state_machine_definition(
        transformed_jobs["Resources"]["BatchJobStateMachine"], job_values(transformed_jobs, JOB_OVERRIDES)
    )


def machines(definition: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The state machine and every Map's item processor: each has its own StartAt and States."""
    yield definition
    for state in definition["States"].values():
        if state["Type"] == "Map":
            yield from machines(state["ItemProcessor"])


def successors(state: dict[str, Any]) -> set[str]:
    named = [state.get("Next"), state.get("Default")]
    named += [c["Next"] for c in state.get("Choices", []) + state.get("Catch", [])]
    return {n for n in named if n is not None}


def test_job_resources_exist_only_with_a_source_bucket(transformed: dict[str, Any]) -> None:
    # Without a source bucket there is nothing a job could read: no state machine, no role reaching a user's bucket
    jobs = {name: r for name, r in transformed["Resources"].items() if name.startswith("BatchJob")}

    assert set(jobs) == {
        "BatchJobFunction", "BatchJobFunctionRole", "BatchJobLogGroup", "BatchJobStateMachine",
        "BatchJobStateMachineRole",
    }  # fmt: skip
    assert all(r["Condition"] == "HasJobSource" for r in jobs.values())
    assert transformed["Outputs"]["BatchJobStateMachineArn"]["Condition"] == "HasJobSource"
    assert transformed["Conditions"]["HasJobSource"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "JobSourceBucket"}, ""]}]}
    assert transformed["Parameters"]["JobSourceBucket"]["Default"] == ""


def test_every_state_is_reachable_and_every_transition_lands_on_a_state(definition: dict[str, Any]) -> None:
    for machine in machines(definition):
        states = machine["States"]
        reached, frontier = set(), [machine["StartAt"]]
        while frontier:
            name = frontier.pop()
            if name in reached:
                continue
            assert name in states, f"a transition to {name!r}, which does not exist"
            reached.add(name)
            frontier += successors(states[name])
        assert reached == set(states), f"unreachable: {set(states) - reached}"
        for name, state in states.items():
            terminal = state["Type"] in ("Succeed", "Fail") or state.get("End") is True
            assert terminal or successors(state), f"{name} neither ends nor goes anywhere"


def test_each_source_kind_has_a_distributed_map_over_the_parameter_bucket(definition: dict[str, Any]) -> None:
    maps = {name: s for name, s in definition["States"].items() if s["Type"] == "Map"}

    readers = {name: (m["ItemReader"]["Resource"], m["ItemReader"].get("ReaderConfig", {}).get("InputType"))
               for name, m in maps.items()}  # fmt: skip
    assert readers == {
        "ClassifyPrefix": ("arn:aws:states:::s3:listObjectsV2", None),
        "ClassifyInventory": ("arn:aws:states:::s3:getObject", "MANIFEST"),
        "ClassifyCsvKeys": ("arn:aws:states:::s3:getObject", "CSV"),
        "ClassifyJsonKeys": ("arn:aws:states:::s3:getObject", "JSON"),
    }
    for name, state in maps.items():
        # the reader's bucket is the template parameter, never the execution's input
        assert state["ItemReader"]["Parameters"]["Bucket"] == JOB_OVERRIDES["JobSourceBucket"], name
        assert "Bucket.$" not in state["ItemReader"]["Parameters"], name
        assert state["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
        # batches sized by JobBatchSize and within a child execution's 256 KiB input
        batcher = state["ItemBatcher"]
        assert batcher["MaxItemsPerBatchPath"] == "$.batch_size" and batcher["MaxInputBytesPerBatch"] <= 256 * 1024
        assert batcher["BatchInput"]["source"] == {
            "bucket": JOB_OVERRIDES["JobSourceBucket"],
            "scope": JOB_OVERRIDES["JobSourcePrefix"],
            "keys": "url" if name == "ClassifyInventory" else "literal",
        }
        assert (state["MaxConcurrencyPath"], state["ToleratedFailurePercentagePath"]) == (
            "$.max_concurrency",
            "$.tolerated_failure_percentage",
        )
        # the map run's own record goes to S3 beside the results
        assert state["ResultWriter"] == {
            "Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket.$": "$.output.bucket", "Prefix.$": "$.map_runs"},
        }
    # the four maps differ only in how they read: one classification, one retry policy, one writer
    common = [{k: v for k, v in m.items() if k not in ("ItemReader", "ItemBatcher")} for m in maps.values()]
    assert all(c == common[0] for c in common)
    # and the parameters reach them as numbers (definition substitutions insert text)
    settings = definition["States"]["Settings"]["Parameters"]
    assert settings["batch_size.$"] == "States.StringToJson('100')"
    assert settings["max_concurrency.$"] == "States.StringToJson('100')"
    assert settings["tolerated_failure_percentage.$"] == "States.StringToJson('5')"


def test_lambda_calls_retry_throttling_with_backoff_and_our_own_retryable_errors(definition: dict[str, Any]) -> None:
    tasks = [s for m in machines(definition) for s in m["States"].values() if s["Type"] == "Task"]

    assert len(tasks) == 4
    for task in tasks:
        assert task["Resource"] == "arn:aws:states:::lambda:invoke"
        assert task["Parameters"]["FunctionName"] == JOB_VALUES["BatchJobFunction.Arn"]
        throttling = next(r for r in task["Retry"] if set(r["ErrorEquals"]) >= THROTTLING)
        assert throttling["BackoffRate"] >= 2 and throttling["MaxAttempts"] >= 6
        assert throttling.get("JitterStrategy") == "FULL" and throttling["MaxDelaySeconds"] <= 300
        ours = next(r for r in task["Retry"] if "BatchIncompleteError" in r["ErrorEquals"])
        # the names the job function's exceptions carry (Lambda reports the exception's class as errorType)
        assert set(ours["ErrorEquals"]) == {"BatchIncompleteError", "UpstreamError"}
        from amaas.batch.distributed_map import BatchIncompleteError
        from amaas.errors import UpstreamError

        assert {BatchIncompleteError.__name__, UpstreamError.__name__} == set(ours["ErrorEquals"])


def test_jobs_outside_the_parameters_fail_before_reading_anything(definition: dict[str, Any]) -> None:
    check, route = definition["States"]["CheckScope"], definition["States"]["Route"]

    source_rule, output_rule = check["Choices"]
    assert source_rule["Next"] == "SourceOutsideScope" and output_rule["Next"] == "OutputOutsideScope"
    assert {"Variable": "$.source.bucket", "StringEquals": "amaas-photos"} in source_rule["Not"]["And"]
    assert {"Variable": "$.output.bucket", "StringEquals": "amaas-batch-jobs"} in output_rule["Not"]["And"]
    assert {"Variable": "$.output.prefix", "StringMatches": "results/*/"} in output_rule["Not"]["And"]
    patterns = [rule["And"][1]["StringMatches"] for rule in route["Choices"]]
    assert patterns == ["albums/*", "albums/*manifest.json", "albums/*.csv", "albums/*.json"]
    assert route["Default"] == "SourceOutsideScope"


def test_cfn_lint_validates_the_deployed_definition(definition: dict[str, Any], tmp_path: Path) -> None:
    """cfn-lint checks ASL only in a plain AWS::StepFunctions::StateMachine (not through SAM's DefinitionString),
    so the deployed definition is linted as one; and a broken copy must fail, or the check proves nothing."""
    broken = json.loads(json.dumps(definition))
    del broken["States"]["ClassifyPrefix"]["ItemProcessor"]["StartAt"]
    broken["States"]["ClassifyPrefix"]["ItemBatcher"]["MaxItemsPerBatch"] = "many"

    for body, should_pass in ((definition, True), (broken, False)):
        template = {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Resources": {
                "Job": {
                    "Type": "AWS::StepFunctions::StateMachine",
                    "Properties": {"RoleArn": "arn:aws:iam::123456789012:role/job", "Definition": body},
                }
            },
        }
        path = tmp_path / f"job-{should_pass}.json"
        path.write_text(json.dumps(template))
        tool = shutil.which("cfn-lint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        assert tool
        result = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=300, check=False)
        assert (result.returncode == 0) == should_pass, result.stdout + result.stderr
        if not should_pass:
            assert "E3601" in result.stdout


@pytest.mark.parametrize("role", ["BatchJobFunctionRole", "BatchJobStateMachineRole"])
def test_job_roles_grant_nothing_on_wildcards_but_xray(transformed_jobs: dict[str, Any], role: str) -> None:
    for statement in statements(transformed_jobs, role):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not any(a.endswith("*") for a in actions), statement
        if statement["Resource"] == "*":
            assert all(a.startswith("xray:") for a in actions), "X-Ray has no resource-level permissions"
    assert "ManagedPolicyArns" not in transformed_jobs["Resources"][role]["Properties"]


def grants(template: dict[str, Any], role: str) -> dict[str, list[tuple[Any, Any]]]:
    """Each action, with the deployed resource ARN and condition of every statement granting it."""
    values = job_values(template, JOB_OVERRIDES)
    found: dict[str, list[tuple[Any, Any]]] = {}
    for statement in statements(template, role):
        for action in statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]:
            found.setdefault(action, []).append(
                (deployed(statement["Resource"], values), deployed(statement.get("Condition"), values))
            )
    return found


def test_the_job_function_reads_exactly_the_source_prefix_and_writes_exactly_the_output_prefix(
    transformed_jobs: dict[str, Any],
) -> None:
    granted = grants(transformed_jobs, "BatchJobFunctionRole")

    source, output = "arn:aws:s3:::amaas-photos", "arn:aws:s3:::amaas-batch-jobs"
    assert granted["s3:GetObject"] == [(f"{source}/albums/*", None), (f"{output}/results/*", None)]
    assert granted["s3:GetObjectVersion"] == [(f"{source}/albums/*", None)]
    assert granted["s3:PutObject"] == [(f"{output}/results/*", None)]
    assert granted["s3:ListBucket"] == [
        (source, {"StringLike": {"s3:prefix": "albums/*"}}),
        (output, {"StringLike": {"s3:prefix": "results/*"}}),
    ]
    function = transformed_jobs["Resources"]["BatchJobFunction"]["Properties"]
    assert function["Role"] == {"Fn::GetAtt": ["BatchJobFunctionRole", "Arn"]}
    assert function["Handler"] == "amaas.handlers.batch_job.handler"
    # the code refuses other buckets too, with an error result rather than AccessDenied
    assert function["Environment"]["Variables"]["AMAAS_S3_BUCKETS"] == {"Ref": "JobSourceBucket"}


def test_the_state_machine_invokes_only_the_job_function_and_reads_only_the_source_prefix(
    transformed_jobs: dict[str, Any],
) -> None:
    granted = grants(transformed_jobs, "BatchJobStateMachineRole")

    assert granted["lambda:InvokeFunction"] == [(JOB_VALUES["BatchJobFunction.Arn"], None)]
    assert granted["s3:ListBucket"] == [("arn:aws:s3:::amaas-photos", {"StringLike": {"s3:prefix": "albums/*"}})]
    assert granted["s3:GetObject"] == [("arn:aws:s3:::amaas-photos/albums/*", None)]
    assert granted["s3:PutObject"] == [("arn:aws:s3:::amaas-batch-jobs/results/*", None)]
    # its own child executions, nothing else in Step Functions
    assert granted["states:StartExecution"] == [
        ("arn:aws:states:us-east-1:123456789012:stateMachine:amaas-batch-job", None)
    ]
    assert granted["states:DescribeExecution"] == [
        ("arn:aws:states:us-east-1:123456789012:execution:amaas-batch-job/*", None)
    ]
    machine = transformed_jobs["Resources"]["BatchJobStateMachine"]["Properties"]
    assert deployed(machine["StateMachineName"], job_values(transformed_jobs, JOB_OVERRIDES)) == "amaas-batch-job"
    assert machine["TracingConfiguration"] == {"Enabled": True}
    tags = {t["Key"]: deployed(t["Value"], job_values(transformed_jobs, JOB_OVERRIDES)) for t in machine["Tags"]}
    assert tags["amaas:job-source"] == "s3://amaas-photos/albums/"
    assert tags["amaas:job-output"] == "s3://amaas-batch-jobs/results/"


def test_a_separate_output_bucket_moves_every_write_grant_there() -> None:
    from tests.infra.conftest import translate

    overrides = {**JOB_OVERRIDES, "JobOutputBucket": "amaas-results", "JobOutputPrefix": "classified/"}
    template = translate(overrides)

    values = job_values(template, overrides)
    for role in ("BatchJobFunctionRole", "BatchJobStateMachineRole"):
        for statement in statements(template, role):
            if "s3:PutObject" in statement["Action"]:
                assert deployed(statement["Resource"], values) == "arn:aws:s3:::amaas-results/classified/*"
    definition = state_machine_definition(template["Resources"]["BatchJobStateMachine"], values)
    rule = definition["States"]["CheckScope"]["Choices"][1]["Not"]["And"]
    assert {"Variable": "$.output.bucket", "StringEquals": "amaas-results"} in rule
