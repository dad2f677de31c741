"""Runtime settings, read once from the environment. The variable names live here and nowhere else;
``template.yaml`` sets them under ``Globals.Function.Environment``.

An explicit argument wins over the environment, which wins over the default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

ENV_MODEL_DIR = "AMAAS_MODEL_DIR"
ENV_ORT_THREADS = "AMAAS_ORT_THREADS"
ENV_MAX_BODY_BYTES = "AMAAS_MAX_BODY_BYTES"
ENV_MAX_IMAGE_PIXELS = "AMAAS_MAX_IMAGE_PIXELS"
ENV_DEFAULT_TOP_K = "AMAAS_DEFAULT_TOP_K"

_ENV_NAMES = {
    "model_dir": ENV_MODEL_DIR,
    "ort_threads": ENV_ORT_THREADS,
    "max_body_bytes": ENV_MAX_BODY_BYTES,
    "max_image_pixels": ENV_MAX_IMAGE_PIXELS,
    "default_top_k": ENV_DEFAULT_TOP_K,
}


@dataclass(frozen=True)
class Settings:
    """Attributes:
    model_dir: The artifact directory; ``/opt/model`` is where the model layer lands in Lambda.
    ort_threads: ONNX Runtime intra-op threads. Lambda gives one vCPU per 1769 MB of memory.
    max_body_bytes: Largest request body. 4.5 MB of raw image is what fits Lambda's 6 MB synchronous
        payload once API Gateway base64-encodes it.
    max_image_pixels: Largest width x height decoded; checked from the header, before decompression.
    default_top_k: Predictions returned when the request does not say.
    """

    model_dir: Path = Path("/opt/model")
    ort_threads: int = 1
    max_body_bytes: int = 4_500_000
    max_image_pixels: int = 40_000_000
    default_top_k: int = 5

    def __post_init__(self) -> None:
        for name in ("ort_threads", "max_body_bytes", "max_image_pixels", "default_top_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{_ENV_NAMES[name]} must be a positive integer, got {getattr(self, name)}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``environ`` (default ``os.environ``), then ``overrides`` that are not ``None``."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(_ENV_NAMES[f.name])
            if raw is None or raw == "":
                continue
            try:
                values[f.name] = Path(raw) if f.name == "model_dir" else int(raw)
            except ValueError:
                raise ValueError(f"{_ENV_NAMES[f.name]} must be an integer, got {raw!r}") from None
        settings = cls(**values)
        explicit = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **explicit) if explicit else settings
