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

from amaas.artifact.imaging import Limits

ENV_MODEL_DIR = "AMAAS_MODEL_DIR"
ENV_ORT_THREADS = "AMAAS_ORT_THREADS"
ENV_MAX_BODY_BYTES = "AMAAS_MAX_BODY_BYTES"
ENV_MAX_IMAGE_BYTES = "AMAAS_MAX_IMAGE_BYTES"
ENV_MAX_IMAGE_PIXELS = "AMAAS_MAX_IMAGE_PIXELS"
ENV_MAX_IMAGES = "AMAAS_MAX_IMAGES"
ENV_DEFAULT_TOP_K = "AMAAS_DEFAULT_TOP_K"
ENV_S3_BUCKETS = "AMAAS_S3_BUCKETS"
ENV_MAX_S3_IMAGE_BYTES = "AMAAS_MAX_S3_IMAGE_BYTES"
ENV_EXPLAIN_GRID = "AMAAS_EXPLAIN_GRID"
ENV_CORS_ORIGINS = "AMAAS_CORS_ORIGINS"
ENV_DECODE_MEMORY_MB = "AMAAS_DECODE_MEMORY_MB"
ENV_MAX_MASK_PIXELS = "AMAAS_MAX_MASK_PIXELS"
# Set by Lambda itself: the function's memory, from which the decode budget is derived when not configured
ENV_FUNCTION_MEMORY_MB = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"

_ENV_NAMES = {
    "model_dir": ENV_MODEL_DIR,
    "ort_threads": ENV_ORT_THREADS,
    "max_body_bytes": ENV_MAX_BODY_BYTES,
    "max_image_bytes": ENV_MAX_IMAGE_BYTES,
    "max_image_pixels": ENV_MAX_IMAGE_PIXELS,
    "max_images": ENV_MAX_IMAGES,
    "default_top_k": ENV_DEFAULT_TOP_K,
    "s3_buckets": ENV_S3_BUCKETS,
    "max_s3_image_bytes": ENV_MAX_S3_IMAGE_BYTES,
    "explain_grid": ENV_EXPLAIN_GRID,
    "cors_origins": ENV_CORS_ORIGINS,
    "decode_memory_mb": ENV_DECODE_MEMORY_MB,
    "max_mask_pixels": ENV_MAX_MASK_PIXELS,
}
MAX_EXPLAIN_GRID = 16
# What a function keeps for itself (runtime, model, ONNX Runtime's arena, the request) before decoding
RESERVED_MEMORY_MB = 512
DECODE_MEMORY_MB = 224
MIN_DECODE_MEMORY_MB = 32


def decode_memory_for(function_memory_mb: int | None) -> int:
    """The decode budget for a function of this much memory: half of what is left after what serving itself
    holds, at most ``DECODE_MEMORY_MB`` (which also bounds decode time) and at least ``MIN_DECODE_MEMORY_MB``.
    1024 MB and more get 224 MB; 768 MB gets 128 MB; 512 MB gets 32 MB (an 8 MP RGB image)."""
    if function_memory_mb is None:
        return DECODE_MEMORY_MB
    return max(MIN_DECODE_MEMORY_MB, min(DECODE_MEMORY_MB, (function_memory_mb - RESERVED_MEMORY_MB) // 2))


@dataclass(frozen=True)
class Settings:
    """Attributes:
    model_dir: The artifact directory; ``/opt/model`` is where the model layer lands in Lambda.
    ort_threads: ONNX Runtime intra-op threads. Lambda gives one vCPU per 1769 MB of memory.
    max_body_bytes: Largest request body. 4.5 MB of raw image is what fits Lambda's 6 MB synchronous
        payload once API Gateway base64-encodes it.
    max_image_bytes: Largest single encoded image within a request.
    max_image_pixels: Largest width x height decoded; checked from the header, before decompression.
    decode_memory_mb: Largest estimated memory to decode one image (``amaas.artifact.imaging``); by default derived
        from the Lambda function's memory (``decode_memory_for``), 224 MB elsewhere.
    max_images: Most images one request may carry (they run as one batch).
    default_top_k: Predictions returned when the request does not say.
    s3_buckets: Buckets that ``{"s3": "s3://bucket/key"}`` references may read; none by default.
    max_s3_image_bytes: Largest image fetched from S3 (those are the ones too big for the payload).
    explain_grid: Occlusion grid side for explanations (grid x grid model runs).
    cors_origins: Browser origins allowed to call the API (exact matches); none by default.
    max_mask_pixels: Largest width x height of a full-size answer image (a segmentation mask or overlay PNG):
        one byte per pixel for a mask, four for an overlay with its decoded original.
    """

    model_dir: Path = Path("/opt/model")
    ort_threads: int = 1
    max_body_bytes: int = 4_500_000
    max_image_bytes: int = 4_500_000
    max_image_pixels: int = 40_000_000
    max_images: int = 16
    default_top_k: int = 5
    s3_buckets: tuple[str, ...] = ()
    max_s3_image_bytes: int = 20_000_000
    explain_grid: int = 8
    cors_origins: tuple[str, ...] = ()
    decode_memory_mb: int = DECODE_MEMORY_MB
    max_mask_pixels: int = 16_777_216

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.type == "int" and getattr(self, f.name) < 1:
                raise ValueError(f"{_ENV_NAMES[f.name]} must be a positive integer, got {getattr(self, f.name)}")
        if not 2 <= self.explain_grid <= MAX_EXPLAIN_GRID:
            raise ValueError(f"{ENV_EXPLAIN_GRID} must be between 2 and {MAX_EXPLAIN_GRID}, got {self.explain_grid}")

    @property
    def decode_limits(self) -> Limits:
        return Limits(max_pixels=self.max_image_pixels, memory_bytes=self.decode_memory_mb << 20)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``environ`` (default ``os.environ``), then ``overrides`` that are not ``None``."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(_ENV_NAMES[f.name])
            if raw is None or raw == "":
                continue
            if f.type == "Path":
                values[f.name] = Path(raw)
            elif f.type == "tuple[str, ...]":
                values[f.name] = tuple(item.strip() for item in raw.split(",") if item.strip())
            else:
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise ValueError(f"{_ENV_NAMES[f.name]} must be an integer, got {raw!r}") from None
        if "decode_memory_mb" not in values and (environ.get(ENV_FUNCTION_MEMORY_MB) or "").isdecimal():
            values["decode_memory_mb"] = decode_memory_for(int(environ[ENV_FUNCTION_MEMORY_MB]))
        settings = cls(**values)
        explicit = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **explicit) if explicit else settings
