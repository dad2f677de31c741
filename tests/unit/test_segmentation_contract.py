"""Segmentation's contract pieces on their own: masks mapped back to the original size, the metrics, the logits
upsampling the server does for low-stride graphs, the manifest's task section, and the data sources read from
tiny fixtures in their exact on-disk layouts (masks folder, Pascal VOC)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from PIL import Image

from amaas.artifact.manifest import Manifest
from amaas.artifact.session import create_session
from amaas.artifact.tasks.segmentation import (
    IGNORE_INDEX,
    Segmentation,
    confusion,
    masks,
    miou_pixel_accuracy,
    upsample_bilinear,
)
from amaas.errors import ManifestError
from amaas_export.data import masks as mask_data
from amaas_export.data import scenes
from amaas_export.errors import DataError
from amaas_export.optimize import end_at_argmax
from tests.helpers import encode_image

STRETCH = {"resize": 32, "crop": 32, "mean": [0, 0, 0], "std": [1, 1, 1], "resize_mode": "stretch"}


def segmenter_manifest(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema_version": 1,
        "model": {"name": "seg", "version": "1", "architecture": "lraspp_mobilenet_v3_large"},
        "task": "segmentation",
        "task_config": {"logits_stride": 1, "background": 0},
        "labels": ["background", "a", "b"],
        "input": {"name": "input", "shape": [-1, 3, 32, 32], "dtype": "float32", "layout": "NCHW"},
        "output": {"name": "logits", "shape": [-1, 3, -1, -1], "dtype": "float32"},
        "preprocessing": dict(STRETCH),
    }
    data.update(changes)
    return data


def test_a_segmenter_manifest_round_trips_with_its_task_section() -> None:
    manifest = Manifest.from_dict(segmenter_manifest())

    assert manifest.task_config == {"logits_stride": 1, "background": 0}
    assert Manifest.from_dict(manifest.to_dict()) == manifest
    classes = {"name": "classes", "shape": [-1, 32, 32], "dtype": "uint8"}
    ends_at_argmax = Manifest.from_dict(
        segmenter_manifest(task_config={"logits_stride": 1, "background": 0, "output": "classes"}, output=classes)
    )
    assert Manifest.from_dict(ends_at_argmax.to_dict()) == ends_at_argmax


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task_config": {"logits_stride": 0}}, "logits_stride"),
        ({"task_config": {"background": 7}}, "background"),
        ({"task_config": {"anchors": []}}, "unknown segmentation fields"),
        ({"output": {"name": "logits", "shape": [-1, 3], "dtype": "float32"}}, "[N, 3, h, w]"),
        ({"task_config": {"output": "probabilities"}}, "output must be one of logits, classes"),
        ({"task_config": {"output": "classes", "logits_stride": 4}}, "stride 1"),
        ({"task_config": {"output": "classes"}}, "uint8 label maps [N, 32, 32]; the manifest says float32"),
        (
            {
                "task_config": {"output": "classes"},
                "output": {"name": "classes", "shape": [-1, 3, 32, 32], "dtype": "uint8"},
            },
            "uint8 label maps [N, 32, 32]",
        ),
        ({"preprocessing": {**STRETCH, "resize_mode": "crop"}}, "stretch"),
        ({"preprocessing": {**STRETCH, "resize": 40}}, "resize == crop"),
        ({"task": "pose"}, "not one this runtime serves"),
    ],
)
def test_a_manifest_that_contradicts_its_task_is_refused_naming_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Manifest.from_dict(segmenter_manifest(**change))


def test_a_mask_maps_back_to_any_original_size_and_counts_without_building_it() -> None:
    mask = np.random.default_rng(0).integers(0, 4, (8, 8)).astype(np.uint8)
    for size in [(8, 8), (13, 5), (640, 480), (3, 1000)]:
        answer = Segmentation(mask, size)
        full = answer.full_mask()
        assert full.shape == (size[1], size[0])
        np.testing.assert_array_equal(answer.pixel_counts(4), np.bincount(full.ravel(), minlength=4))
    # nearest neighbour as Pillow does it
    expected = Image.frombytes("L", (8, 8), mask.tobytes()).resize((13, 5), Image.Resampling.NEAREST)
    np.testing.assert_array_equal(Segmentation(mask, (13, 5)).full_mask(), np.asarray(expected))


def logits_graph(path: Path, *, classes: int, side: int) -> None:
    """A graph whose logits ``[batch, classes, side, side]`` are its input."""
    shape = ["batch", classes, side, side]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["logits"])],
        "logits",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, shape)],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_a_graph_ended_at_argmax_answers_the_label_map_the_server_would_compute(tmp_path: Path) -> None:
    # GIVEN logits from a graph, with exact ties between classes in some pixels, for a dynamic batch
    logits = np.random.default_rng(2).integers(-2, 3, (3, 4, 6, 6)).astype(np.float32)
    logits_graph(tmp_path / "logits.onnx", classes=4, side=6)

    # WHEN the export ends it at the label map
    end_at_argmax(tmp_path / "logits.onnx", tmp_path / "classes.onnx", "classes")

    # THEN it answers uint8 label maps [N, H, W], the first of tied classes winning, as numpy's argmax does
    session = create_session(tmp_path / "classes.onnx", threads=1)
    assert [(o.name, o.type, o.shape) for o in session.get_outputs()] == [("classes", "tensor(uint8)", ["batch", 6, 6])]
    (classes,) = session.run(None, {"input": logits})
    assert classes.dtype == np.uint8
    np.testing.assert_array_equal(classes, masks(logits, 6))
    assert (np.sort(logits, axis=1)[:, -1] == np.sort(logits, axis=1)[:, -2]).any(), "the fixture has ties"


def test_more_classes_than_a_byte_holds_keep_their_logits(tmp_path: Path) -> None:
    logits_graph(tmp_path / "logits.onnx", classes=300, side=2)

    with pytest.raises(ValueError, match="300 classes do not fit a uint8 label map"):
        end_at_argmax(tmp_path / "logits.onnx", tmp_path / "classes.onnx", "classes")


def test_low_resolution_logits_are_upsampled_as_torch_does() -> None:
    logits = np.random.default_rng(1).standard_normal((2, 3, 5, 5)).astype(np.float32)

    ours = upsample_bilinear(logits, 40)

    theirs = F.interpolate(torch.from_numpy(logits), size=(40, 40), mode="bilinear", align_corners=False).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_miou_and_pixel_accuracy_by_hand() -> None:
    truth = np.array([[[0, 0, 1, 1], [0, 0, 1, IGNORE_INDEX]]], dtype=np.uint8)
    predicted = np.array([[[0, 1, 1, 1], [0, 0, 2, 0]]], dtype=np.uint8)

    scores = miou_pixel_accuracy(confusion(predicted, truth, 3))

    # class 0: 3 hits, union 4; class 1: 2 hits, union 4; class 2: predicted once, never true: IoU 0
    assert scores["miou"] == pytest.approx((3 / 4 + 2 / 4 + 0) / 3)
    assert scores["pixel_accuracy"] == pytest.approx(5 / 7), "the ignored pixel counts nowhere"


def test_synthetic_scenes_are_deterministic_and_their_masks_match_their_boxes() -> None:
    first, again = scenes.scene(7, split="test", size=64), scenes.scene(7, split="test", size=64)

    assert np.array_equal(first.image, again.image) and np.array_equal(first.mask, again.mask)
    assert not np.array_equal(first.image, scenes.scene(7, split="train", size=64).image)
    for box, label in zip(first.boxes, first.labels, strict=True):
        x0, y0, x1, y1 = (int(v) for v in box)
        assert (first.mask[y0:y1, x0:x1] == label).any()
        outside = first.mask.copy()
        outside[y0:y1, x0:x1] = 0
        assert not (outside == label).all()


def write_pair(images: Path, masks: Path, name: str, mask: np.ndarray, *, exif_orientation: int = 1) -> None:
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    height, width = mask.shape
    picture = Image.fromarray(np.repeat((mask * 60)[..., None], 3, axis=2).astype(np.uint8))
    if exif_orientation == 6:  # stored sideways; the mask is in the upright frame
        picture = picture.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = exif_orientation
    (images / f"{name}.jpg").write_bytes(encode_image(picture, "JPEG", quality=95, exif=exif))
    palette = Image.frombytes("P", (width, height), mask.astype(np.uint8).tobytes())
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (253 * 3))
    palette.save(masks / f"{name}.png")


def block_mask(value: int, height: int = 40, width: int = 60) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[10:30, 20:50] = value
    return mask


def test_a_masks_folder_is_read_with_its_labels_and_a_seeded_hold_out(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("background\nred\ngreen\n")
    for i in range(5):
        write_pair(tmp_path / "images", tmp_path / "masks", f"x{i}", block_mask(1 + i % 2))
    write_pair(tmp_path / "images", tmp_path / "masks", "turned", block_mask(2), exif_orientation=6)

    dataset = mask_data.load(f"masks:{tmp_path}", _geometry(32), seed=0)

    assert dataset.labels == ("background", "red", "green")
    assert len(dataset.train) + len(dataset.test) == 6 and len(dataset.test) == 1
    assert dataset.train.labels.shape[1:] == (32, 32) and dataset.train.pixels.shape[1:] == (32, 32, 3)
    every = np.concatenate([dataset.train.labels, dataset.test.labels])
    assert set(np.unique(every)) == {0, 1, 2}
    # image brightness follows the mask (value x 60): image and mask stay aligned, EXIF-rotated one included
    pixels = np.concatenate([dataset.train.pixels, dataset.test.pixels])[..., 0].astype(int)
    assert (np.abs(pixels - every * 60) < 40).mean() > 0.95


def test_masks_folder_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("background\nthing\n")
    write_pair(tmp_path / "images", tmp_path / "masks", "a", block_mask(1))
    write_pair(tmp_path / "images", tmp_path / "masks", "b", block_mask(5))
    with pytest.raises(DataError, match=r"b\.png has label value 5, but there are 2 classes"):
        mask_data.load(f"masks:{tmp_path}", _geometry(32), seed=0)
    (tmp_path / "masks" / "b.png").unlink()
    with pytest.raises(DataError, match=r"b\.jpg has no mask"):
        mask_data.load(f"masks:{tmp_path}", _geometry(32), seed=0)


def test_pascal_voc_is_read_from_its_own_layout_without_downloading(tmp_path: Path) -> None:
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    splits = voc / "ImageSets" / "Segmentation"
    splits.mkdir(parents=True)
    for split, names in (("train", ["2007_000001", "2007_000002"]), ("val", ["2007_000003"])):
        (splits / f"{split}.txt").write_text("\n".join(names) + "\n")
        for k, name in enumerate(names):
            mask = block_mask(15 if k else 12)
            mask[10, 20:50] = IGNORE_INDEX  # VOC's object borders
            write_pair(voc / "JPEGImages", voc / "SegmentationClass", name, mask)

    dataset = mask_data.load(f"voc:{voc}", _geometry(32), seed=0)

    assert dataset.labels[0] == "__background__" and dataset.labels[15] == "person" and len(dataset.labels) == 21
    assert (len(dataset.train), len(dataset.test)) == (2, 1)
    assert IGNORE_INDEX in dataset.train.labels and 15 in dataset.train.labels
    with pytest.raises(DataError, match="VOCdevkit/VOC2012"):
        mask_data.load(f"voc:{tmp_path}", _geometry(32), seed=0)


def _geometry(side: int) -> Any:
    from amaas.artifact.manifest import Preprocessing

    return Preprocessing(resize=side, crop=side, mean=(0, 0, 0), std=(1, 1, 1), resize_mode="stretch")
