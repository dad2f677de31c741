"""Static INT8 quantization with ONNX Runtime: QDQ format, activation ranges calibrated on training images."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from amaas.artifact.manifest import Preprocessing, TensorSpec
from amaas.artifact.preprocessing import model_input
from amaas_export.config import QuantizationConfig
from amaas_export.data import ImageSet

CALIBRATION_BATCH = 32
# quantize_static gives ORT's entropy calibrator 128 histogram bins for 128 quantized bins: a single candidate
# range, the full one, so "entropy" would silently be minmax. 2048 bins is what ORT's percentile method and
# PyTorch's histogram observer use; the KL search then really chooses where to clip.
ENTROPY_HISTOGRAM_BINS = 2048
ENTROPY_QUANTIZED_BINS = 128


def candidates(base: QuantizationConfig) -> list[QuantizationConfig]:
    """What ``--quantize auto`` tries: the configured settings first, then the usual alternatives."""
    variants = [
        base,
        replace(base, calibration="entropy"),
        replace(base, calibration="percentile"),
        replace(base, per_channel=not base.per_channel),
        replace(base, activation_type="int8", weight_type="int8"),
    ]
    unique: list[QuantizationConfig] = []
    for variant in variants:
        if variant not in unique:
            unique.append(variant)
    return unique


def quantize_int8(
    float_path: Path,
    int8_path: Path,
    calibration: ImageSet,
    prep: Preprocessing,
    spec: TensorSpec,
    settings: QuantizationConfig,
) -> list[str]:
    """Writes an INT8 QDQ copy of ``float_path`` to ``int8_path``; returns the nodes kept in float.

    Calibration batches are built from the pixels by ``model_input`` for the model's input ``spec``, as every
    other stage and the server build theirs.

    The model is first shape-inferred and simplified by ORT's pre-processor, which quantizes better than the
    raw export. The layers producing the outputs always stay in float (``output_heads``): squeezing logits
    into 256 levels reorders close classes (it cost 0.75 points of top-1 on cifar-cnn/synthetic) while the
    layer itself is a negligible share of the compute.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    with tempfile.TemporaryDirectory() as work, _quiet():
        prepared = Path(work) / "prepared.onnx"
        try:
            # ORT leaves its half-inferred model in the working directory when it gives up: keep it in ours
            with contextlib.chdir(work):
                quant_pre_process(str(float_path), str(prepared))
        except Exception:  # noqa: BLE001 - ORT raises a bare Exception when symbolic inference gives up
            # A whole detector's graph (NMS, proposal filtering) has data-dependent shapes the symbolic pass
            # cannot finish; ONNX's own shape inference and ORT's optimisation still apply without it.
            quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        names = {node.name for node in graph.node}
        heads = output_heads(graph)
        missing = [n for n in settings.float_nodes if n not in names]
        if missing:
            from amaas_export.errors import ConfigError

            raise ConfigError(
                f"--float-nodes {', '.join(missing)}: no such node; the graph has e.g. {sorted(names)[:6]}"
            )
        float_nodes = sorted({*heads, *settings.float_nodes})
        first = graph.input[0].type.tensor_type.shape.dim[0]
        reader = _CalibrationReader(calibration, prep, spec, first.dim_value if first.HasField("dim_value") else -1)
        ranges = None
        if settings.calibration == "entropy":
            ranges = Path(work) / "ranges.json"
            _entropy_ranges(prepared, reader, ranges)  # quantize_static then reads the ranges from the file
        quantize_static(
            str(prepared),
            str(int8_path),
            reader if ranges is None else None,
            quant_format=QuantFormat.QDQ,
            per_channel=settings.per_channel,
            activation_type=types[settings.activation_type],
            weight_type=types[settings.weight_type],
            calibrate_method=methods[settings.calibration],
            nodes_to_exclude=float_nodes,
            extra_options={"ActivationSymmetric": settings.activation_type == "int8"},
            calibration_cache_path=None if ranges is None else str(ranges),
        )
    return float_nodes


def output_heads(graph: Any) -> list[str]:
    """The nodes on the way back from every graph output up to and including its last Conv, Gemm or MatMul:
    a classifier's final Gemm; a segmenter's final 1x1 convolution and the upsampling after it. Shape and Size
    nodes end the walk (only their input's shape matters)."""
    producer = {output: node for node in graph.node for output in node.output}
    heads: list[str] = []
    stack, seen = [o.name for o in graph.output], set()
    while stack:
        name = stack.pop()
        if name in seen or name not in producer:
            continue
        seen.add(name)
        node = producer[name]
        heads.append(node.name)
        if node.op_type not in _LAST_COMPUTE and node.op_type not in ("Shape", "Size"):
            stack.extend(i for i in node.input if i)
    return heads


_LAST_COMPUTE = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def _entropy_ranges(model: Path, reader: _CalibrationReader, ranges: Path) -> None:
    """Calibrates activation ranges by minimal KL divergence (TensorRT's entropy method) and saves them in the
    cache file format ``quantize_static`` reads."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    calibrator = create_calibrator(
        model,
        [],
        augmented_model_path=str(ranges.with_name("augmented.onnx")),
        calibrate_method=CalibrationMethod.Entropy,
        extra_options={"num_bins": ENTROPY_HISTOGRAM_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS},
    )
    calibrator.collect_data(reader)
    save_tensors_data(calibrator.compute_data(), ranges)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ORT's quantizer logs each step at INFO and prints hints on stdout; the pipeline reports instead."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _batches(images: ImageSet, prep: Preprocessing, spec: TensorSpec, size: int) -> Iterator[dict[str, np.ndarray]]:
    for start in range(0, len(images), size):
        yield {spec.name: model_input(images.pixels[start : start + size], prep, spec)}


class _CalibrationReader:
    """ORT's ``CalibrationDataReader`` protocol over an ``ImageSet``, in batches the model takes (a graph
    exported for a fixed batch gets exactly that many images at a time)."""

    def __init__(self, images: ImageSet, prep: Preprocessing, spec: TensorSpec, fixed_batch: int = -1) -> None:
        self._batches = _batches(images, prep, spec, fixed_batch if fixed_batch > 0 else CALIBRATION_BATCH)

    def get_next(self) -> dict[str, Any] | None:
        return next(self._batches, None)
