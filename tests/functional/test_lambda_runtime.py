"""The BUILT API function run by the local Lambda runtime (`amaas lambda`): the real runtime interface client
under python3.13, /var/task and /opt read-only, one warm process for many events. Every event file gets the
answers tests/functional/test_handler_events.py expects from the handler called in-process: those tests are
imported here and run again with `invoke` going through the runtime."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amaas_cli.lambda_local import LocalLambda
from amaas_cli.main import main
from tests.functional.conftest import Invoke
from tests.functional.test_handler_events import (  # noqa: F401 - collected again here, with `invoke` below
    test_bad_requests_get_a_json_error_with_a_stable_code,
    test_classify_events_return_the_right_label,
    test_health_reports_the_loaded_model_and_its_hash,
    test_model_route_serves_the_manifest_without_file_paths,
    test_request_id_comes_from_api_gateway_or_the_client,
)
from tests.functional.test_runtime_parity import comparable
from tests.helpers import EVENTS, LambdaContext, load_event

EVENT_NAMES = sorted(p.stem for p in EVENTS.glob("*.json"))
REPORT = re.compile(
    r"^REPORT RequestId: [0-9a-f-]{36}\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\tMemory Size: 1024 MB"
    r"\tMax Memory Used: \d+ MB(\tInit Duration: \d+\.\d\d ms)?$"
)


@pytest.fixture(scope="module")
def api_function(sam_build: Path, lambda_runtime_cache: Path) -> Iterator[LocalLambda]:
    """ApiFunction of the suite's `sam build`, one sandbox process for the whole module."""
    with LocalLambda(sam_build, "ApiFunction", runtime_cache=lambda_runtime_cache) as function:
        yield function


@pytest.fixture
def invoke(api_function: LocalLambda) -> Invoke:
    """The event through the local Lambda runtime; the function's response as Lambda returns it."""

    def call(event: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = api_function.invoke(event).check()
        return response

    return call


@pytest.mark.parametrize("name", EVENT_NAMES)
def test_every_event_file_answers_as_the_handler_does_in_process(
    api_function: LocalLambda, handler_module: Any, name: str
) -> None:
    event = load_event(name)

    result = api_function.invoke(event)

    assert result.error is None, result.logs
    assert comparable(result.payload) == comparable(handler_module.handler(event, LambdaContext()))


def test_one_cold_start_then_warm_invocations_with_lambdas_report(sam_build: Path, lambda_runtime_cache: Path) -> None:
    # GIVEN a fresh sandbox
    with LocalLambda(sam_build, "ApiFunction", runtime_cache=lambda_runtime_cache) as fresh:
        # WHEN three events go through the fresh one
        results = [fresh.invoke(load_event("classify_png")) for _ in range(3)]
        process = fresh.process
        assert process is not None
        task, opt = process.task, process.opt

        # THEN only the first pays the init, and every REPORT line has Lambda's shape and sane figures
        cold, *warm = (r.report for r in results)
        assert cold.init_ms is not None and 100 < cold.init_ms < 20_000
        assert all(r.init_ms is None for r in warm)
        for result in results:
            report = result.report
            assert REPORT.match(result.logs[-1]) and result.logs[-1] == report.line()
            assert report.billed_ms == math.ceil(report.duration_ms + (report.init_ms or 0)), "init is billed too"
            assert 0 < report.duration_ms < 5_000
            assert 30 < report.max_memory_mb < report.memory_size_mb == 1024
        assert "Init Duration" in results[0].logs[-1] and not any("Init Duration" in r.logs[-1] for r in results[1:])
        # AND the function's own log lines come after its init and between START and END
        lines = results[1].logs
        assert lines[0].startswith("START RequestId: ") and lines[-2].startswith("END RequestId: ")
        assert any('"message":"request"' in line for line in lines[1:-2])
        # AND nothing was compiled into the read-only /var/task and /opt copies at run time, as on Lambda: the
        # only bytecode there is what the build shipped
        shipped = {p.relative_to(sam_build / "ApiFunction") for p in (sam_build / "ApiFunction").rglob("*.pyc")}
        assert {p.relative_to(task) for p in task.rglob("*.pyc")} == shipped
        layers = {p.relative_to(sam_build / "RuntimeLayer") for p in (sam_build / "RuntimeLayer").rglob("*.pyc")}
        assert {p.relative_to(opt) for p in opt.rglob("*.pyc")} == layers
        assert list(opt.glob("python/numpy/*.py")), "the layers were really there"


def test_snapstart_restores_renew_what_sandboxes_must_not_share(sam_build: Path, lambda_runtime_cache: Path) -> None:
    # GIVEN the function run as SnapStart runs published versions: init, snapshot, restore, then events
    with LocalLambda(sam_build, "ApiFunction", runtime_cache=lambda_runtime_cache, snapstart=True) as function:
        result = function.invoke(load_event("health"))

    # THEN the restore ran the after-restore hooks, timed as Restore Duration instead of Init Duration
    assert result.check()["statusCode"] == 200
    assert result.report.restore_ms is not None and "Restore Duration" in result.logs[-1]
    assert "Init Duration" not in result.logs[-1]
    # AND they renewed the sandbox's identity: the id logged at init is not the one after the restore
    logged = [json.loads(line) for line in result.logs if line.startswith("{")]
    loaded = next(line for line in logged if line.get("message") == "model loaded")
    restored = next(line for line in logged if line.get("message") == "restored from snapshot")
    served = next(line for line in logged if line.get("message") == "request")
    assert restored["sandbox"] == served["sandbox"] != loaded["sandbox"]


def test_the_command_prints_responses_on_stdout_and_reports_on_stderr(
    sam_build: Path, lambda_runtime_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(lambda_runtime_cache.parent))  # the runtime the session built
    events = [str(EVENTS / f"{name}.json") for name in ("classify_png", "health", "classify_corrupt")]

    code = main(
        ["lambda", "invoke", "ApiFunction", "--build-dir", str(sam_build), *[a for e in events for a in ("-e", e)]]
    )

    out, err = capsys.readouterr()
    assert code == 0
    responses = [json.loads(line) for line in out.splitlines()]
    assert [r["statusCode"] for r in responses] == [200, 200, 400]
    reports = [line for line in err.splitlines() if line.startswith("REPORT ")]
    assert len(reports) == 3 and all(REPORT.match(line) for line in reports)
    assert "Init Duration" in reports[0] and "Init Duration" not in reports[1] + reports[2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Nope"], "no function 'Nope' in "),
        (["ApiFunction", "--build-dir", "/nonexistent/build"], "no build directory /nonexistent/build"),
        (["ApiFunction", "--parameter-overrides", "Architecture=sparc"], "Architecture=sparc is not one of"),
    ],
)
def test_what_is_missing_is_one_line_and_exit_2(
    sam_build: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if "--build-dir" not in args:
        args = [*args, "--build-dir", str(sam_build)]

    code = main(["lambda", "invoke", *args, "-e", str(EVENTS / "health.json")])

    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("amaas lambda: ") and message in err and "\n" not in err


def test_without_python313_the_command_says_how_to_get_it(
    sam_build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))

    code = main(["lambda", "invoke", "ApiFunction", "--build-dir", str(sam_build), "-e", str(EVENTS / "health.json")])

    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (
        "amaas lambda: python3.13 (the function's runtime) is not installed: put it on PATH or install it with "
        "`pyenv install 3.13`"
    )
