"""TensorFlow/Keras models to one ONNX file: a SavedModel directory or a ``.keras`` file, converted in-process by
tf2onnx at opset 17 with a dynamic batch axis, then run by ONNX Runtime and compared with TensorFlow.

TensorFlow is an optional extra (``pip install amaas[tensorflow]``: ~1.4 GB installed, ~5 s to import on two
cores), so nothing here imports it until a conversion starts. What the converted file looks like is read from
the ONNX graph alone: the input's layout and dtype, a Rescaling or Normalization layer found right after the
input (the model then takes pixels 0..255), and a Softmax at the end (the server applies its own softmax).

Both sources take the SavedModel road, the one tf2onnx's own command line takes: its ``from_function`` (and so
Keras's ``model.export(format="onnx")``) turns constants a layer captures, such as a Normalization layer's mean
and variance, into extra graph inputs, and its ``from_keras`` fails on Keras 3 models (onnx/tensorflow-onnx#2448).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from amaas.artifact.manifest import TensorSpec
from amaas_export.errors import ConfigError, GateError, first_line
from amaas_export.onnx_input import InputScaling, describe_input, ends_in_softmax, find_input_scaling

INSTALL_HINT = "pip install 'amaas[tensorflow]'"
OPSET = 17
BATCH_DIM = "batch"
SERVING_SIGNATURE = "serving_default"
SAVED_MODEL_FILE = "saved_model.pb"
KERAS_SUFFIX = ".keras"
# Same bound as the pipeline's ONNX-vs-torch parity gate: absolute, plus a share of the largest output.
PARITY_TOLERANCE = 1e-4
PARITY_RELATIVE = 1e-5
PARITY_IMAGES = 4
NUMPY_COPY_WARNING = "__array__ implementation doesn't accept a copy keyword"


@dataclass(frozen=True)
class TensorflowModel:
    """A TensorFlow model converted to ONNX and checked against TensorFlow.

    Attributes:
        path: The ONNX file.
        input: Name, shape (-1 for the batch and any free side), dtype and layout of the image input.
        output: Name, shape and dtype of the output.
        scaling: The arithmetic found right after the input, ``None`` if the graph starts with something else.
        softmax_output: The graph ends in a Softmax (probabilities, not logits).
        max_abs_diff: Largest difference between ONNX Runtime's and TensorFlow's outputs on the check images.
    """

    path: Path
    input: TensorSpec
    output: TensorSpec
    scaling: InputScaling | None
    softmax_output: bool
    max_abs_diff: float


def convert_tensorflow(source: Path, out: Path, *, opset: int = OPSET) -> TensorflowModel:
    """Converts a SavedModel directory or a ``.keras`` file to a single ONNX file with a dynamic batch axis.

    A SavedModel is converted through its ``serving_default`` signature (or its only one). A ``.keras`` file is
    loaded and exported to a SavedModel with a free batch axis first, whatever batch size it was built with.

    Args:
        source: A directory holding ``saved_model.pb``, or a ``.keras`` file.
        out: Where the ONNX file is written.
        opset: ONNX opset of the converted graph.

    Returns:
        What the converted model takes and returns, and how closely it matches TensorFlow.

    Raises:
        ConfigError: TensorFlow or tf2onnx is not installed, the source is not a model either can read, it does
            not have exactly one image input and one output, or tf2onnx left operations it cannot convert.
        GateError: ONNX Runtime's outputs differ from TensorFlow's, or a batch differs from its images alone.
    """
    kind = _source_kind(source)
    tf, tf2onnx = _import_tensorflow()
    with tempfile.TemporaryDirectory(prefix="amaas-tf-") as work, _quiet_tensorflow(tf):
        saved_model = _keras_to_saved_model(tf, source, Path(work)) if kind == "keras" else source
        signature = _serving_signature(saved_model)
        try:
            graph_def, inputs, outputs, concrete, _imported, renames = tf2onnx.tf_loader.from_saved_model(
                str(saved_model),
                None,
                None,
                tag="serve",
                signatures=[signature],
                return_concrete_func=True,
                return_tensors_to_rename=True,
            )
            model, _ = tf2onnx.convert.from_graph_def(
                graph_def, input_names=inputs, output_names=outputs, opset=opset, tensors_to_rename=renames
            )
        except Exception as exc:  # tf2onnx raises bare Exceptions and assertion errors from deep in the graph
            raise ConfigError(f"tf2onnx could not convert {source}: {first_line(exc)}") from exc
        _check_converted(model, source)
        spec, scaling = describe_input(model).spec, find_input_scaling(model)
        output = _describe_output(model)
        _free_batch_axis(model)
        out.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(out))
        diff = _compare_with_tensorflow(tf, concrete, out, spec, scaling)
    return TensorflowModel(
        path=out,
        input=spec,
        output=output,
        scaling=scaling,
        softmax_output=ends_in_softmax(model),
        max_abs_diff=diff,
    )


def _source_kind(source: Path) -> str:
    if source.is_dir():
        if not (source / SAVED_MODEL_FILE).is_file():
            raise ConfigError(f"{source} is a directory without {SAVED_MODEL_FILE}: not a TensorFlow SavedModel")
        return "saved_model"
    if source.suffix == KERAS_SUFFIX and source.is_file():
        return "keras"
    if not source.exists():
        raise ConfigError(f"{source} does not exist")
    raise ConfigError(f"{source} is neither a SavedModel directory nor a {KERAS_SUFFIX} file")


def _import_tensorflow() -> tuple[Any, Any]:
    """TensorFlow and tf2onnx, or one line naming the extra that installs them."""
    # TensorFlow's C++ start-up lines (oneDNN notices, CPU features) go to file descriptor 2 whatever its log
    # level says; they say nothing an export needs. The level is a default: a user's own setting wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TensorFlow and triton (torch's kernel compiler, which importing torchvision loads) both bring their own
    # LLVM; triton's library segfaults when it is loaded after TensorFlow's, as the data stage would load it.
    # Loaded first, both work.
    with contextlib.suppress(ImportError):
        importlib.import_module("triton")
    try:
        with _native_stderr_silenced():
            tf = importlib.import_module("tensorflow")
            tf2onnx = importlib.import_module("tf2onnx")
            for module in ("tf2onnx.convert", "tf2onnx.tf_loader"):
                importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"converting a TensorFlow model needs tensorflow and tf2onnx ({first_line(exc)}): {INSTALL_HINT}"
        ) from exc
    return tf, tf2onnx


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Sends file descriptor 2 to a scratch file for the duration; replays it if the block fails."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                sink.seek(0)
                os.write(2, sink.read()[-4000:])


@contextlib.contextmanager
def _quiet_tensorflow(tf: Any) -> Iterator[None]:
    """tf2onnx's freezing calls TF1 APIs that log deprecation warnings (twice) through the ``tensorflow``
    logger, and tf2onnx logs each step at INFO; a conversion reports its result instead. Keras turns TF
    variables into arrays through an ``__array__`` without numpy 2's ``copy`` keyword, which numpy warns about
    on every save and export."""
    loggers = [tf.get_logger(), logging.getLogger("tf2onnx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", NUMPY_COPY_WARNING, DeprecationWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _keras_to_saved_model(tf: Any, source: Path, work: Path) -> Path:
    """Loads a ``.keras`` file and exports it as a SavedModel whose batch axis is free."""
    keras: Any = importlib.import_module("keras")
    try:
        model = keras.saving.load_model(str(source), compile=False)
    except Exception as exc:  # Keras wraps unreadable zips, unknown layers and bad configs alike
        raise ConfigError(f"Keras cannot load {source}: {first_line(exc)}") from exc
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ConfigError(
            f"{source} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; amaas needs 1 and 1"
        )
    spec = model.inputs[0]
    signature = tf.TensorSpec((None, *spec.shape[1:]), spec.dtype, name=_input_name(spec.name))
    saved_model = work / "saved_model"
    model.export(str(saved_model), format="tf_saved_model", input_signature=[signature], verbose=False)
    return saved_model


def _input_name(name: str) -> str:
    """Keras names unnamed inputs ``keras_tensor_12``; the served model's input gets a stable name instead."""
    return "pixels" if not name or name.startswith("keras_tensor") else name


