"""The Amazon States Language expressions the local Step Functions evaluates: paths, payload templates with the
intrinsics ``States.Format`` and ``States.StringToJson``, Choice rules, Retry matching and CSV item rows."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from typing import Any


class StatesError(Exception):
    """A state's failure: ``error`` is what Retry and Catch match (``States.Runtime``, ``UpstreamError``...)."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}")
        self.error, self.cause = error, cause


def path(expression: str, data: Any, context: dict[str, Any]) -> Any:
    """``$``, ``$.a.b`` and ``$$.a.b`` (the context object); a missing field is States.Runtime, as on AWS."""
    if expression == "$":
        return data
    if expression.startswith("$$."):
        node, rest = context, expression[3:]
    elif expression.startswith("$."):
        node, rest = data, expression[2:]
    else:
        raise NotImplementedError(f"path {expression}")
    for part in rest.split("."):
        if not isinstance(node, dict) or part not in node:
            raise StatesError("States.Runtime", f"The JSONPath '{expression}' could not be found in the input")
        node = node[part]
    return node


def present(expression: str, data: Any) -> bool:
    try:
        path(expression, data, {})
    except StatesError:
        return False
    return True


def place(data: Any, result_path: str | None, result: Any) -> Any:
    if result_path == "$":
        return result
    if result_path is None:
        return data
    if not result_path.startswith("$.") or not isinstance(data, dict):
        raise NotImplementedError(f"ResultPath {result_path}")
    placed = copy.deepcopy(data)
    node = placed
    *parents, last = result_path[2:].split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = result
    return placed


def evaluate(template: Any, data: Any, context: dict[str, Any]) -> Any:
    """A payload template: keys ending in ``.$`` take a path or an intrinsic function; the rest are literal."""
    if isinstance(template, dict):
        return {
            k.removesuffix(".$"): _expression(v, data, context) if k.endswith(".$") else evaluate(v, data, context)
            for k, v in template.items()
        }
    if isinstance(template, list):
        return [evaluate(v, data, context) for v in template]
    return template


_INTRINSIC = re.compile(r"^(States\.\w+)\((.*)\)$", re.DOTALL)
_ARGUMENT = re.compile(r"\s*(?:'((?:[^'\\]|\\.)*)'|(\$\$?[^,\s]*))\s*(?:,|$)")


def _expression(expression: str, data: Any, context: dict[str, Any]) -> Any:
    call = _INTRINSIC.match(expression)
    if call is None:
        return path(expression, data, context)
    function, raw = call.groups()
    arguments: list[Any] = []
    position = 0
    while position < len(raw):
        argument = _ARGUMENT.match(raw, position)
        if argument is None:
            raise NotImplementedError(f"intrinsic arguments {raw!r}")
        literal, reference = argument.groups()
        arguments.append(re.sub(r"\\(.)", r"\1", literal) if literal is not None else path(reference, data, context))
        position = argument.end()
    if function == "States.StringToJson":
        return json.loads(arguments[0])
    if function == "States.Format":
        template, *values = arguments
        pieces = template.split("{}")
        if len(pieces) != len(values) + 1:
            raise StatesError("States.IntrinsicFailure", f"{function}: arguments do not match the template")
        return pieces[0] + "".join(str(value) + piece for value, piece in zip(values, pieces[1:], strict=True))
    raise NotImplementedError(f"intrinsic {function}")


def matches(rule: dict[str, Any], data: Any) -> bool:
    if "And" in rule:
        return all(matches(r, data) for r in rule["And"])  # short-circuits, as AWS's evaluation does
    if "Or" in rule:
        return any(matches(r, data) for r in rule["Or"])
    if "Not" in rule:
        return not matches(rule["Not"], data)
    variable = rule["Variable"]
    if "IsPresent" in rule:
        return present(variable, data) is bool(rule["IsPresent"])
    value = path(variable, data, {})
    if "StringEquals" in rule:
        return isinstance(value, str) and value == rule["StringEquals"]
    if "StringMatches" in rule:
        return isinstance(value, str) and _wildcard(rule["StringMatches"]).fullmatch(value) is not None
    raise NotImplementedError(f"choice rule {sorted(rule)}")


def _wildcard(pattern: str) -> re.Pattern[str]:
    """StringMatches: ``*`` is any run of characters, ``\\*`` a literal star."""
    parts = re.split(r"(\\\*|\*)", pattern)
    return re.compile("".join(".*" if p == "*" else re.escape("*" if p == "\\*" else p) for p in parts), re.DOTALL)


def catches(errors: list[str], error: str) -> bool:
    return error in errors or "States.ALL" in errors or ("States.TaskFailed" in errors and error != "States.Timeout")


def state_field(state: dict[str, Any], name: str, data: Any, context: dict[str, Any], default: Any) -> Any:
    if name in state:
        return state[name]
    if f"{name}Path" in state:
        return path(state[f"{name}Path"], data, context)
    return default


def csv_rows(text: str, config: dict[str, Any]) -> list[dict[str, str]]:
    rows = list(csv.reader(io.StringIO(text)))
    if config.get("CSVHeaderLocation", "FIRST_ROW") == "FIRST_ROW":
        header, rows = rows[0], rows[1:]
    else:
        header = config["CSVHeaders"]
    return [dict(zip(header, row, strict=False)) for row in rows if row]
