"""What CloudFormation does to template.yaml before the SAM transform runs: the AWS::LanguageExtensions
transform resolves each Fn::If whose condition depends only on parameters, and drops AWS::NoValue. The SAM
translator does not do this itself, so the tests do it for a given set of parameter values."""

from __future__ import annotations

import json
import re
from typing import Any

_NO_VALUE = {"Ref": "AWS::NoValue"}


def resolve(template: dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    parameters = {name: spec.get("Default") for name, spec in template.get("Parameters", {}).items()}
    parameters.update(overrides or {})
    conditions: dict[str, bool] = {}

    def value(node: Any) -> Any:
        """Fn::Equals compares strings: CloudFormation turns a template's numbers into strings too."""
        if isinstance(node, dict) and set(node) == {"Ref"} and node["Ref"] in parameters:
            return str(parameters[node["Ref"]])
        return str(node) if isinstance(node, int | float | str) else node

    def condition(expression: Any) -> bool:
        if isinstance(expression, dict):
            (function, args), *_ = expression.items()
            if function == "Fn::Equals":
                return bool(value(args[0]) == value(args[1]))
            if function == "Fn::Not":
                return not condition(args[0])
            if function == "Fn::And":
                return all(condition(a) for a in args)
            if function == "Fn::Or":
                return any(condition(a) for a in args)
            if function == "Condition":
                return conditions.setdefault(args, condition(template["Conditions"][args]))
        raise ValueError(f"cannot evaluate condition {expression!r}")

    for name, expression in template.get("Conditions", {}).items():
        conditions[name] = condition(expression)

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Fn::If"}:
                name, when_true, when_false = node["Fn::If"]
                return walk(when_true if conditions[name] else when_false)
            resolved = {k: walk(v) for k, v in node.items()}
            return {k: v for k, v in resolved.items() if v != _NO_VALUE}
        if isinstance(node, list):
            return [v for v in (walk(item) for item in node) if v != _NO_VALUE]
        return node

    resolved: dict[str, Any] = walk(template)
    transforms = resolved.get("Transform")
    if isinstance(transforms, list):
        resolved["Transform"] = next(t for t in transforms if t != "AWS::LanguageExtensions")
    return resolved


def deployed(node: Any, values: dict[str, str]) -> Any:
    """A transformed template's value as CloudFormation resolves it at deploy time, for the intrinsics the job
    resources use: ``Ref`` and ``Fn::GetAtt`` (looked up in ``values`` as ``Name`` and ``Name.Attribute``, with
    parameters and pseudo parameters among them) and ``Fn::Sub`` in both its forms."""
    if isinstance(node, dict) and len(node) == 1:
        (function, args), *_ = node.items()
        if function == "Ref":
            return values[args]
        if function == "Fn::GetAtt":
            return values[".".join(args)]
        if function == "Fn::Sub":
            text, variables = (args, {}) if isinstance(args, str) else args
            local = {**values, **{k: deployed(v, values) for k, v in variables.items()}}
            return re.sub(r"\$\{([^}!]+)\}", lambda m: str(local[m.group(1)]), text)
    if isinstance(node, dict):
        return {k: deployed(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [deployed(v, values) for v in node]
    return node


def state_machine_definition(resource: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """What Step Functions receives for a transformed ``AWS::StepFunctions::StateMachine``: SAM's
    ``DefinitionString`` (an ``Fn::Join`` of JSON lines) with every ``DefinitionSubstitutions`` placeholder
    replaced by its deployed value."""
    properties = resource["Properties"]
    separator, lines = properties["DefinitionString"]["Fn::Join"]
    text = separator.join(lines)
    for name, value in deployed(properties.get("DefinitionSubstitutions", {}), values).items():
        text = text.replace("${" + name + "}", str(value))
    definition: dict[str, Any] = json.loads(text)
    return definition