def _serving_signature(saved_model: Path) -> str:
    """``serving_default`` if the SavedModel has it, else its only signature; its batch axis must be free."""
    saved_model_pb2: Any = importlib.import_module("tensorflow.core.protobuf.saved_model_pb2")
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((saved_model / SAVED_MODEL_FILE).read_bytes())
    except Exception as exc:  # protobuf's DecodeError: not a SavedModel after all
        raise ConfigError(f"{saved_model} is not a readable SavedModel: {first_line(exc)}") from exc
    graphs = [g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags]
    signatures = {k: v for g in graphs for k, v in g.signature_def.items() if not k.startswith("__")}
    if SERVING_SIGNATURE in signatures:
        name = SERVING_SIGNATURE
    elif len(signatures) == 1:
        name = next(iter(signatures))
    else:
        found = ", ".join(sorted(signatures)) or "none"
        raise ConfigError(f"{saved_model} has no {SERVING_SIGNATURE} signature under the serve tag (found: {found})")
    inputs = signatures[name].inputs
    if len(inputs) != 1:
        raise ConfigError(f"the SavedModel's {name} signature takes {len(inputs)} inputs; amaas needs one image input")
    dims = [d.size for d in next(iter(inputs.values())).tensor_shape.dim]
    if dims and dims[0] > 0:
        raise ConfigError(
            f"the SavedModel's {name} signature fixes the batch at {dims[0]}; export it with a free batch axis "
            f"(None) or convert its {KERAS_SUFFIX} file"
        )
    return name


