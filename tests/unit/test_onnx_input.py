"""What the TensorFlow source reads from a converted graph (input layout and dtype, in-graph scaling, a softmax
head) and how it fails without TensorFlow: hand-built ONNX graphs, no TensorFlow needed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from amaas_export.errors import ConfigError
from amaas_export.onnx_input import describe_input, ends_in_softmax, find_input_scaling, strip_final_softmax
from amaas_export.tensorflow_source import INSTALL_HINT, convert_tensorflow


def graph(
    shape: list[int | str],
    steps: list[tuple[str, np.ndarray | None]],
    dtype: int = TensorProto.FLOAT,
    head: str = "Relu",
) -> onnx.ModelProto:
    """An input, then ``steps`` (op, constant operand or None), then ``head`` producing the output."""
    nodes, initializers, tensor = [], [], "x"
    for i, (op, constant) in enumerate(steps):
        inputs = [tensor]
        if constant is not None:
            initializers.append(numpy_helper.from_array(constant.astype(np.float32), f"c{i}"))
            inputs.append(f"c{i}")
        attributes = {"to": TensorProto.FLOAT} if op == "Cast" else {}
        attributes.update({"perm": [0, 3, 1, 2]} if op == "Transpose" else {})
        nodes.append(helper.make_node(op, inputs, [f"t{i}"], name=f"n{i}", **attributes))
        tensor = f"t{i}"
    nodes.append(helper.make_node(head, [tensor], ["y"], name="head"))
    return helper.make_model(
        helper.make_graph(
            nodes,
            "g",
            [helper.make_tensor_value_info("x", dtype, shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            initializers,
        )
    )


def test_tensorflow_layout_is_read_as_nhwc_with_a_free_batch() -> None:
    spec = describe_input(graph(["unk__28", 32, 32, 3], [])).spec
    assert (spec.name, spec.shape, spec.dtype, spec.layout) == ("x", (-1, 32, 32, 3), "float32", "NHWC")


def test_channels_first_and_uint8_inputs_are_recognised() -> None:
    assert describe_input(graph([1, 3, 224, 224], [])).spec.layout == "NCHW"
    assert describe_input(graph(["n", 64, 64, 3], [("Cast", None)], dtype=TensorProto.UINT8)).spec.dtype == "uint8"


@pytest.mark.parametrize(
    ("shape", "layout", "expected"),
    [
        (["n", 3, "h", "w"], None, "NCHW"),
        (["n", "h", "w", 3], None, "NHWC"),
        (["n", "c", 32, 32], None, "NCHW"),  # the only axis that could hold the channels
        (["n", 3, 32, 3], "NHWC", "NHWC"),
        (["n", "c", "h", "w"], "NHWC", "NHWC"),
        (["n", 3, 224, 224], "NCHW", "NCHW"),
    ],
)
def test_the_layout_is_read_from_the_shape_or_given(shape: list[int | str], layout: str | None, expected: str) -> None:
    found = describe_input(graph(shape, []), layout)
    assert found.spec.layout == expected
    assert found.reason.startswith("--layout" if layout else "read from its shape")


@pytest.mark.parametrize(
    ("shape", "layout", "message"),
    [
        (["n", "c", "h", "w"], None, "cannot tell NCHW from NHWC .* pass --layout NCHW or --layout NHWC"),
        (["n", 3, 32, 3], None, "cannot tell NCHW from NHWC"),
        (["n", 32, 32, 3], "NCHW", r"--layout NCHW puts the channels on axis 1, but the input \[N, 32, 32, 3\] has 32"),
    ],
)
def test_a_layout_the_shape_cannot_decide_or_contradicts_is_refused(
    shape: list[int | str], layout: str | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        describe_input(graph(shape, []), layout)


@pytest.mark.parametrize(
    ("shape", "dtype", "message"),
    [
        (["n", 28, 28, 1], TensorProto.FLOAT, "no axis of 3 channels"),
        (["n", 32, 32], TensorProto.FLOAT, "4-D float32 or uint8"),
        (["n", 32, 32, 3], TensorProto.INT64, "it is int64"),
    ],
)
def test_inputs_amaas_cannot_feed_are_refused(shape: list[int | str], dtype: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        describe_input(graph(shape, [], dtype=dtype))


def test_a_rescaling_layer_means_the_model_takes_pixels() -> None:
    # GIVEN Keras' Rescaling(1/255) as tf2onnx writes it: Mul by the scale, Add of the (zero) offset
    model = graph(["n", 32, 32, 3], [("Mul", np.array(1 / 255)), ("Add", np.array(0.0)), ("Transpose", None)])
    scaling = find_input_scaling(model)
    assert scaling is not None
    assert scaling.scale == pytest.approx((1 / 255,)) and scaling.offset == (0.0,)
    assert scaling.pixel_range == pytest.approx((0.0, 1.0))
    assert scaling.takes_pixels and scaling.nodes == ("n0", "n1")


def test_a_normalization_layer_is_found_per_channel() -> None:
    # Keras' Normalization(mean, variance) with ImageNet's statistics in pixel units: Sub the mean, Mul by 1/std
    mean, std = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
    model = graph(["n", 224, 224, 3], [("Sub", mean.reshape(1, 1, 1, 3)), ("Mul", 1 / std.reshape(1, 1, 1, 3))])
    scaling = find_input_scaling(model)
    assert scaling is not None
    assert scaling.scale == pytest.approx(tuple(1 / std), rel=1e-6)
    assert scaling.offset == pytest.approx(tuple(-mean / std), rel=1e-6)
    assert scaling.takes_pixels  # 0..255 lands in about -2.1..2.6


def test_scaling_behind_a_uint8_cast_is_found() -> None:
    model = graph(["n", 32, 32, 3], [("Cast", None), ("Div", np.array(255.0))], dtype=TensorProto.UINT8)
    scaling = find_input_scaling(model)
    assert scaling is not None and scaling.scale == pytest.approx((1 / 255,))


def test_a_graph_that_starts_with_a_convolution_has_no_scaling() -> None:
    assert find_input_scaling(graph(["n", 32, 32, 3], [("Transpose", None)])) is None
    # An offset alone does not make 0..255 pixels into a normalised input either.
    assert find_input_scaling(graph(["n", 32, 32, 3], [("Add", np.array(-128.0))])) is None


def test_constant_minus_input_is_not_mistaken_for_scaling() -> None:
    model = graph(["n", 32, 32, 3], [])
    node = helper.make_node("Sub", ["c", "x"], ["s"], name="flip")
    model.graph.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), "c"))
    model.graph.node[0].input[0] = "s"
    model.graph.node.insert(0, node)
    assert find_input_scaling(model) is None


def test_a_softmax_head_is_reported_and_turned_back_into_logits() -> None:
    model = graph(["n", 32, 32, 3], [], head="Softmax")
    assert ends_in_softmax(model) and not ends_in_softmax(graph(["n", 32, 32, 3], []))

    assert strip_final_softmax(model)

    assert [n.op_type for n in model.graph.node] == ["Identity"] and model.graph.output[0].name == "y"
    assert not strip_final_softmax(model)


def test_without_tensorflow_the_error_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a SavedModel directory and a Python where tensorflow cannot be imported
    (tmp_path / "saved_model.pb").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(ConfigError) as caught:
        convert_tensorflow(tmp_path, tmp_path / "model.onnx")
    message = str(caught.value)
    assert INSTALL_HINT in message and "tensorflow" in message and "\n" not in message


@pytest.mark.parametrize(
    ("name", "message"),
    [("missing.keras", "does not exist"), ("weights.h5", "neither a SavedModel directory nor a .keras file")],
)
def test_sources_that_are_not_tensorflow_models_fail_before_importing_it(
    tmp_path: Path, name: str, message: str
) -> None:
    if name.endswith(".h5"):
        (tmp_path / name).write_bytes(b"\x89HDF")
    with pytest.raises(ConfigError, match=message):
        convert_tensorflow(tmp_path / name, tmp_path / "model.onnx")


def test_a_directory_without_saved_model_pb_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"without saved_model\.pb"):
        convert_tensorflow(tmp_path, tmp_path / "model.onnx")


def test_the_cli_names_the_extra_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a Keras file and a Python without TensorFlow
    from amaas_cli.main import main

    (tmp_path / "model.keras").write_bytes(b"PK")
    monkeypatch.setitem(sys.modules, "tensorflow", None)

    code = main(["export", "--from-keras", str(tmp_path / "model.keras"), "--out", str(tmp_path / "out")])

    # THEN the export stops with one line that says what to install, and writes nothing
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("amaas export: error: converting a TensorFlow model needs tensorflow and tf2onnx")
    assert err.rstrip().endswith("pip install 'amaas[tensorflow]'")
    assert not (tmp_path / "out").exists()
