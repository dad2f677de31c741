from __future__ import annotations

from pathlib import Path

import pytest

from amaas.settings import Settings


def test_defaults_are_the_lambda_ones() -> None:
    settings = Settings.from_env({})

    assert settings.model_dir == Path("/opt/model")
    assert settings.ort_threads == 1
    assert settings.max_body_bytes == 4_500_000


def test_environment_overrides_defaults() -> None:
    settings = Settings.from_env({"AMAAS_MODEL_DIR": "/tmp/m", "AMAAS_ORT_THREADS": "2", "AMAAS_DEFAULT_TOP_K": "3"})

    assert settings.model_dir == Path("/tmp/m")
    assert settings.ort_threads == 2
    assert settings.default_top_k == 3


def test_explicit_arguments_win_over_the_environment() -> None:
    settings = Settings.from_env({"AMAAS_ORT_THREADS": "2"}, ort_threads=4, model_dir=None)

    assert settings.ort_threads == 4
    assert settings.model_dir == Path("/opt/model")


@pytest.mark.parametrize("value", ["two", "0", "-1"])
def test_bad_values_name_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match="AMAAS_ORT_THREADS"):
        Settings.from_env({"AMAAS_ORT_THREADS": value})