def _check_converted(model: onnx.ModelProto, source: Path) -> None:
    """tf2onnx keeps going past operations it cannot convert and leaves them in the graph as TensorFlow ops."""
    unknown = sorted(
        {n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type)}
    )
    if unknown:
        raise ConfigError(f"tf2onnx cannot convert these operations of {source}: {', '.join(unknown)}")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ConfigError(f"tf2onnx made an invalid ONNX model from {source}: {first_line(exc)}") from exc
    if len(model.graph.output) != 1:
        raise ConfigError(f"{source} has {len(model.graph.output)} outputs; amaas needs one")


def _describe_output(model: onnx.ModelProto) -> TensorSpec:
    output = model.graph.output[0]
    tensor = output.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
    return TensorSpec(output.name, (-1, *dims[1:]) if dims else (), dtype)


def _free_batch_axis(model: onnx.ModelProto) -> None:
    """tf2onnx names each free dimension ``unk__N``; the batch axes of the input and output become ``batch``
    everywhere they appear, as in the project's other ONNX files."""
    symbols = set()
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            symbols.add(dims[0].dim_param)
    for value in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in symbols:
                dim.dim_param = BATCH_DIM


def _check_images(spec: TensorSpec, scaling: InputScaling | None) -> np.ndarray:
    """Pixel-valued images when the graph scales them itself, else values of the order a normalised input has."""
    rng = np.random.default_rng(0)
    shape = [PARITY_IMAGES if d == -1 and i == 0 else (32 if d == -1 else d) for i, d in enumerate(spec.shape)]
    if spec.dtype == "uint8":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if scaling is not None and scaling.takes_pixels:
        return rng.uniform(0, 255, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def _compare_with_tensorflow(
    tf: Any, concrete: Any, path: Path, spec: TensorSpec, scaling: InputScaling | None
) -> float:
    """ONNX Runtime against TensorFlow on a few images, and a batch against its images one at a time."""
    from amaas.artifact.session import create_session

    images = _check_images(spec, scaling)
    expected = concrete(**{spec.name: tf.constant(images)})  # signature functions take keyword arguments only
    expected = np.asarray(next(iter(expected.values())) if isinstance(expected, dict) else expected)
    session = create_session(path, threads=1)
    together = session.run(None, {spec.name: images})[0]
    alone = np.concatenate([session.run(None, {spec.name: images[i : i + 1]})[0] for i in range(len(images))])
    diff = float(np.abs(together - expected).max())
    limit = PARITY_TOLERANCE + PARITY_RELATIVE * float(np.abs(expected).max())
    if not diff <= limit:
        raise GateError(f"the converted model differs from TensorFlow by up to {diff:.3g} (limit {limit:.3g})")
    if not np.allclose(together, alone, rtol=1e-4, atol=1e-4):
        raise GateError("the converted model mixes images within a batch: a batch differs from its images alone")
    return diff
