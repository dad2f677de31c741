"""A function's configuration as Lambda would see it, read from the template ``sam build`` wrote.

The built template (``.aws-sam/build/template.yaml``) is the deployed one with each ``CodeUri`` and
``ContentUri`` pointing at its build folder. Values come from ``Globals.Function`` unless the function sets them
(environment variables merge, layers add up, as SAM merges globals). Intrinsics are resolved the way
CloudFormation would for a stack that does not exist: parameters take their defaults or the overrides, pseudo
parameters and resource references get fixed fake values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from amaas_cli.lambda_local.errors import LambdaSetupError

REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "amaas-local"
STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/6b1f2c30-0000-4000-8000-00000000cafe"
FUNCTION = "AWS::Serverless::Function"
LAYER = "AWS::Serverless::LayerVersion"
_NO_VALUE = object()


@dataclass(frozen=True)
class FunctionSpec:
    """What Lambda knows about one function before it starts it."""

    logical_id: str
    name: str
    runtime: str
    handler: str
    memory_mb: int
    timeout_s: int
    architecture: str
    code_dir: Path
    layer_dirs: tuple[Path, ...]
    environment: dict[str, str]
    log_group: str
    log_format: str
    log_level: str | None
    tracing: bool
    region: str = REGION
    account: str = ACCOUNT

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.name}"

    @property
    def python_version(self) -> str:
        """``3.13`` for ``python3.13``."""
        return self.runtime.removeprefix("python")


class _Loader(yaml.SafeLoader):
    """Reads CloudFormation's short forms (``!Ref X``, ``!GetAtt A.B``) as their long forms."""


