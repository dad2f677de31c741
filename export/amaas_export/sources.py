"""Where the model comes from, and what that source dictates before any data is read: input geometry,
preprocessing defaults and, for pretrained or imported models, the labels.

An imported model never touches torch: a Keras file or SavedModel is converted to ONNX with tf2onnx, then like
an ONNX file it is checked, its input's layout read (``--layout`` overrides), its batch axis made dynamic, a
final Softmax turned back into logits, and it goes straight to optimization, gates and packaging.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from amaas.artifact.manifest import PIXEL_SCALE, Preprocessing, TensorSpec
from amaas.artifact.preprocessing import model_input
from amaas_export.config import CIFAR_CNN, ExportConfig
from amaas_export.errors import ConfigError, first_line
from amaas_export.onnx_input import describe_input, find_input_scaling, strip_final_softmax
from amaas_export.tasks import ExportTask, export_task

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIZE = {CIFAR_CNN: 32}
TORCHVISION_DEFAULT_SIZE = 224
DEFAULT_INTERPOLATION = "bilinear"


Triple = tuple[float, float, float]


@dataclass(frozen=True)
class OnnxSource:
    """Attributes:
    path: The prepared ONNX file (dynamic batch, logits out).
    input: Its image input, with the side filled in where the file leaves it free.
    labels: From ``--labels``; ``None`` means the data's class names.
    classes: How many classes the model outputs (0 if the file does not say).
    takes_pixels: Its graph scales 0..255 pixels itself (a Keras Rescaling or Normalization layer).
    notes: What was found and done, for the export's log.
    parity: Largest |output difference| between ONNX Runtime and TensorFlow, for a converted model.
    """

    path: Path
    input: TensorSpec
    labels: tuple[str, ...] | None
    classes: int
    outputs: tuple[str, ...]
    takes_pixels: bool = False
    notes: tuple[str, ...] = ()
    parity: float | None = None


@dataclass(frozen=True)
class SourcePlan:
    """Attributes:
    task: What the export makes (``--task``).
    resize, crop, interpolation: Input geometry (``resize`` equals ``crop`` for a task that stretches).
    scale: What pixels are multiplied by before ``mean`` and ``std`` (imported models only set another).
    mean, std: Normalisation if the source fixes it (pretrained weights, ONNX, flags); ``None`` means
        "measure it on the training images".
    labels: Class names if the source fixes them (ONNX labels file, pretrained categories).
    pretrained: torchvision weights metadata when ``--weights`` names an enum.
    onnx: The prepared ONNX model when the source is ``--from-onnx``.
    """

    task: ExportTask
    resize: int
    crop: int
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None
    labels: tuple[str, ...] | None
    interpolation: str = DEFAULT_INTERPOLATION
    scale: float = PIXEL_SCALE
    pretrained: object | None = None
    onnx: OnnxSource | None = None


def plan_source(config: ExportConfig, work: Path) -> SourcePlan:
    """Resolves the source's defaults; explicit flags always win.

    Pretrained weights bring the preprocessing they were trained with: resize, crop, interpolation (bicubic
    for EfficientNet, bilinear for most) and mean/std. With another ``--image-size``, the resize keeps the
    weights' crop ratio (256/224 → 73 for a 64 crop).
    """
    interpolation = config.interpolation or DEFAULT_INTERPOLATION
    task = export_task(config.task)
    stretch = task.resize_mode == "stretch"  # the whole image, squeezed: no resize before a crop
    if config.imported is not None:
        source, prep = import_model(config, work, task)
        return SourcePlan(
            task=task,
            resize=prep.crop if stretch else config.resize or prep.crop,
            crop=prep.crop,
            mean=prep.mean,
            std=prep.std,
            labels=source.labels,
            interpolation=interpolation,
            scale=prep.scale,
            onnx=source,
        )
    if config.weights is not None:
        from amaas_export.models import is_weights_file

        if not is_weights_file(config.weights):
            info = task.pretrained_info(config.arch, config.weights)
            crop = config.image_size or info.crop
            return SourcePlan(
                task=task,
                resize=crop if stretch else config.resize or max(crop, round(crop * info.resize / info.crop)),
                crop=crop,
                mean=config.mean or info.mean,
                std=config.std or info.std,
                labels=info.categories,
                interpolation=config.interpolation or info.interpolation,
                pretrained=info,
            )
    crop = config.image_size or DEFAULT_SIZE.get(config.arch, TORCHVISION_DEFAULT_SIZE)
    return SourcePlan(
        task=task,
        resize=crop if stretch else config.resize or crop,
        crop=crop,
        mean=config.mean,
        std=config.std,
        labels=None,
        interpolation=interpolation,
    )


def read_labels(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read labels file {path}: {exc.strerror}") from exc
    labels = tuple(line.strip() for line in lines if line.strip())
    if len(labels) < 2:
        raise ConfigError(f"labels file {path} needs one class name per line, at least two")
    if len(set(labels)) != len(labels):
        raise ConfigError(f"labels file {path} repeats a class name")
    return labels


def import_model(config: ExportConfig, work: Path, task: ExportTask) -> tuple[OnnxSource, Preprocessing]:
    """The imported model as a prepared ONNX file (converted by tf2onnx first if it is a TensorFlow model), and
    the preprocessing it is fed with, checked on a batch of 2 images against the images one at a time."""
    assert config.imported is not None
    flag, path = config.imported
    notes, parity = [], None
    if flag != "--from-onnx":
        from amaas_export.tensorflow_source import OPSET, convert_tensorflow

        converted = convert_tensorflow(path, work / "converted.onnx")
        notes.append(
            f"converted {path.name} with tf2onnx (opset {OPSET}); ONNX Runtime matches TensorFlow "
            f"within {converted.max_abs_diff:.1e}"
        )
        path, parity = converted.path, converted.max_abs_diff
    source = prepare_onnx(path, config.labels_file, work, config.image_size, task, config.layout, flag)
    scale, mean, std = imported_preprocessing(config, source)
    crop = source.input.shape[2] if source.input.layout == "NCHW" else source.input.shape[1]
    prep = Preprocessing(crop, crop, mean, std, channel_order=config.channel_order, scale=scale)
    classes = _check_batches(
        source.path, source.input, prep, task, source.labels, source.classes or len(source.labels or ())
    )
    return replace(source, classes=classes, notes=(*notes, *source.notes), parity=parity), prep


def imported_preprocessing(config: ExportConfig, source: OnnxSource) -> tuple[float, Triple, Triple]:
    """Scale, mean and std for an imported model: flags win; otherwise pixels as they are (scale 1, mean 0,
    std 1) for a model that scales them in its graph, else 1/255 and ImageNet's statistics.

    Raises:
        ConfigError: ``--scale``, ``--mean`` or ``--std`` for a uint8 input, which takes the pixels as they are.
    """
    if source.input.dtype == "uint8":
        if config.scale is not None or config.mean is not None or config.std is not None:
            raise ConfigError(
                "the model takes uint8 pixels and scales them in its graph: --scale, --mean and --std do not apply"
            )
        return 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if source.takes_pixels:
        scale, mean, std = 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    else:
        scale, mean, std = PIXEL_SCALE, IMAGENET_MEAN, IMAGENET_STD
    return config.scale or scale, config.mean or mean, config.std or std


def prepare_onnx(
    path: Path,
    labels_file: Path | None,
    work: Path,
    image_size: int | None,
    task: ExportTask,
    layout: str | None = None,
    flag: str = "--from-onnx",
) -> OnnxSource:
    """Checks an ONNX image classifier and returns a copy with a dynamic batch axis that outputs logits.

    Raises:
        ConfigError: Not a loadable ONNX file, not one image input (float32 or uint8, NCHW or NHWC) and one
            output, labels that do not match the output, or a batch axis that cannot be made dynamic.
    """
    labels = read_labels(labels_file) if labels_file is not None else None
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except OSError as exc:
        raise ConfigError(f"cannot read {flag} {path}: {exc.strerror or exc}") from exc
    except Exception as exc:  # protobuf's DecodeError, the checker's ValidationError: not an ONNX model
        raise ConfigError(f"{flag} {path} is not a valid ONNX model: {first_line(exc)}") from exc
    if len(model.graph.output) != len(task.output_names):
        raise ConfigError(
            f"{flag} needs a {task.name} model with one image input and {len(task.output_names)} output(s) "
            f"({', '.join(task.output_names)})"
        )
    found = describe_input(model, layout)
    tensor = found.spec
    spatial = tensor.shape[1:3] if tensor.layout == "NHWC" else tensor.shape[2:4]
    fixed = [d for d in spatial if d > 0]
    side = fixed[0] if len(fixed) == 2 and fixed[0] == fixed[1] else image_size or TORCHVISION_DEFAULT_SIZE
    if fixed and image_size and fixed[0] != image_size:
        raise ConfigError(f"the ONNX model takes {fixed[0]}x{fixed[0]} images; --image-size {image_size} does not fit")
    output_dims = model.graph.output[0].type.tensor_type.shape.dim
    classes = output_dims[-1].dim_value if len(output_dims) == 2 else 0  # logits [N, classes]
    if classes and labels is not None and classes != len(labels):
        raise ConfigError(f"the ONNX model outputs {classes} classes but {labels_file} lists {len(labels)} labels")
    notes = [f"input {tensor.name} {tensor.dtype} {tensor.layout}: {found.reason}"]
    scaling = find_input_scaling(model)
    takes_pixels = scaling is not None and scaling.takes_pixels and tensor.dtype == "float32"
    if scaling is not None and takes_pixels:
        low, high = scaling.pixel_range
        notes.append(f"its graph scales pixels 0..255 to {low:.2f}..{high:.2f} itself ({', '.join(scaling.nodes)})")
    if task.name == "classification" and strip_final_softmax(model):
        notes.append("its final Softmax now passes logits through: the server applies its own softmax")

    dims = _image_input_dims(model, tensor.name)
    if dims[0].dim_value == 1:
        _unfix_batch_reshapes(model)
    dims[0].ClearField("dim_value")
    dims[0].dim_param = "batch"
    for output in model.graph.output:
        dims_out = output.type.tensor_type.shape.dim
        if dims_out:
            dims_out[0].ClearField("dim_value")
            dims_out[0].dim_param = "batch"
    del model.graph.value_info[:]  # shapes recorded for the fixed batch would contradict the dynamic one
    prepared = work / "source.onnx"
    onnx.save(model, str(prepared))
    shape = (-1, 3, side, side) if tensor.layout == "NCHW" else (-1, side, side, 3)
    spec = TensorSpec(tensor.name, shape, tensor.dtype, tensor.layout)
    outputs = tuple(o.name for o in model.graph.output)
    return OnnxSource(prepared, spec, labels, classes, outputs, takes_pixels, tuple(notes))


def _image_input_dims(model: onnx.ModelProto, name: str) -> Any:
    (value,) = [i for i in model.graph.input if i.name == name]
    return value.type.tensor_type.shape.dim


def _unfix_batch_reshapes(model: onnx.ModelProto) -> None:
    """Exporters that traced a batch of one often bake it into Reshape targets ([1, 400]); those become
    [-1, 400]. ``_check_batches`` then proves the rewritten model batches exactly like single images."""
    from onnx import numpy_helper

    initializers = {init.name: init for init in model.graph.initializer}
    constants = {n.output[0]: n.attribute[0].t for n in model.graph.node if n.op_type == "Constant" and n.attribute}
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        tensor = initializers.get(node.input[1]) or constants.get(node.input[1])
        if tensor is None:
            continue
        shape = numpy_helper.to_array(tensor)
        if shape.ndim == 1 and len(shape) >= 2 and shape[0] == 1 and -1 not in shape:
            unfixed = np.concatenate([[-1], shape[1:]]).astype(shape.dtype)
            tensor.CopyFrom(numpy_helper.from_array(unfixed, tensor.name))


def _check_batches(
    path: Path, spec: TensorSpec, prep: Preprocessing, task: ExportTask, labels: tuple[str, ...] | None, classes: int
) -> int:
    """The model must take a batch of 2 random images, fed as every stage feeds it, answer with the task's
    outputs, and answer each image as it does alone; returns its class count (``classes``, when the file or
    the labels say)."""
    import onnxruntime as ort

    from amaas.artifact.session import create_session

    quiet = ort.RunOptions()
    quiet.log_severity_level = 4  # a failure is reported below, in words; ORT's own log line is noise
    pixels = np.random.default_rng(0).integers(0, 256, (2, prep.crop, prep.crop, 3), dtype=np.uint8)
    images = model_input(pixels, prep, spec)
    try:
        session = create_session(path, threads=1)
        together = session.run(None, {spec.name: images}, quiet)
        alone = [session.run(None, {spec.name: images[i : i + 1]}, quiet) for i in range(2)]
    except Exception as exc:
        raise ConfigError(
            f"the ONNX model does not run on a batch of 2 images (a fixed batch size?): {first_line(exc)}"
        ) from exc
    if task.name == "classification":
        logits = together[0]
        if (
            len(together) != 1
            or logits.ndim != 2
            or len(logits) != 2
            or logits.shape[1] != (classes or logits.shape[1])
        ):
            expected = f"(2, {classes})" if classes else "(2, classes)"
            raise ConfigError(f"the ONNX model returns shape {logits.shape} for 2 images; expected {expected} logits")
        classes = int(logits.shape[1])
    else:
        if labels is None:
            raise ConfigError(f"an imported {task.name} model needs --labels FILE (one class name per line)")
        task.check_outputs(together, 2, labels)
        classes = len(labels)
    for i, output in enumerate(together):
        if not np.allclose(output, np.concatenate([one[i] for one in alone]), rtol=1e-4, atol=1e-4):
            raise ConfigError("the ONNX model mixes images within a batch: a batch of 2 differs from 2 single images")
    return classes
