"""Every untrusted value is read through here: JSON bodies, the fields inside them, and numbers in headers.

Each reader checks type and range where the value enters and raises the error class that carries its 4xx,
so nothing a client sends can reach the 500 path as a ``ValueError``, ``TypeError`` or ``OverflowError``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from amaas.errors import InvalidParameterError, InvalidRequestError

# Byte counts in headers: ASCII digits only ('²'.isdigit() is true, int('²') raises), and no more of them than
# any real body has.
_COUNT = re.compile(r"[0-9]{1,15}")
_MISSING = object()


def parse_json(body: bytes, what: str = "the body") -> Any:
    """Parses JSON, mapping every way it can fail (bad UTF-8, bad syntax, integers over Python's 4,300-digit
    limit, nesting past the recursion limit) to ``InvalidRequestError``."""
    try:
        return json.loads(body)
    except RecursionError:
        raise InvalidRequestError(f"{what} is nested too deeply") from None
    except (UnicodeDecodeError, ValueError):  # JSONDecodeError is a ValueError, and so is the integer limit
        raise InvalidRequestError(f"{what} is not valid JSON") from None


def byte_count(value: str | None, name: str) -> int | None:
    """A header holding a byte count (``Content-Length``, ``Inference-Header-Content-Length``), or ``None``."""
    if value is None:
        return None
    if not _COUNT.fullmatch(value.strip()):
        raise InvalidRequestError(f"{name} must be a byte count (ASCII digits)")
    return int(value)


def field(
    document: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = _MISSING
) -> Any:
    """``document[key]`` if it is of ``kind`` (JSON ``null`` counts as absent); booleans are never numbers.

    Raises:
        InvalidRequestError: Missing without a default, or of another JSON type.
    """
    value = document.get(key)
    if value is None:
        if default is _MISSING:
            raise InvalidRequestError(f'{where}: "{key}" is required')
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise InvalidRequestError(f'{where}: "{key}" must be {_names(kinds)}, not a boolean')
    if not isinstance(value, kinds):
        raise InvalidRequestError(f'{where}: "{key}" must be {_names(kinds)}')
    return value


def json_integer(value: Any) -> int | None:
    """``value`` as an int if JSON Schema would call it an integer (``3`` or ``3.0``, never ``true``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def positive_int(value: Any, name: str) -> int:
    """A JSON integer >= 1 (not a boolean, not a fraction)."""
    number = json_integer(value)
    if number is None or number < 1:
        raise InvalidRequestError(f"{name} must be a positive integer")
    return number


def index_param(value: str, name: str, size: int) -> int | None:
    """A query value that may be an index below ``size``: the index, or ``None`` when it is not ASCII digits.

    Raises:
        InvalidParameterError: Digits, but not below ``size``.
    """
    if not _COUNT.fullmatch(value):
        return None
    index = int(value)
    if index >= size:
        raise InvalidParameterError(f"{name} {index} is not an index below {size}")
    return index


_JSON_NAMES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
}


def _names(kinds: tuple[type, ...]) -> str:
    return " or ".join(_JSON_NAMES.get(k, k.__name__) for k in kinds)
