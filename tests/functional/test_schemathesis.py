"""Schemathesis, driven by the API's own ``/openapi.json``, with every check it has: no 5xx, documented status
codes, content types, headers and bodies, refusal of schema-invalid data and acceptance of schema-valid data,
405 with ``Allow`` for undeclared methods, and the stateful checks along the links it infers between operations.

The same generated requests go to the API both ways it is served: the ASGI app in-process, and the Lambda handler
behind the API Gateway stand-in (tests/gateway.py), where API Gateway's event encoding and Mangum sit in between.
Each (operation, family of checks) is one test, running the schema's examples, the coverage phase (each keyword's
edges, missing and extra parameters, undeclared methods) and fuzzing, in positive and negative modes, and stopping at
its first failure, shrunk. Generation is deterministic (derandomized, no example database) and bounded, so a run
sends the same requests every time.

The schema is loaded at import, as Schemathesis's pytest integration wants (its fixture-based loader,
``schemathesis.pytest.from_fixture``, does not run under pytest 9.2). The document needs no model, so it comes from
an app whose model is never loaded; each call goes to the app, or the stand-in's URL, serving the session's model.

Every distinct failure at once, against ``amaas serve`` (or the stand-in), with the same settings, from a directory
holding a schemathesis.toml whose ``[parameters]`` set ``name`` and ``version`` to the served model's::

    schemathesis run http://127.0.0.1:8000/openapi.json --checks all --continue-on-failure \
        --max-examples 40 --generation-deterministic --workers 1
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import strategies as st
from PIL import Image
from schemathesis import Case
from schemathesis.checks import CHECKS, CheckFunction, load_all_checks
from schemathesis.openapi.checks import RejectedPositiveData

from amaas.api.app import create_app
from amaas.artifact.manifest import Manifest, read_manifest
from amaas.settings import Settings
from tests.helpers import encode_image

MAX_EXAMPLES = 40
STATEFUL_SCENARIOS = 30
STATEFUL_STEPS = 6
# API Gateway's ANY method forwards these; the stand-in, like API Gateway, answers other verbs (TRACE) itself.
GATEWAY_METHODS = ["PUT", "DELETE", "PATCH"]


def settings(*, unexpected_methods: list[str] | None = None) -> dict[str, Any]:
    coverage: dict[str, Any] = {"enabled": True}
    if unexpected_methods is not None:
        coverage["unexpected-methods"] = unexpected_methods
    return {
        "seed": 0,
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True},
        "checks": {"enabled": True},
        "phases": {
            "examples": {"enabled": True},
            "coverage": coverage,
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": True, "max-steps": STATEFUL_STEPS},
        },
    }


# Schemathesis ships small PNG, JPEG, GIF and WebP files for those media types but none for BMP, which the image
# routes also accept; without one it skips (and warns about) every BMP case.
schemathesis.openapi.media_type(
    "image/bmp",
    st.builds(
        lambda side, colour: encode_image(Image.new("RGB", (side, side), colour), "BMP"),
        st.integers(1, 64),
        st.tuples(*[st.integers(0, 255)] * 3),
    ),
)
load_all_checks()
_CHECKS: dict[str, CheckFunction] = {check.__name__: check for check in CHECKS.get_all()}  # type: ignore[misc]
# Every check, in families, so that one family's failure does not hide another's: an operation's test stops at its
# first failure, and a 405 without Allow (found first, on every route) would otherwise mask every 5xx behind it.
CHECK_FAMILIES: dict[str, list[str]] = {
    "no_server_error": ["not_a_server_error"],
    "responses_as_documented": [
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ],
    "inputs_judged_as_documented": ["negative_data_rejection", "positive_data_acceptance", "missing_required_header"],
    "undeclared_methods": ["unsupported_method", "allow_header_conformance"],
    # Checks over created resources and credentials: they find nothing to act on in an API that creates no resources
    # and declares no security scheme, but they run all the same, so a schema that gains either is checked.
    "resources_and_auth": [
        "use_after_free",
        "ensure_resource_availability",
        "ignored_auth",
        "object_level_authorization",
    ],
}


# A schema-valid request can still be wrong in ways JSON Schema cannot state: bytes that are not an image, a label
# the served model does not have, a tensor whose data do not fill its shape, a name, datatype or shape other than
# the served model's, values its datatype cannot hold. The server refuses those with these errors (the /v1 code, or
# the start of the /v2 message); positive_data_acceptance treats exactly those as the answers they are, and any
# other refusal of schema-valid data as a failure.
BEYOND_THE_SCHEMA_CODES = {"invalid_image"}
BEYOND_THE_SCHEMA_MESSAGES = re.compile(
    r"target .* is neither a label nor an index"  # /v1/explain: the served model's classes
    r"|unknown (input|output) "  # /v2: the served model's tensor names
    r"|input .* must (be|have) "  # /v2: the served model's datatype and shape
    r"|this model takes one input"
    r"|input .*: (\d+ elements do not fill|data are not|.* values must lie|a value is too large"
    r"|an element is not valid base64|BYTES elements in JSON must be strings)"
    r"|(image \d+: )?(not a decodable image|the request carried no image bytes|the \w+ image )"  # /v2 BYTES
    r"|the batch is empty"
    # the binary extension's framing: a JSON header inside the bytes, its length in a header of its own
    r"|the inference request header is not valid JSON|Inference-Header-Content-Length .* does not fit"
    r"|an inference request is a JSON object|binary inputs declare",
    re.DOTALL,  # names come from the generator: they hold newlines too
)


def positive_data_acceptance(ctx: Any, response: Any, case: Case[Any]) -> bool | None:
    """Schemathesis's own check, except for the refusals named above."""
    try:
        return _CHECKS["positive_data_acceptance"](ctx, response, case)
    except RejectedPositiveData:
        try:
            body = response.json()
        except ValueError:
            raise
        if body.get("error") in BEYOND_THE_SCHEMA_CODES or BEYOND_THE_SCHEMA_MESSAGES.match(str(body.get("error"))):
            return None
        if body.get("error") == "invalid_parameter" and BEYOND_THE_SCHEMA_MESSAGES.match(str(body.get("message"))):
            return None
        raise


