"""Torch → one self-contained FP32 ONNX file with a dynamic batch axis, checked twice: structurally with
``onnx.checker`` and numerically against torch on held-out images."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from amaas.artifact.session import create_session
from amaas_export.errors import ConfigError, GateError, first_line

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
RELATIVE_TOLERANCE = 1e-5


def export_fp32(
    model: nn.Module, example: torch.Tensor, path: Path, output_names: tuple[str, ...] = (OUTPUT_NAME,)
) -> Path:
    """Exports ``model`` with the dynamo exporter, weights embedded, batch axis dynamic.

    Args:
        model: The trained network, in eval mode.
        example: A batch of at least 2 inputs; a batch of 1 would let the exporter specialise the axis.
        path: Where to write the ``.onnx`` file.
        output_names: The graph's outputs, in the order ``model`` returns them.
    """
    if example.shape[0] < 2:
        raise ValueError("the example batch needs at least 2 images to keep the batch axis dynamic")
    model.eval()
    batch = torch.export.Dim("batch", min=1)
    # The exporter narrates each step on stdout and warns about its own internals; neither helps a user.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), _export_errors():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(output_names),
            dynamic_shapes=({0: batch},),
            external_data=False,
            dynamo=True,
        )
    _strip_debug_metadata(path)
    onnx.checker.check_model(str(path), full_check=True)
    return path


@contextlib.contextmanager
def _export_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        raise ConfigError(
            f"torch.onnx.export could not export this model ({exc.__class__.__name__}: {first_line(exc)}). "
            "Data-dependent control flow and custom autograd functions are the usual causes."
        ) from exc


def _strip_debug_metadata(path: Path) -> None:
    """Drops the exporter's per-node debug records: they embed Python stack traces with the exporting
    machine's absolute paths, which would leak into the deployed file and make its sha256 (hence the model
    version) depend on where the repository was checked out."""
    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for value in (*model.graph.input, *model.graph.output, *model.graph.value_info, *model.graph.initializer):
        del value.metadata_props[:]
    onnx.save(model, str(path))


def check_parity(path: Path, model: nn.Module, batch: np.ndarray, tolerance: float) -> float:
    """Runs ``batch`` through ONNX Runtime and torch and compares logits.

    The limit is ``tolerance + RELATIVE_TOLERANCE * max|logit|``: float32 keeps about 7 significant digits,
    so logits in the thousands (a barely trained network's) cannot agree to 1e-4 even between torch and a
    float64 run of itself, while for ordinary logits (|z| < 10) the limit stays at ``tolerance``.

    Returns:
        The max absolute logit difference.

    Raises:
        GateError: The difference exceeds the limit.
    """
    session = create_session(path, threads=1)
    onnx_logits = session.run(None, {INPUT_NAME: batch})[0]
    with torch.inference_mode():
        torch_logits = model(torch.from_numpy(batch)).numpy()
    difference = float(np.abs(onnx_logits - torch_logits).max())
    limit = tolerance + RELATIVE_TOLERANCE * float(np.abs(torch_logits).max())
    if not difference <= limit:
        raise GateError(
            f"ONNX parity gate failed: ONNX Runtime and torch logits differ by up to {difference:.2e} on "
            f"{len(batch)} held-out images (limit {limit:.1e} = {tolerance:.0e} + "
            f"{RELATIVE_TOLERANCE:.0e} x max|logit|); "
            "the exported graph does not compute what the model does. Check for data-dependent control flow "
            "or unsupported operators."
        )
    return difference
