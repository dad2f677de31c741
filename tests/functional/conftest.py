from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import LambdaContext

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture(scope="session")
def handler_module(artifact: Path) -> Iterator[Any]:
    """amaas.handlers.api imported the way Lambda imports it: once, with the environment template.yaml sets."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AMAAS_MODEL_DIR", str(artifact))
        patch.setenv("AMAAS_ORT_THREADS", "1")
        sys.modules.pop("amaas.handlers.api", None)
        module = importlib.import_module("amaas.handlers.api")
        yield module
        sys.modules.pop("amaas.handlers.api", None)


@pytest.fixture
def invoke(handler_module: Any) -> Invoke:
    """Calls the Lambda handler with an API Gateway event, as the Lambda runtime does."""

    def call(event: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = handler_module.handler(event, LambdaContext())
        return response

    return call