def checks(family: str) -> list[CheckFunction]:
    replaced = {"positive_data_acceptance": positive_data_acceptance}
    return [replaced.get(name, _CHECKS[name]) for name in CHECK_FAMILIES[family]]


_document = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(Settings(model_dir=Path("model-never-loaded")))
).raw_schema
# Neither schema is bound to an app (the in-process tests pass theirs to each call): a schema loaded with from_asgi
# binds every operation to that app, and Schemathesis's stateful machine reuses those operations for any schema of
# the same document, so requests meant for the stand-in went to the app.
asgi = schemathesis.openapi.from_dict(copy.deepcopy(_document), config=schemathesis.Config.from_dict(settings()))
gateway = schemathesis.openapi.from_dict(
    copy.deepcopy(_document), config=schemathesis.Config.from_dict(settings(unexpected_methods=GATEWAY_METHODS))
)


@pytest.fixture(scope="module")
def app(artifact: Path) -> FastAPI:
    """The ASGI app with the session's model, loaded."""
    served = create_app(Settings(model_dir=artifact))
    served.state.model.load()
    return served


@pytest.fixture(scope="module")
def manifest(artifact: Path) -> Manifest:
    return read_manifest(artifact)


def for_served_model(case: Case[Any], manifest: Manifest) -> None:
    """The model name and version (a path parameter, and on unversioned /v2 routes also a query parameter) name the
    served model, so generated requests reach the body parsers instead of stopping at a 404 for a model nobody
    serves (test_openapi.py covers that 404)."""
    served = {"name": manifest.name, "version": manifest.version}
    if case.path_parameters:
        case.path_parameters = {key: served.get(key, value) for key, value in case.path_parameters.items()}
    if case.query and isinstance(case.query.get("version"), str):
        case.query = {**case.query, "version": manifest.version}


@asgi.parametrize()
@pytest.mark.parametrize("family", CHECK_FAMILIES)
def test_asgi_app_conforms_to_its_openapi(case: Case[Any], family: str, app: FastAPI, manifest: Manifest) -> None:
    for_served_model(case, manifest)
    case.call_and_validate(app=app, checks=checks(family))


@gateway.parametrize()
@pytest.mark.parametrize("family", CHECK_FAMILIES)
def test_lambda_handler_conforms_to_its_openapi(
    case: Case[Any], family: str, lambda_url: str, manifest: Manifest
) -> None:
    for_served_model(case, manifest)
    case.call_and_validate(base_url=lambda_url, checks=checks(family))


@pytest.mark.parametrize("served", ["asgi", "lambda"])
def test_linked_calls_conform_to_the_openapi(request: pytest.FixtureRequest, served: str, manifest: Manifest) -> None:
    """Stateful: call sequences along the links Schemathesis infers between operations (a model's metadata names
    the model for ready and infer), every check on every step, on either way the API is served."""
    schema, call = (
        (asgi, {"app": request.getfixturevalue("app")})
        if served == "asgi"
        else (gateway, {"base_url": request.getfixturevalue("lambda_url")})
    )

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Case[Any]) -> None:
            for_served_model(case, manifest)

        def get_call_kwargs(self, case: Case[Any]) -> dict[str, Any]:
            return call

        def validate_response(self, response: Any, case: Case[Any], **kwargs: Any) -> None:
            case.validate_response(
                response,
                checks=[check for family in CHECK_FAMILIES for check in checks(family)],
                transport_kwargs=kwargs,
            )

    Workflow.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )


def test_every_schemathesis_check_runs() -> None:
    """A Schemathesis upgrade that adds a check must put it in a family here, or it would silently not run."""
    assert sorted(name for family in CHECK_FAMILIES.values() for name in family) == sorted(_CHECKS)
