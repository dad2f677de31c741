"""Where the model comes from, and what that source dictates before any data is read: input geometry,
preprocessing defaults and, for pretrained or ONNX models, the labels.

An ONNX source never touches torch: the file is checked, its batch axis made dynamic, and it goes straight
to optimization, gates and packaging.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from amaas.artifact.manifest import TensorSpec
from amaas_export.config import CIFAR_CNN, ExportConfig
from amaas_export.errors import ConfigError, first_line
from amaas_export.tasks import ExportTask, export_task

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIZE = {CIFAR_CNN: 32}
TORCHVISION_DEFAULT_SIZE = 224
DEFAULT_INTERPOLATION = "bilinear"


@dataclass(frozen=True)
class OnnxSource:
    path: Path
    input: TensorSpec
    labels: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class SourcePlan:
    """Attributes:
    task: What the export makes (``--task``).
    resize, crop, interpolation: Input geometry (``resize`` equals ``crop`` for a task that stretches).
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
    if config.from_onnx is not None:
        source = prepare_onnx(config.from_onnx, config.labels_file, work, config.image_size, task)
        crop = source.input.shape[2] if source.input.layout == "NCHW" else source.input.shape[1]
        return SourcePlan(
            task=task,
            resize=crop if stretch else config.resize or crop,
            crop=crop,
            mean=config.mean or IMAGENET_MEAN,
            std=config.std or IMAGENET_STD,
            labels=source.labels,
            interpolation=interpolation,
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


def prepare_onnx(
    path: Path, labels_file: Path | None, work: Path, image_size: int | None, task: ExportTask
) -> OnnxSource:
    """Checks an ONNX image model of ``task`` and returns a copy with a dynamic batch axis.

    Raises:
        ConfigError: Not a loadable ONNX file, not one image input with the task's outputs, labels that do
            not match the output, or a batch axis that cannot be made dynamic.
    """
    assert labels_file is not None
    labels = read_labels(labels_file)
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except OSError as exc:
        raise ConfigError(f"cannot read --from-onnx {path}: {exc.strerror or exc}") from exc
    except Exception as exc:  # protobuf's DecodeError, the checker's ValidationError: not an ONNX model
        raise ConfigError(f"--from-onnx {path} is not a valid ONNX model: {first_line(exc)}") from exc
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(model.graph.output) != len(task.output_names):
        raise ConfigError(
            f"--from-onnx needs a {task.name} model with one image input and {len(task.output_names)} output(s) "
            f"({', '.join(task.output_names)})"
        )
    tensor = inputs[0].type.tensor_type
    dims = tensor.shape.dim
    if tensor.elem_type != onnx.TensorProto.FLOAT or len(dims) != 4:
        raise ConfigError("--from-onnx needs a float32 4-D image input (NCHW or NHWC)")
    layout = "NHWC" if dims[3].dim_value == 3 and dims[1].dim_value != 3 else "NCHW"
    spatial = [dims[1], dims[2]] if layout == "NHWC" else [dims[2], dims[3]]
    fixed = [d.dim_value for d in spatial if d.dim_value > 0]
    side = fixed[0] if len(fixed) == 2 and fixed[0] == fixed[1] else image_size or TORCHVISION_DEFAULT_SIZE
    if fixed and image_size and fixed[0] != image_size:
        raise ConfigError(f"the ONNX model takes {fixed[0]}x{fixed[0]} images; --image-size {image_size} does not fit")
    output_dims = model.graph.output[0].type.tensor_type.shape.dim
    classes = output_dims[-1].dim_value if len(output_dims) == 2 else 0  # logits [N, classes]
    if classes and classes != len(labels):
        raise ConfigError(f"the ONNX model outputs {classes} classes but {labels_file} lists {len(labels)} labels")

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
    shape = (-1, 3, side, side) if layout == "NCHW" else (-1, side, side, 3)
    spec = TensorSpec(inputs[0].name, shape, "float32", layout)
    _check_batches(prepared, spec, labels, task)
    return OnnxSource(path=prepared, input=spec, labels=labels, outputs=tuple(o.name for o in model.graph.output))


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


def _check_batches(path: Path, spec: TensorSpec, labels: tuple[str, ...], task: ExportTask) -> None:
    """The model must take a batch of 2 and answer each image as it does alone."""
    import onnxruntime as ort

    from amaas.artifact.session import create_session

    quiet = ort.RunOptions()
    quiet.log_severity_level = 4  # a failure is reported below, in words; ORT's own log line is noise
    shape = [2 if d == -1 else d for d in spec.shape]
    images = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    try:
        session = create_session(path, threads=1)
        together = session.run(None, {spec.name: images}, quiet)
        alone = [session.run(None, {spec.name: images[i : i + 1]}, quiet) for i in range(2)]
    except Exception as exc:
        raise ConfigError(
            f"the ONNX model does not run on a batch of 2 images (a fixed batch size?): {first_line(exc)}"
        ) from exc
    task.check_outputs(together, 2, labels)
    for i, output in enumerate(together):
        if not np.allclose(output, np.concatenate([one[i] for one in alone]), rtol=1e-4, atol=1e-4):
            raise ConfigError("the ONNX model mixes images within a batch: a batch of 2 differs from 2 single images")
