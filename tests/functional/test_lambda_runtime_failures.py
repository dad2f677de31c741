"""How the local Lambda runtime reports what goes wrong, as Lambda does: a handler that raises, an init that
fails, a timeout, a runtime that dies or runs out of memory. And the sandbox itself: Lambda's environment and
nothing of the host's, the read-only task folder, an unprivileged user. Tiny functions written here keep
these fast; tests/functional/test_lambda_runtime.py runs the real build."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from amaas_cli.lambda_local import LambdaInvokeError, LocalLambda

HANDLERS = """
import json, os, signal, sys, time

def echo(event, context):
    probe = os.path.join(os.environ["LAMBDA_TASK_ROOT"], "probe.txt")
    try:
        open(probe, "w").close()
        wrote = "written"
    except OSError as exc:
        wrote = type(exc).__name__
    return {"env": dict(os.environ), "path": sys.path, "uid": os.getuid(), "task_write": wrote, "cwd": os.getcwd(),
            "remaining_ms": context.get_remaining_time_in_millis(), "request_id": context.aws_request_id}

def fail(event, context):
    raise ValueError(f"cannot handle {event['x']}")

def sleep(event, context):
    time.sleep(10)

def crash(event, context):
    os.kill(os.getpid(), signal.SIGKILL)

def hog(event, context):
    chunks = []
    while True:  # grows like a leak would, 8 MB at a time
        chunks.append(b"x" * (8 << 20))
        time.sleep(0.002)
"""

FUNCTIONS = {
    "EchoFunction": {"Handler": "toy.echo", "Environment": {"Variables": {"GREETING": {"Ref": "Greeting"},
                                                                          "DATA_DIR": "/opt/data"}}},
    "FailFunction": {"Handler": "toy.fail"},
    "SleepFunction": {"Handler": "toy.sleep", "Timeout": 1},
    "CrashFunction": {"Handler": "toy.crash"},
    "HogFunction": {"Handler": "toy.hog", "MemorySize": 128},
    "MissingFunction": {"Handler": "nowhere.handler"},
}  # fmt: skip


@pytest.fixture(scope="module")
def toy_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `sam build` layout with small functions and one layer, made by hand."""
    build = tmp_path_factory.mktemp("toy") / "build"
    (build / "Toy").mkdir(parents=True)
    (build / "Toy" / "toy.py").write_text(textwrap.dedent(HANDLERS))
    (build / "DataLayer" / "data").mkdir(parents=True)
    (build / "DataLayer" / "data" / "hello.txt").write_text("hello")
    template = {
        "Parameters": {"Greeting": {"Type": "String", "Default": "hi"}},
        "Globals": {"Function": {"Runtime": "python3.13", "Timeout": 10, "MemorySize": 256, "CodeUri": "Toy",
                                 "Layers": [{"Ref": "DataLayer"}]}},
        "Resources": {
            "DataLayer": {"Type": "AWS::Serverless::LayerVersion", "Properties": {"ContentUri": "DataLayer"}},
            **{name: {"Type": "AWS::Serverless::Function", "Properties": props} for name, props in FUNCTIONS.items()},
        },
    }  # fmt: skip
    (build / "template.yaml").write_text(yaml.safe_dump(template))
    return build


@pytest.fixture
def toy(toy_build: Path, lambda_runtime_cache: Path) -> Iterator[Any]:
    functions: list[LocalLambda] = []

    def start(name: str, **kwargs: Any) -> LocalLambda:
        functions.append(LocalLambda(toy_build, name, runtime_cache=lambda_runtime_cache, **kwargs))
        return functions[-1]

    yield start
    for function in functions:
        function.close()


