"""The BUILT function and layers, imported under the Lambda runtime's Python (3.13) with only the layers on
the path, as Lambda lays them out (/var/task + /opt/python, model at /opt/model), answer the event files
exactly as the development environment does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.functional.conftest import Invoke
from tests.helpers import EVENTS

EVENT_NAMES = sorted(p.stem for p in EVENTS.glob("*.json"))

# Runs inside python3.13 -S: no site-packages, so anything not in the layers fails to import.
LAMBDA_SCRIPT = """
import importlib.util, json, sys
assert sys.version_info[:2] == (3, 13), sys.version
assert importlib.util.find_spec("torch") is None, "torch must not reach the Lambda runtime"
from amaas.handlers import api
assert "aws_xray_sdk" in sys.modules, "X-Ray tracing is active"

class Context:
    function_name = "amaas-api"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:amaas-api:live"
    aws_request_id = "parity"
    def get_remaining_time_in_millis(self):
        return 25000

results = {}
for path in sys.argv[1:]:
    with open(path) as f:
        results[path] = api.handler(json.load(f), Context())
print(json.dumps(results))
"""


def lambda_python() -> str:
    """python3.13 (the Lambda runtime's version) from pyenv's versions, else from PATH (pyenv shims need
    PYENV_VERSION, so the real binary is preferred)."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = sorted(str(p) for p in pyenv.glob("3.13.*/bin/python3.13"))
    found = shutil.which("python3.13")
    if not candidates and found and "shims" not in found:
        candidates = [found]
    if not candidates:
        pytest.skip("python3.13 is not installed here; the runtime parity check needs the Lambda runtime's Python")
    return str(candidates[-1])


def comparable(response: dict[str, Any]) -> dict[str, Any]:
    """The response without what legitimately differs between two runs: timings."""
    body = json.loads(response["body"])
    for timing in ("inference_ms", "preprocess_ms"):
        body.pop(timing, None)
    return {"status": response["statusCode"], "body": body, "content-type": response["headers"].get("content-type")}


# What the Lambda Python runtime itself provides in /var/runtime (boto3 and its dependencies): X-Ray tracing
# and S3 references use them, so the layer does not ship them. Pure Python, copied from this environment.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py")


@pytest.fixture(scope="module")
def var_runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import boto3

    site = Path(boto3.__file__).parents[1]
    target = tmp_path_factory.mktemp("var-runtime")
    for name in RUNTIME_PROVIDED:
        source = site / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / name)
    return target


def test_built_layers_answer_like_the_dev_environment(sam_build: Path, invoke: Invoke, var_runtime: Path) -> None:
    paths = [str(EVENTS / f"{name}.json") for name in EVENT_NAMES]
    # Lambda's order: the function (/var/task), the layers (/opt/python), then the runtime's own packages
    path = [sam_build / "ApiFunction", sam_build / "RuntimeLayer" / "python", var_runtime]
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": os.pathsep.join(map(str, path)),
        "AWS_LAMBDA_FUNCTION_NAME": "amaas-api",  # as on Lambda: Powertools' Tracer switches itself on
        "AMAAS_MODEL_DIR": str(sam_build / "ModelLayer" / "model"),
        "AMAAS_ORT_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }

    result = subprocess.run(
        [lambda_python(), "-S", "-c", LAMBDA_SCRIPT, *paths],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    on_lambda = json.loads(result.stdout.strip().splitlines()[-1])
    for path in paths:
        expected = comparable(invoke(json.loads(Path(path).read_text())))
        assert comparable(on_lambda[path]) == expected, Path(path).name
    statuses = {Path(p).stem: on_lambda[p]["statusCode"] for p in paths}
    assert statuses["classify_png"] == statuses["health"] == 200
