"""Shared test helpers: API Gateway events from tests/events/ and a Lambda context."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "tests" / "events"


def load_event(name: str) -> dict[str, Any]:
    """The event file tests/events/<name>.json, the same one `sam local invoke -e` takes."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return event


def event_image(event: dict[str, Any]) -> bytes:
    """The image bytes an event carries, raw or inside a JSON body."""
    if event["isBase64Encoded"]:
        return base64.b64decode(event["body"])
    return base64.b64decode(json.loads(event["body"])["image"])


@dataclass
class LambdaContext:
    """What the Lambda runtime passes as ``context``, with the attributes handlers read."""

    function_name: str = "amaas-api"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:amaas-api:live"
    aws_request_id: str = "6f9c1a3e-lambda-request"

    def get_remaining_time_in_millis(self) -> int:
        return 25_000


def encode_image(image: Any, fmt: str = "PNG", **options: Any) -> bytes:
    """A PIL image encoded in memory."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()