def test_the_sandbox_is_lambdas_and_not_the_hosts(toy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a host environment with variables of its own (this one sets PYTHONDONTWRITEBYTECODE too)
    monkeypatch.setenv("AMAAS_HOST_ONLY", "leaked")
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    function = toy(
        "EchoFunction", env={"AWS_ENDPOINT_URL": "http://127.0.0.1:1"}, parameter_overrides={"Greeting": "hey"}
    )

    # WHEN the function reports what it sees
    seen = function.invoke({}).check()

    # THEN it sees Lambda's variables, the template's (parameters resolved, /opt pointing at the layers)
    env = seen["env"]
    process = function.process
    assert process is not None
    assert env["GREETING"] == "hey" and Path(env["DATA_DIR"], "hello.txt").read_text() == "hello"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "EchoFunction" and env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256" and env["AWS_REGION"] == env["AWS_DEFAULT_REGION"]
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.13" and env["TZ"] == ":UTC"
    assert env["_HANDLER"] == "toy.echo" and env["LAMBDA_TASK_ROOT"] == str(process.task) == seen["cwd"]
    assert (
        env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/EchoFunction"
        and "[$LATEST]" in env["AWS_LAMBDA_LOG_STREAM_NAME"]
    )
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1"
    # AND nothing of the host's
    assert "AMAAS_HOST_ONLY" not in env and "PYTHONDONTWRITEBYTECODE" not in env and "HOME" not in env
    # AND Python's path in Lambda's order: the function, the layers, then the runtime's own packages
    task, opt = str(process.task), str(process.opt)
    expected = [task, f"{opt}/python/lib/python3.13/site-packages", f"{opt}/python", env["LAMBDA_RUNTIME_DIR"]]
    assert seen["path"][:4] == expected
    runtime_venv = str(Path(env["LAMBDA_RUNTIME_DIR"]).parent / "venv")  # its site-packages: empty, as on Lambda
    assert all(p.startswith((opt, runtime_venv)) for p in seen["path"] if "site-packages" in p), "no host packages"
    # AND /var/task is read-only for it, and it is not root
    assert seen["task_write"] in ("PermissionError", "OSError") and seen["uid"] != 0
    assert 9_000 < seen["remaining_ms"] <= 10_000 and len(seen["request_id"]) == 36


def test_a_handler_that_raises_is_a_function_error_and_the_sandbox_stays_warm(toy: Any) -> None:
    function = toy("FailFunction")

    first, second = function.invoke({"x": "this"}), function.invoke({"x": "that"})

    assert first.error is not None and first.error.error_type == "ValueError"
    assert first.error.message == "cannot handle this" and any("toy.py" in line for line in first.error.stack_trace)
    assert json.loads(first.raw)["errorType"] == "ValueError"
    assert first.report.init_ms is not None and second.report.init_ms is None, "the same process served both"
    assert any("[ERROR] ValueError: cannot handle that" in line for line in second.logs)
    with pytest.raises(LambdaInvokeError, match="ValueError: cannot handle that"):
        second.check()


def test_a_handler_that_cannot_be_imported_is_an_init_error(toy: Any) -> None:
    result = toy("MissingFunction").invoke({})

    assert result.error is not None and result.error.error_type == "Runtime.ImportModuleError"
    assert result.error.message == "Unable to import module 'nowhere': No module named 'nowhere'"
    assert any(line.startswith("INIT_REPORT Init Duration: ") and "Status: error" in line for line in result.logs)
    assert result.report.status == "error" and "Error Type: Runtime.ImportModuleError" in result.logs[-1]


def test_a_timeout_kills_the_sandbox_and_the_next_invocation_starts_cold(toy: Any) -> None:
    function = toy("SleepFunction")

    timed_out = function.invoke({})
    again = function.invoke({})

    assert timed_out.error is not None and timed_out.error.error_type == "Sandbox.Timedout"
    assert timed_out.error.message.endswith("Error: Task timed out after 1.00 seconds")
    assert any(line.endswith(" Task timed out after 1.00 seconds") for line in timed_out.logs)
    assert "\tStatus: timeout" in timed_out.logs[-1] and 1000 <= timed_out.report.duration_ms < 1500
    assert again.report.init_ms is not None, "a timed-out sandbox is not reused"


def test_a_runtime_that_dies_reports_runtime_exited_with_the_signal(toy: Any) -> None:
    result = toy("CrashFunction").invoke({})

    assert result.error is not None and result.error.error_type == "Runtime.ExitError"
    assert result.error.message.endswith("Error: Runtime exited with error: signal: killed")
    assert "\tStatus: error\tError Type: Runtime.ExitError" in result.logs[-1]


def test_memory_past_memory_size_is_an_out_of_memory_kill(toy: Any) -> None:
    result = toy("HogFunction").invoke({})

    assert result.error is not None and result.error.error_type == "Runtime.OutOfMemory"
    assert result.error.message.endswith("Runtime exited with error: signal: killed")
    assert result.report.max_memory_mb > 128 and "Error Type: Runtime.OutOfMemory" in result.logs[-1]


def test_the_command_prints_the_error_and_exits_1_when_the_function_fails(
    toy_build: Path, lambda_runtime_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from amaas_cli.main import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(lambda_runtime_cache.parent))
    event = toy_build / "event.json"
    event.write_text('{"x": "this"}')

    code = main(["lambda", "invoke", "FailFunction", "--build-dir", str(toy_build), "-e", str(event)])

    out, err = capsys.readouterr()
    assert code == 1
    assert json.loads(out)["errorType"] == "ValueError"
    assert f"amaas lambda: {event}: ValueError: cannot handle this" in err.splitlines()
