"""Detection data as the export reads it: synthetic scenes, COCO instances files and Pascal VOC folders (tiny
fixtures written in those exact on-disk formats), all brought to the model's square input with their boxes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from amaas.artifact.manifest import Preprocessing
from amaas_export.data import detection, scenes
from amaas_export.errors import DataError

SQUARE = Preprocessing(resize=64, crop=64, mean=(0.5,) * 3, std=(0.5,) * 3, resize_mode="stretch")


def test_scenes_are_deterministic_and_boxes_are_tight_around_the_drawn_shapes() -> None:
    a, b = scenes.scene(3, size=64), scenes.scene(3, size=64)

    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.image, scenes.scene(3, size=64, split="test").image)
    single = next(s for s in (scenes.scene(i, size=64) for i in range(50)) if len(s.labels) == 1)
    ys, xs = np.nonzero(single.mask == single.labels[0])
    np.testing.assert_allclose(single.boxes[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=1.0)


def test_synthetic_scenes_hold_several_objects_of_every_class() -> None:
    data = detection.load("synthetic:200", SQUARE, seed=0)
    objects = detection.unpack(data.train.labels)

    counts = np.array([len(labels) for _, labels in objects])
    assert data.train.pixels.shape == (200, 64, 64, 3) and len(data.test) == 100
    assert counts.min() >= 1 and counts.max() >= 3 and counts.mean() > 1.8
    classes = np.concatenate([labels for _, labels in objects])
    assert set(classes.tolist()) == set(range(1, len(scenes.LABELS)))


def write_jpeg(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG")


def test_coco_instances_become_boxes_in_the_model_frame(tmp_path: Path) -> None:
    # GIVEN a COCO tree: annotations/instances_{train,val}2017.json + {train,val}2017/*.jpg, category ids 3 and 7
    for split in ("train2017", "val2017"):
        write_jpeg(tmp_path / split / "000001.jpg", (128, 64), (200, 10, 10))
        document = {
            "images": [{"id": 1, "file_name": "000001.jpg", "width": 128, "height": 64}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 7, "bbox": [32, 16, 64, 32], "iscrowd": 0, "area": 2048},
                {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "iscrowd": 1, "area": 100},
            ],
            "categories": [{"id": 3, "name": "car"}, {"id": 7, "name": "train"}],
        }
        (tmp_path / "annotations").mkdir(exist_ok=True)
        (tmp_path / "annotations" / f"instances_{split}.json").write_text(json.dumps(document))

    data = detection.load(f"coco:{tmp_path}", SQUARE, seed=0)

    # THEN labels keep COCO's category order after background, the crowd region is gone, and the box is
    # stretched with the image (128x64 -> 64x64)
    assert data.labels == ("background", "car", "train")
    ((boxes, labels),) = detection.unpack(data.test.labels)
    assert labels.tolist() == [2]
    np.testing.assert_allclose(boxes, [[16, 16, 48, 48]])
    assert data.train.pixels.shape == (1, 64, 64, 3) and data.train.pixels[0, 32, 32, 0] > 150


VOC_XML = """<annotation><filename>{name}.jpg</filename><size><width>100</width><height>50</height><depth>3</depth>
</size><object><name>dog</name><difficult>0</difficult><bndbox><xmin>11</xmin><ymin>6</ymin><xmax>60</xmax>
<ymax>30</ymax></bndbox></object><object><name>cat</name><difficult>1</difficult><bndbox><xmin>1</xmin><ymin>1</ymin>
<xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>"""


def test_pascal_voc_folders_become_boxes_in_the_model_frame(tmp_path: Path) -> None:
    # GIVEN VOCdevkit/VOC2012 with JPEGImages, Annotations and ImageSets/Main/{train,val}.txt
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for split, name in (("train", "2012_000001"), ("val", "2012_000002")):
        write_jpeg(voc / "JPEGImages" / f"{name}.jpg", (100, 50), (0, 0, 200))
        (voc / "Annotations" / f"{name}.xml").write_text(VOC_XML.format(name=name))
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text(name + "\n")

    data = detection.load(f"voc:{voc}", SQUARE, seed=0)

    # THEN the difficult cat is left out and VOC's 1-based inclusive box becomes pixel edges, stretched
    assert data.labels == detection.VOC_LABELS
    ((boxes, labels),) = detection.unpack(data.train.labels)
    assert [data.labels[i] for i in labels] == ["dog"]
    np.testing.assert_allclose(boxes, [[10 * 0.64, 5 * 1.28, 60 * 0.64, 30 * 1.28]], rtol=1e-5)


@pytest.mark.parametrize(
    ("spec", "message"),
    [("coco:/nonexistent", "no COCO annotations"), ("voc:/tmp/VOC2012", "VOCdevkit"), ("pascal:x", "unknown")],
)
def test_bad_sources_say_what_is_expected(spec: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        detection.load(spec, SQUARE, seed=0)
