"""What an imported ONNX classifier takes and returns, read from its graph alone (no session, no TensorFlow):
its image input's dtype and layout, the scaling its graph applies to that input before anything else (a Keras
``Rescaling`` or ``Normalization`` layer), and a Softmax at its end.

The layout is read from where the 3 channels sit in the input's shape; a shape that does not say (both axes
3, or both free) needs ``--layout``, which also overrides what the shape says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from amaas.artifact.manifest import LAYOUTS, TensorSpec
from amaas_export.errors import ConfigError

_DTYPES: dict[int, str] = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.UINT8: "uint8"}
_CHANNEL_AXIS = {"NCHW": 1, "NHWC": 3}
_AFFINE = {"Mul", "Div", "Add", "Sub"}
# Between the input and its scaling an exporter may put a Cast (uint8 inputs) or a Transpose (NHWC to NCHW);
# neither changes a pixel's value.
_VALUE_PRESERVING = {"Cast", "Identity", "Transpose"}


@dataclass(frozen=True)
class ImageInput:
    """Attributes:
    spec: Name, shape (-1 for the batch and any free side), dtype and layout.
    reason: How the layout was chosen, for the export's log.
    """

    spec: TensorSpec
    reason: str


@dataclass(frozen=True)
class InputScaling:
    """``x * scale + offset`` applied to the input before anything else, per channel (three values) or for
    every channel (one value): what a Keras Rescaling or Normalization layer becomes.

    Attributes:
        scale, offset: The combined affine map.
        nodes: The graph nodes that apply it.
    """

    scale: tuple[float, ...]
    offset: tuple[float, ...]
    nodes: tuple[str, ...]

    @property
    def pixel_range(self) -> tuple[float, float]:
        """Where pixels 0..255 land, lowest and highest over the channels."""
        ends = [o + 255.0 * s for s, o in zip(self._wide(self.scale), self._wide(self.offset), strict=True)]
        values = [*self._wide(self.offset), *ends]
        return min(values), max(values)

    @property
    def takes_pixels(self) -> bool:
        """The graph itself brings 0..255 pixels to a normalised range (within +-5, spanning at least 0.5), so it
        is fed raw pixel values: scale 1, mean 0, std 1 in the manifest's terms."""
        low, high = self.pixel_range
        return low >= -5.0 and high <= 5.0 and high - low >= 0.5

    @staticmethod
    def _wide(values: tuple[float, ...]) -> tuple[float, ...]:
        return values * 3 if len(values) == 1 else values


def image_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    """The graph's one input that is not an initializer.

    Raises:
        ConfigError: The graph takes no input or several.
    """
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise ConfigError(f"the model needs exactly one image input; its graph takes {len(inputs)}: {names}")
    value: onnx.ValueInfoProto = inputs[0]
    return value


def describe_input(model: onnx.ModelProto, layout: str | None = None) -> ImageInput:
    """The image input's name, shape (-1 where free), dtype and layout: NHWC when the 3 channels come last (as
    TensorFlow builds models), NCHW when they come right after the batch (as torch does), or ``layout``.

    Raises:
        ConfigError: Not one 4-D float32 or uint8 input; no axis of 3 channels where ``layout`` (or either
            layout) puts them; a shape that fits both layouts and no ``layout``.
    """
    value = image_input(model)
    tensor = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
    dtype = _DTYPES.get(tensor.elem_type)
    if dtype is None or len(dims) != 4:
        kind = onnx.TensorProto.DataType.Name(tensor.elem_type).lower()
        raise ConfigError(f"the model's input must be a 4-D float32 or uint8 image batch; it is {kind} {dims}")
    shape = "[N, " + ", ".join("?" if d == -1 else str(d) for d in dims[1:]) + "]"
    if layout is not None:
        if layout not in LAYOUTS:
            raise ConfigError(f"--layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
        axis = _CHANNEL_AXIS[layout]
        if dims[axis] not in (3, -1):
            raise ConfigError(
                f"--layout {layout} puts the channels on axis {axis}, but the input {shape} has {dims[axis]}"
            )
        reason = f"--layout {layout} (the input's shape is {shape})"
    else:
        fixed = [name for name, axis in _CHANNEL_AXIS.items() if dims[axis] == 3]
        free = [name for name, axis in _CHANNEL_AXIS.items() if dims[axis] == -1]
        candidates = fixed or free
        if not candidates:
            raise ConfigError(f"the model's input {shape} has no axis of 3 channels; amaas serves RGB images")
        if len(candidates) > 1:
            raise ConfigError(
                f"cannot tell NCHW from NHWC by the model's input shape {shape}: pass --layout NCHW or --layout NHWC"
            )
        layout = candidates[0]
        where = "3 channels on" if fixed else "channels can only be on"
        reason = f"read from its shape {shape} ({where} axis {_CHANNEL_AXIS[layout]}; --layout overrides)"
    return ImageInput(TensorSpec(value.name, (-1, *dims[1:]), dtype, layout), reason)


def find_input_scaling(model: onnx.ModelProto) -> InputScaling | None:
    """The affine map (Mul, Div, Add, Sub by constants) the graph applies to its input before anything else,
    through any Cast or Transpose on the way; ``None`` when there is none."""
    constants = _constants(model)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    tensor = image_input(model).name
    scale, offset = np.ones(1), np.zeros(1)
    nodes: list[str] = []
    while len(consumers.get(tensor, [])) == 1:
        node = consumers[tensor][0]
        if node.op_type in _VALUE_PRESERVING:
            tensor = node.output[0]
            continue
        if node.op_type not in _AFFINE or len(node.input) != 2:
            break
        position = list(node.input).index(tensor)
        value = constants.get(node.input[1 - position])
        if value is None or value.size not in (1, 3) or (position == 1 and node.op_type in ("Sub", "Div")):
            break
        value = value.astype(np.float64).ravel()
        if node.op_type == "Mul":
            scale, offset = scale * value, offset * value
        elif node.op_type == "Div":
            scale, offset = scale / value, offset / value
        else:
            offset = offset + value if node.op_type == "Add" else offset - value
        nodes.append(node.name)
        tensor = node.output[0]
    if not nodes or not np.any(scale != 1.0):
        return None
    width = max(scale.size, offset.size)
    return InputScaling(
        scale=tuple(float(v) for v in np.broadcast_to(scale, width)),
        offset=tuple(float(v) for v in np.broadcast_to(offset, width)),
        nodes=tuple(nodes),
    )


def final_softmax(model: onnx.ModelProto) -> onnx.NodeProto | None:
    """The Softmax over the last axis that makes the (single) output: the model returns probabilities."""
    outputs = {o.name for o in model.graph.output}
    for node in model.graph.node:
        if node.op_type == "Softmax" and outputs & set(node.output):
            axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
            return node if axis in (-1, 1) else None
    return None


def ends_in_softmax(model: onnx.ModelProto) -> bool:
    return final_softmax(model) is not None


def strip_final_softmax(model: onnx.ModelProto) -> bool:
    """Turns a final Softmax into an Identity, so the model returns the logits the server's softmax expects
    (its answers would otherwise be a softmax of probabilities, every score squeezed towards 1/classes).
    The top classes do not change. Returns whether there was one."""
    node = final_softmax(model)
    if node is None:
        return False
    node.op_type = "Identity"
    del node.attribute[:]
    return True


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values
