"""The real dataset loaders (torchvision ImageFolder and CIFAR10) on tiny fixtures in the real on-disk formats."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from amaas.artifact.manifest import Preprocessing
from amaas_export import data
from amaas_export.errors import DataError

GEOMETRY = Preprocessing(resize=32, crop=32, mean=(0, 0, 0), std=(1, 1, 1))
COLOURS = {"apples": (220, 20, 20), "limes": (20, 220, 20), "plums": (60, 20, 160)}


def write_imagefolder(root: Path, per_class: int, sizes: tuple[tuple[int, int], ...] = ((48, 40),)) -> None:
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = Image.new("RGB", sizes[i % len(sizes)], colour)
            image.save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")


def test_imagefolder_without_split_holds_out_a_stratified_fifth(tmp_path: Path) -> None:
    write_imagefolder(tmp_path, per_class=10, sizes=((48, 40), (32, 90)))

    dataset = data.load(f"imagefolder:{tmp_path}", GEOMETRY, seed=0)

    assert dataset.labels == ("apples", "limes", "plums")
    assert len(dataset.train) == 24 and len(dataset.test) == 6
    assert np.bincount(dataset.test.labels).tolist() == [2, 2, 2]
    assert dataset.train.pixels.shape[1:] == (32, 32, 3)
    # the pixels are the class colour: images reached the arrays intact, in the right class
    plums = dataset.train.pixels[dataset.train.labels == 2]
    assert abs(int(plums[..., 2].mean()) - 160) < 8


def test_imagefolder_split_depends_on_the_seed_only(tmp_path: Path) -> None:
    write_imagefolder(tmp_path, per_class=10)

    a = data.load(f"imagefolder:{tmp_path}", GEOMETRY, seed=1)
    b = data.load(f"imagefolder:{tmp_path}", GEOMETRY, seed=1)

    np.testing.assert_array_equal(a.test.pixels, b.test.pixels)


def test_imagefolder_with_train_and_val_folders_uses_them(tmp_path: Path) -> None:
    write_imagefolder(tmp_path / "train", per_class=6)
    write_imagefolder(tmp_path / "val", per_class=2)

    dataset = data.load(f"imagefolder:{tmp_path}", GEOMETRY, seed=0)

    assert (len(dataset.train), len(dataset.test)) == (18, 6)


def test_imagefolder_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a directory"):
        data.load(f"imagefolder:{tmp_path / 'missing'}", GEOMETRY, seed=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not an ImageFolder tree"):
        data.load(f"imagefolder:{tmp_path / 'empty'}", GEOMETRY, seed=0)


def write_cifar10(root: Path, per_batch: int) -> tuple[np.ndarray, list[int]]:
    """The python version of CIFAR-10: pickled dicts of 3072-byte rows (R, G, B planes) and labels."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}, f)
    first_rows, first_labels = None, None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        with (folder / name).open("wb") as f:
            pickle.dump({"batch_label": name, "data": rows, "labels": labels, "filenames": []}, f)
        if first_rows is None:
            first_rows, first_labels = rows, labels
    assert first_rows is not None and first_labels is not None
    return first_rows, first_labels


def test_cifar10_reads_the_python_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The fixture cannot match the real files' md5 sums, which torchvision checks; check presence instead.
    import torchvision.datasets.cifar

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))
    rows, labels = write_cifar10(tmp_path, per_batch=8)

    dataset = data.load(f"cifar10:{tmp_path}", GEOMETRY, seed=0)

    assert dataset.labels[:3] == ("airplane", "automobile", "bird")
    assert (len(dataset.train), len(dataset.test)) == (40, 8)
    # row 0 of data_batch_1 is image 0: its red plane is the first 1024 bytes
    np.testing.assert_array_equal(dataset.train.pixels[0, :, :, 0], rows[0, :1024].reshape(32, 32))
    assert dataset.train.labels[:8].tolist() == labels


def test_cifar10_at_another_size_is_resized(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.cifar

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))
    write_cifar10(tmp_path, per_batch=2)

    dataset = data.load(f"cifar10:{tmp_path}", Preprocessing(64, 64, (0, 0, 0), (1, 1, 1)), seed=0)

    assert dataset.train.pixels.shape == (10, 64, 64, 3)


def test_cifar10_missing_says_what_is_expected_and_never_downloads(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        data.load(f"cifar10:{tmp_path}", GEOMETRY, seed=0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("imagenet:/x", "unknown data source"),
        ("synthetic:lots", "integer"),
        ("synthetic:5", "at least"),
        ("cifar10", "needs a path"),
    ],
)
def test_bad_data_specs_are_refused(spec: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        data.load(spec, GEOMETRY, seed=0)


def test_synthetic_holds_out_a_tenth() -> None:
    dataset = data.load("synthetic:1000", GEOMETRY, seed=0)

    assert (len(dataset.train), len(dataset.test)) == (1000, 100)
    assert dataset.labels[0] == "circle"


def test_mean_std_of_constant_images() -> None:
    pixels = np.full((4, 8, 8, 3), (255, 0, 51), dtype=np.uint8)

    mean, std = data.mean_std(data.ImageSet(pixels, np.zeros(4, dtype=np.int64)))

    assert mean == (1.0, 0.0, 0.2)
    assert std == (0.0, 0.0, 0.0)


def test_images_too_large_to_decode_safely_are_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a folder whose images exceed Pillow's decompression-bomb limit (lowered here so they can be small)
    write_imagefolder(tmp_path, per_class=3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 48 * 40 // 4)

    # THEN loading it is a clear data error naming the file, not a crash
    with pytest.raises(DataError, match=r"apples/0\.jpg is too large to read safely"):
        data.load(f"imagefolder:{tmp_path}", GEOMETRY, seed=0)
