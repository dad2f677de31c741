"""A real Keras model through `amaas export`: a small CNN with a Rescaling layer, trained here on scikit-learn's
handwritten digits (8x8 grey, drawn at 32x32 RGB and written as an ImageFolder tree), saved as a ``.keras`` file
and as a SavedModel, converted by tf2onnx inside the export, quantized to a gated INT8 artifact, served behind
API Gateway on Lambda's path, and compared with Keras on the same held-out images. Needs the ``tensorflow``
extra, which ``make setup`` installs."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from mangum import Mangum
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# torchvision (the export's data stage) loads triton, which segfaults if TensorFlow was loaded before it; the
# export itself loads triton first (amaas_export.tensorflow_source), and this module, which trains with Keras, too.
import torchvision  # noqa: F401, I001
import keras
import tensorflow as tf

from amaas.api.app import create_app
from amaas.artifact.model import Model
from amaas.artifact.session import create_session
from amaas.settings import Settings
from amaas_export.errors import ConfigError
from amaas_export.tensorflow_source import NUMPY_COPY_WARNING, convert_tensorflow
from tests.functional.conftest import Export
from tests.gateway import api_gateway
from tests.helpers import encode_image

# Keras saves and exports TF variables through an __array__ without numpy 2's copy keyword; numpy warns each time.
pytestmark = pytest.mark.filterwarnings(f"ignore:{NUMPY_COPY_WARNING}:DeprecationWarning")
SIDE = 32
CLASSES = 10
MAX_IMAGES = 16  # the server's default per request


@dataclass(frozen=True)
class Digits:
    """The Keras model as a user leaves it, the data folder it was trained from, and its held-out answers."""

    keras_file: Path
    saved_model: Path
    folder: Path
    labels_file: Path
    test_pixels: np.ndarray
    test_labels: np.ndarray
    keras_top1: np.ndarray


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified 80/20 split of the 1,797 digits as uint8 NHWC RGB pixels 0..255, 4x nearest-neighbour upsampled."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    grey = np.kron((data.images / 16.0 * 255.0).round().astype(np.uint8), np.ones((4, 4), np.uint8))
    pixels = np.repeat(grey[..., None], 3, axis=-1)
    train_x, test_x, train_y, test_y = train_test_split(
        pixels, data.target, test_size=0.2, stratify=data.target, random_state=0
    )
    return train_x, train_y, test_x, test_y


def write_folder(root: Path, pixels: np.ndarray, labels: np.ndarray) -> None:
    for i, (image, label) in enumerate(zip(pixels, labels, strict=True)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / str(label) / f"{i}.png")


def small_cnn(*head: Any, scaling: Any = None) -> Any:
    return keras.Sequential(
        [
            keras.Input((SIDE, SIDE, 3), name="pixels"),
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
def trained(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    """Trained on the folder's train/ images as a Keras user would (Rescaling(1/255) in the model, so it takes
    pixels 0..255; a Softmax head, as Keras tutorials end theirs); the val/ images are held out from both."""
    keras.utils.set_random_seed(0)
    train_x, train_y, test_x, test_y = digits()
    root = tmp_path_factory.mktemp("keras")
    write_folder(root / "digits" / "train", train_x, train_y)
    write_folder(root / "digits" / "val", test_x, test_y)
    (root / "labels.txt").write_text("\n".join(str(i) for i in range(CLASSES)) + "\n")
    model = small_cnn(keras.layers.Softmax())
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=keras.losses.SparseCategoricalCrossentropy())
    model.fit(train_x.astype(np.float32), train_y, epochs=20, batch_size=32, verbose=0)
    model.save(root / "digits.keras")
    model.export(str(root / "saved_model"), verbose=False)
    answers = np.asarray(model.predict(test_x.astype(np.float32), verbose=0)).argmax(1)
    return Digits(
        root / "digits.keras", root / "saved_model", root / "digits", root / "labels.txt", test_x, test_y, answers
    )


def served_top1(model_dir: Path, pixels: np.ndarray) -> np.ndarray:
    """The served model's top class per image, asked through the real app behind API Gateway, 16 per request."""
    app = Mangum(create_app(Settings(model_dir=model_dir)), lifespan="off")
    answers: list[int] = []
    with api_gateway(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        for start in range(0, len(pixels), MAX_IMAGES):
            images = [encode_image(Image.fromarray(p)) for p in pixels[start : start + MAX_IMAGES]]
            body = {"images": [base64.b64encode(i).decode() for i in images]}
            response = client.post("/v1/classify", json=body, params={"top_k": 1})
            assert response.status_code == 200, response.text
            answers += [int(r["predictions"][0]["label"]) for r in response.json()["results"]]
    return np.array(answers)


def test_a_keras_model_becomes_a_gated_int8_artifact_that_answers_like_keras(
    trained: Digits, export: Export, capsys: pytest.CaptureFixture[str]
) -> None:
    # WHEN the .keras file is exported as the README's recipe says: no labels file, no preprocessing flags
    run = export("--from-keras", str(trained.keras_file), "--data", f"imagefolder:{trained.folder}")

    # THEN tf2onnx converted it, and the export read what the model takes from the converted graph
    assert run.code == 0, run.stderr
    assert "converted digits.keras with tf2onnx (opset 17)" in run.stdout
    assert "input pixels float32 NHWC: read from its shape [N, 32, 32, 3]" in run.stdout
    assert "its graph scales pixels 0..255 to 0.00..1.00 itself" in run.stdout
    assert "its final Softmax now passes logits through" in run.stdout
    manifest = run.manifest
    assert manifest.architecture == "keras" and manifest.name == "digits-imagefolder"
    assert manifest.labels == tuple(str(i) for i in range(CLASSES)), "the data's folder names, in Keras's order"
    assert (manifest.input.shape, manifest.input.layout) == ((-1, SIDE, SIDE, 3), "NHWC")
    prep = manifest.preprocessing
    assert (prep.scale, prep.mean, prep.std) == (1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), "pixels 0..255 as they are"
    # AND it went through the INT8 gate, and the served file is INT8
    assert manifest.metrics["served"]["stage"] == "int8"
    assert manifest.metrics["parity_max_abs_diff"] < 1e-4, "ONNX Runtime against TensorFlow"
    card = (run.out / "MODEL_CARD.md").read_text()
    assert "ONNX Runtime vs TensorFlow: max |logit difference|" in card
    assert "multiply by 1, normalise with mean [0.0, 0.0, 0.0]" in card
    assert manifest.metrics["top1_drop_points"] <= 1.0

    # AND served, it answers like Keras on the held-out images
    keras_accuracy = float((trained.keras_top1 == trained.test_labels).mean())
    served = served_top1(run.out, trained.test_pixels)
    agreement = float((served == trained.keras_top1).mean())
    assert agreement >= 0.99
    assert manifest.metrics["fp32"]["top1"] == pytest.approx(keras_accuracy, abs=1 / len(trained.test_labels))
    with capsys.disabled():
        print(
            f"\nkeras recipe: {len(served)} held-out digits; Keras top-1 {keras_accuracy:.4f}, artifact FP32 "
            f"{manifest.metrics['fp32']['top1']:.4f}, INT8 {manifest.metrics['int8']['top1']:.4f}, "
            f"served top-1 agreement with Keras {agreement:.4f}"
        )


def test_a_savedmodel_with_a_labels_file_through_the_same_gates(trained: Digits, export: Export) -> None:
    run = export(
        "--from-savedmodel", str(trained.saved_model), "--labels", str(trained.labels_file),
        "--data", f"imagefolder:{trained.folder}", "--calibration-samples", "128",
    )  # fmt: skip

    assert run.code == 0, run.stderr
    manifest = run.manifest
    assert (manifest.architecture, manifest.name) == ("savedmodel", "saved_model-imagefolder")
    assert [s["name"] for s in manifest.details["stages"]] == ["fp32", "int8"]
    answers = Model(run.out).infer([encode_image(Image.fromarray(p)) for p in trained.test_pixels[:16]], k=1)
    assert [int(r[0].label) for r in answers.results] == trained.keras_top1[:16].tolist()


def test_the_issue_recipe_an_onnx_file_from_keras_with_its_preprocessing_declared(
    trained: Digits, export: Export, tmp_path: Path
) -> None:
    # GIVEN the ONNX file a Keras user makes with tf2onnx, fed pixels 0..255 as declared by the flags
    converted = convert_tensorflow(trained.keras_file, tmp_path / "keras.onnx")
    run = export(
        "--from-onnx", str(converted.path), "--labels", str(trained.labels_file),
        "--data", f"imagefolder:{trained.folder}", "--mean", "0", "0", "0", "--std", "1", "1", "1", "--scale", "1",
        "--quantize", "int8", "--calibration-samples", "128",
    )  # fmt: skip

    # THEN calibration feeds it NHWC, as evaluation does (it used to die here with exit 3)
    assert run.code == 0, run.stderr
    assert run.manifest.metrics["int8"]["top1"] >= run.manifest.metrics["fp32"]["top1"] - 0.01


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
    got = create_session(converted.path, threads=1).run(None, {"pixels": pixels.astype(np.float32)})[0]
    assert np.abs(got - expected).max() < 1e-4


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


def test_a_corrupt_keras_file_fails_in_one_line(export: Export, tmp_path: Path) -> None:
    (tmp_path / "broken.keras").write_bytes(b"not a zip")

    run = export("--from-keras", str(tmp_path / "broken.keras"), "--data", "synthetic:100")

    assert run.code == 1
    assert "Keras cannot load" in run.stderr and run.stderr.count("\n") == 1