def _intrinsic(loader: _Loader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if name == "Fn::GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_Loader.add_multi_constructor("!", _intrinsic)


def read_template(build_dir: Path) -> dict[str, Any]:
    """The built template, with a one-line reason when there is none."""
    path = build_dir / "template.yaml"
    if not build_dir.is_dir():
        raise LambdaSetupError(f"no build directory {build_dir}: run `make build` or `sam build` first")
    if not path.is_file():
        raise LambdaSetupError(f"{build_dir} has no template.yaml: is it the output of `sam build`?")
    template: dict[str, Any] = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    return template


def load_function(
    build_dir: Path, logical_id: str, overrides: dict[str, str] | None = None, region: str = REGION
) -> FunctionSpec:
    """The configuration of function ``logical_id`` in the build under ``build_dir``.

    Args:
        build_dir: The ``sam build`` output (``.aws-sam/build``).
        logical_id: The function's resource name in the template, such as ``ApiFunction``.
        overrides: Template parameter values, as ``--parameter-overrides`` gives them.
        region: The region the function pretends to run in.

    Raises:
        LambdaSetupError: No build, no such function, a runtime other than Python, or a missing layer.
    """
    template = read_template(build_dir)
    resources: dict[str, Any] = template.get("Resources", {})
    functions = sorted(k for k, v in resources.items() if v.get("Type") == FUNCTION)
    if resources.get(logical_id, {}).get("Type") != FUNCTION:
        raise LambdaSetupError(
            f"no function {logical_id!r} in {build_dir}/template.yaml (functions: {', '.join(functions)})"
        )
    resolve = Resolver(template, overrides or {}, region)
    globals_: dict[str, Any] = resolve(_used(template.get("Globals", {}).get("Function", {})))
    own: dict[str, Any] = resolve(_used(resources[logical_id].get("Properties", {})))
    props = {**globals_, **own}
    runtime = str(props.get("Runtime", ""))
    if not runtime.startswith("python"):
        raise LambdaSetupError(f"{logical_id} runs {runtime or 'no runtime'}; only Python runtimes are emulated")
    env = {**_variables(globals_), **_variables(own)}
    layers = [*globals_.get("Layers", []), *own.get("Layers", [])]
    logging_config: dict[str, Any] = props.get("LoggingConfig", {})
    name = str(props.get("FunctionName") or logical_id)
    return FunctionSpec(
        logical_id=logical_id,
        name=name,
        runtime=runtime,
        handler=str(props["Handler"]),
        memory_mb=int(props.get("MemorySize", 128)),
        timeout_s=int(props.get("Timeout", 3)),
        architecture=str((props.get("Architectures") or ["x86_64"])[0]),
        code_dir=_built_dir(build_dir, logical_id, props.get("CodeUri")),
        layer_dirs=tuple(_layer_dir(build_dir, template, layer) for layer in layers),
        environment=env,
        log_group=str(logging_config.get("LogGroup") or f"/aws/lambda/{name}"),
        log_format=str(logging_config.get("LogFormat", "Text")),
        log_level=logging_config.get("ApplicationLogLevel"),
        tracing=props.get("Tracing") == "Active",
        region=region,
    )


def _used(props: dict[str, Any]) -> dict[str, Any]:
    """Only the properties that shape the running function get resolved (events, roles and rollout settings
    are deployment concerns)."""
    return {k: v for k, v in props.items() if k in _RUNTIME_PROPERTIES}


_RUNTIME_PROPERTIES = {
    "Runtime", "Handler", "MemorySize", "Timeout", "Architectures", "Layers", "Environment",
    "LoggingConfig", "FunctionName", "Tracing", "CodeUri",
}  # fmt: skip


def _variables(props: dict[str, Any]) -> dict[str, str]:
    variables: dict[str, Any] = props.get("Environment", {}).get("Variables", {})
    return {k: _string(v) for k, v in variables.items()}


def _string(value: Any) -> str:
    """CloudFormation passes every environment value as a string; booleans become lowercase."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _built_dir(build_dir: Path, logical_id: str, uri: Any) -> Path:
    path = build_dir / str(uri or logical_id)
    if not path.is_dir():
        raise LambdaSetupError(f"{logical_id}: the build has no {path}; run `sam build` again")
    return path


def _layer_dir(build_dir: Path, template: dict[str, Any], layer: Any) -> Path:
    """A layer's build folder: ``layer`` is the resolved ``!Ref`` of a layer resource, ``layer:<LogicalId>``."""
    if not (isinstance(layer, str) and layer.startswith(_LAYER_REF)):
        raise LambdaSetupError(f"layer {layer!r} is not built from this template, so it cannot be run locally")
    logical_id = layer.removeprefix(_LAYER_REF)
    uri = template["Resources"][logical_id].get("Properties", {}).get("ContentUri")
    return _built_dir(build_dir, logical_id, uri)


_LAYER_REF = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:"


class Resolver:
    """Resolves the intrinsics a function's properties use, for parameter values and fake stack facts."""

    def __init__(self, template: dict[str, Any], overrides: dict[str, str], region: str) -> None:
        self.template = template
        self.resources: dict[str, Any] = template.get("Resources", {})
        specs: dict[str, Any] = template.get("Parameters", {})
        unknown = set(overrides) - set(specs)
        if unknown:
            raise LambdaSetupError(f"unknown template parameters: {', '.join(sorted(unknown))}")
        self.values: dict[str, Any] = {k: v.get("Default") for k, v in specs.items()} | dict(overrides)
        for key, value in overrides.items():
            allowed = specs[key].get("AllowedValues")
            if allowed and value not in [str(a) for a in allowed]:
                raise LambdaSetupError(f"{key}={value} is not one of {', '.join(map(str, allowed))}")
        self.values.update(
            {
                "AWS::Region": region,
                "AWS::AccountId": ACCOUNT,
                "AWS::StackName": STACK,
                "AWS::StackId": STACK_ID.replace(REGION, region),
                "AWS::Partition": "aws",
                "AWS::URLSuffix": "amazonaws.com",
            }
        )
        self.region = region

    def __call__(self, node: Any) -> Any:
        value = self._walk(node)
        return None if value is _NO_VALUE else value

    def _walk(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in map(self._walk, node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), *_ = node.items()
            if key == "Ref" or key.startswith("Fn::"):
                return self._function(key, arg)
        return {k: v for k, v in ((k, self._walk(v)) for k, v in node.items()) if v is not _NO_VALUE}

    def _function(self, key: str, arg: Any) -> Any:
        if key == "Ref":
            return self._ref(str(arg))
        if key == "Fn::If":
            name, when_true, when_false = arg
            return self._walk(when_true if self._condition({"Condition": name}) else when_false)
        if key == "Fn::Sub":
            text, names = (arg, {}) if isinstance(arg, str) else (arg[0], self._walk(arg[1]))
            return re.sub(r"\$\{([^}!]+)\}", lambda m: str(names.get(m[1]) or self._ref(m[1])), text)
        args = self._walk(arg)
        if key == "Fn::Join":
            return str(args[0]).join(map(str, args[1]))
        if key == "Fn::Select":
            return args[1][int(args[0])]
        if key == "Fn::Split":
            return str(args[1]).split(str(args[0]))
        if key == "Fn::GetAtt":
            return self._ref(".".join(args) if isinstance(args, list) else str(args))
        raise LambdaSetupError(f"cannot resolve {key} locally")

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.values:
            return _string(self.values[name])
        resource_id, _, attribute = name.partition(".")
        resource = self.resources.get(resource_id)
        if resource is None:
            raise LambdaSetupError(f"the template refers to {name!r}, which it does not define")
        kind, props = resource.get("Type"), resource.get("Properties", {})
        if kind == FUNCTION:
            function = str(self._walk(props.get("FunctionName")) or resource_id)
            arn = f"arn:aws:lambda:{self.region}:{ACCOUNT}:function:{function}"
            # Locally there is only $LATEST: a version reference names it, an alias keeps its name.
            qualifier = {"Version": "$LATEST", "Alias": props.get("AutoPublishAlias", "live")}
            return f"{arn}:{qualifier[attribute]}" if attribute in qualifier else arn if attribute else function
        if kind == LAYER:
            return f"{_LAYER_REF}{resource_id}"
        for name_property in ("LogGroupName", "BucketName", "QueueName", "TableName"):
            if name_property in props:
                return str(self._walk(props[name_property]))
        return resource_id

    def _condition(self, expression: Any) -> bool:
        (key, arg), *_ = expression.items()
        if key == "Condition":
            return self._condition(self.template["Conditions"][arg])
        if key == "Fn::Equals":
            left, right = (_string(self._walk(a)) for a in arg)
            return left == right
        if key == "Fn::Not":
            return not self._condition(arg[0])
        if key == "Fn::And":
            return all(self._condition(a) for a in arg)
        if key == "Fn::Or":
            return any(self._condition(a) for a in arg)
        raise LambdaSetupError(f"cannot evaluate condition {key} locally")
