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


def changed_by_training(model: Any) -> set[str]:
    """Trains a 10-class, 32 px ``model`` for one epoch on 200 synthetic images and returns the state-dict
    entries that changed: what tests of a frozen backbone look at."""
    import torch

    from amaas.artifact.manifest import Preprocessing
    from amaas_export import data
    from amaas_export.train import train

    dataset = data.load("synthetic:200", Preprocessing(32, 32, (0, 0, 0), (1, 1, 1)), seed=0)
    prep = Preprocessing(32, 32, *data.mean_std(dataset.train))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, dataset.train, dataset.test, prep, epochs=1, batch_size=32, learning_rate=0.01, seed=0, report=print)
    after = model.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}
