"""A real Keras model to ONNX: a small CNN trained here on scikit-learn's handwritten digits (8x8 grey, drawn at
32x32 RGB), saved as a ``.keras`` file and as a SavedModel, converted by ``convert_tensorflow`` and run by ONNX
Runtime against Keras on held-out images. Skipped without the ``tensorflow`` extra."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REASON = "needs the tensorflow extra: pip install amaas[tensorflow]"
tf = pytest.importorskip("tensorflow", reason=REASON)
pytest.importorskip("tf2onnx", reason=REASON)
keras: Any = pytest.importorskip("keras", reason=REASON)

from amaas.model import create_session  # noqa: E402
from amaas_export.errors import ConfigError  # noqa: E402
from amaas_export.tensorflow_source import NUMPY_COPY_WARNING, TensorflowModel, convert_tensorflow  # noqa: E402

# Keras saves and exports TF variables through an __array__ without numpy 2's copy keyword; numpy warns each time.
pytestmark = pytest.mark.filterwarnings(f"ignore:{NUMPY_COPY_WARNING}:DeprecationWarning")
SIDE = 32
CLASSES = 10


@dataclass(frozen=True)
class Trained:
    keras_file: Path
    saved_model: Path
    test_pixels: np.ndarray
    test_labels: np.ndarray
    keras_outputs: np.ndarray


def digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Held-out split of the 1,797 digits as uint8 NHWC RGB pixels 0..255, 4x nearest-neighbour upsampled."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    grey = np.kron((data.images / 16.0 * 255.0).round().astype(np.uint8), np.ones((4, 4), np.uint8))
    pixels = np.repeat(grey[..., None], 3, axis=-1)
    train_x, test_x, train_y, test_y = train_test_split(
        pixels, data.target, test_size=0.2, stratify=data.target, random_state=seed
    )
    return train_x, train_y, test_x, test_y


def small_cnn(*head: Any, batch_size: int | None = None, scaling: Any = None) -> Any:
    return keras.Sequential(
        [
            keras.Input((SIDE, SIDE, 3), batch_size=batch_size, name="pixels"),
            scaling if scaling is not None else keras.layers.Rescaling(1 / 255.0),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(CLASSES),
            *head,
        ]
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Logits model, Rescaling(1/255) in the graph so it takes pixels 0..255, ~90% held-out after ~5 s."""
    keras.utils.set_random_seed(0)
    train_x, train_y, test_x, test_y = digits()
    model = small_cnn()
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(train_x.astype(np.float32), train_y, epochs=10, batch_size=64, verbose=0)
    root = tmp_path_factory.mktemp("keras")
    model.save(root / "digits.keras")
    model.export(str(root / "saved_model"), verbose=False)
    outputs = np.asarray(model.predict(test_x.astype(np.float32), verbose=0))
    return Trained(root / "digits.keras", root / "saved_model", test_x, test_y, outputs)


def onnx_outputs(converted: TensorflowModel, pixels: np.ndarray) -> np.ndarray:
    session = create_session(converted.path, threads=1)
    return np.asarray(session.run(None, {converted.input.name: pixels.astype(np.float32)})[0])


@pytest.mark.parametrize("source", ["keras_file", "saved_model"])
def test_keras_model_runs_in_onnx_runtime_with_the_same_answers(trained: Trained, source: str, tmp_path: Path) -> None:
    # GIVEN a trained Keras digits model, as a .keras file or a SavedModel
    assert (trained.keras_outputs.argmax(1) == trained.test_labels).mean() > 0.8

    # WHEN it is converted
    converted = convert_tensorflow(getattr(trained, source), tmp_path / "model.onnx")

    # THEN ONNX Runtime takes the same NHWC pixels 0..255 and gives the same logits on every held-out image
    assert (converted.input.name, converted.input.shape) == ("pixels", (-1, SIDE, SIDE, 3))
    assert (converted.input.dtype, converted.input.layout) == ("float32", "NHWC")
    assert converted.output.shape == (-1, CLASSES) and not converted.softmax_output
    assert converted.scaling is not None and converted.scaling.takes_pixels
    assert converted.scaling.scale == pytest.approx((1 / 255,))
    outputs = onnx_outputs(converted, trained.test_pixels)
    assert np.abs(outputs - trained.keras_outputs).max() < 1e-4
    assert (outputs.argmax(1) == trained.keras_outputs.argmax(1)).all()
    # AND the batch axis is free: one image alone gets the answer it gets in the batch of 360
    assert np.allclose(onnx_outputs(converted, trained.test_pixels[:1]), outputs[:1], atol=1e-5)


def test_normalization_constants_stay_inside_the_graph(tmp_path: Path) -> None:
    # GIVEN a model that normalises with ImageNet's statistics in pixel units (tf2onnx's from_function would make
    # the mean and variance two extra inputs of the ONNX graph)
    mean, std = np.array([0.485, 0.456, 0.406]) * 255, np.array([0.229, 0.224, 0.225]) * 255
    keras.utils.set_random_seed(1)
    model = small_cnn(scaling=keras.layers.Normalization(mean=mean, variance=std**2))
    model.save(tmp_path / "normalized.keras")

    converted = convert_tensorflow(tmp_path / "normalized.keras", tmp_path / "model.onnx")

    # THEN the ONNX model takes the image alone and answers as Keras does
    assert converted.scaling is not None and converted.scaling.takes_pixels
    assert converted.scaling.scale == pytest.approx(tuple(1 / std), rel=1e-5)
    pixels = digits()[2][:16]
    expected = np.asarray(model.predict(pixels.astype(np.float32), verbose=0))
    assert np.abs(onnx_outputs(converted, pixels) - expected).max() < 1e-4


def test_a_softmax_head_is_reported(tmp_path: Path) -> None:
    model = small_cnn(keras.layers.Softmax())
    model.save(tmp_path / "probabilities.keras")
    converted = convert_tensorflow(tmp_path / "probabilities.keras", tmp_path / "model.onnx")
    assert converted.softmax_output
    assert onnx_outputs(converted, digits()[2][:4]).sum(axis=1) == pytest.approx(1.0, abs=1e-5)


def test_a_savedmodel_signature_with_a_fixed_batch_is_refused(tmp_path: Path) -> None:
    # GIVEN a SavedModel whose serving signature only takes batches of exactly one image
    class FixedBatch(tf.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = small_cnn()  # an attribute, so that the SavedModel tracks its variables

        @tf.function(input_signature=[tf.TensorSpec((1, SIDE, SIDE, 3), tf.float32, name="pixels")])
        def serve(self, pixels: Any) -> dict[str, Any]:
            return {"output_0": self.model(pixels)}

    module = FixedBatch()
    tf.saved_model.save(module, str(tmp_path / "one"), signatures={"serving_default": module.serve})

    # THEN the error says why and what to do
    with pytest.raises(ConfigError, match=r"fixes the batch at 1; export it with a free batch axis"):
        convert_tensorflow(tmp_path / "one", tmp_path / "model.onnx")


def test_a_keras_model_built_for_one_image_converts_with_a_free_batch(tmp_path: Path) -> None:
    small_cnn(keras.layers.Flatten(), batch_size=1).save(tmp_path / "one.keras")
    converted = convert_tensorflow(tmp_path / "one.keras", tmp_path / "model.onnx")
    assert converted.input.shape[0] == -1
    assert onnx_outputs(converted, digits()[2][:5]).shape == (5, CLASSES)


def test_a_corrupt_keras_file_fails_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="Keras cannot load") as caught:
        convert_tensorflow(tmp_path / "broken.keras", tmp_path / "model.onnx")
    assert "\n" not in str(caught.value)
