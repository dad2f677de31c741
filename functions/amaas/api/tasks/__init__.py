"""Each task as the API serves it: its routes, its answers and its Open Inference Protocol outputs. A new task
adds a module here and its entries below (its contract side is ``amaas.artifact.tasks``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from fastapi import APIRouter

from amaas.api.oip import InferRequest, Tensor
from amaas.api.tasks import classification, detection, segmentation
from amaas.artifact.manifest import Manifest

OipOutputs = Callable[[Manifest, InferRequest, Sequence[np.ndarray]], list[tuple[Tensor, bool]]]

ROUTERS: list[APIRouter] = [classification.router, segmentation.router, detection.router]
OIP_OUTPUTS: dict[str, OipOutputs] = {
    "classification": classification.oip_outputs,
    "segmentation": segmentation.oip_outputs,
    "detection": detection.oip_outputs,
}
