"""Datasets for training, calibration and evaluation, all reduced to one shape: uint8 RGB pixels at the
model's input geometry, plus integer labels.

Sources, named by ``--data``:
    ``synthetic`` or ``synthetic:N``   the built-in shapes dataset (N training images, N/10 held out)
    ``imagefolder:PATH``               torchvision ``ImageFolder``; PATH/train + PATH/val (or test) if present,
                                       otherwise a stratified, seeded hold-out of every class
    ``cifar10:PATH``                   torchvision ``CIFAR10`` reading PATH/cifar-10-batches-py, never downloading

Images go through ``amaas.artifact.imaging`` (the same code serving runs), so training, calibration, evaluation
and serving all see identical pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from amaas.artifact.imaging import orientation, to_model
from amaas.artifact.manifest import Preprocessing
from amaas_export.data import synthetic
from amaas_export.errors import DataError

if TYPE_CHECKING:
    from torchvision.datasets import ImageFolder

SYNTHETIC_DEFAULT_SIZE = 40_000
HOLDOUT_FRACTION = 0.2


@dataclass(frozen=True)
class ImageSet:
    """Images at the model's input geometry.

    Attributes:
        pixels: uint8 array (N, H, W, 3), RGB.
        labels: int64 array (N,).
    """

    pixels: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, count: int, *, seed: int) -> ImageSet:
        """A seeded random subset of at most ``count`` images (all of them if there are fewer)."""
        if count >= len(self):
            return self
        index = np.sort(np.random.default_rng(seed).choice(len(self), count, replace=False))
        return ImageSet(self.pixels[index], self.labels[index])


@dataclass(frozen=True)
class Dataset:
    train: ImageSet
    test: ImageSet
    labels: tuple[str, ...]
    source: str


def load(spec: str, geometry: Preprocessing, *, seed: int) -> Dataset:
    """Loads the dataset ``spec`` names and brings every image to ``geometry`` (resize, crop).

    Raises:
        DataError: Unknown source, missing path, or files not in the format the source names.
    """
    kind, _, arg = spec.partition(":")
    if kind == "synthetic":
        return _synthetic(arg, geometry, seed)
    if kind in ("imagefolder", "cifar10") and not arg:
        raise DataError(f"--data {kind}:PATH needs a path")
    if kind == "imagefolder":
        return _imagefolder(Path(arg), geometry, seed)
    if kind == "cifar10":
        return _cifar10(Path(arg), geometry)
    raise DataError(f"unknown data source {spec!r}; use synthetic[:N], imagefolder:PATH or cifar10:PATH")


def with_labels(dataset: Dataset, labels: tuple[str, ...]) -> Dataset:
    """The same images with label indices renumbered to ``labels``' order (a model's output order).

    Raises:
        DataError: A class of the data is not among ``labels``.
    """
    if dataset.labels == labels:
        return dataset
    unknown = sorted(set(dataset.labels) - set(labels))
    if unknown:
        raise DataError(
            f"the data has classes the model does not know: {', '.join(unknown[:5])}"
            f"{' ...' if len(unknown) > 5 else ''}; the model's labels are e.g. {', '.join(labels[:5])}"
        )
    mapping = np.array([labels.index(name) for name in dataset.labels], dtype=np.int64)
    return Dataset(
        train=ImageSet(dataset.train.pixels, mapping[dataset.train.labels]),
        test=ImageSet(dataset.test.pixels, mapping[dataset.test.labels]),
        labels=labels,
        source=dataset.source,
    )


def mean_std(images: ImageSet) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and standard deviation of the pixels scaled to [0, 1], rounded for a readable manifest."""
    sample = images.take(10_000, seed=0).pixels.reshape(-1, 3).astype(np.float64) / 255.0
    mean, std = sample.mean(axis=0), sample.std(axis=0)
    return (
        (round(float(mean[0]), 4), round(float(mean[1]), 4), round(float(mean[2]), 4)),
        (round(float(std[0]), 4), round(float(std[1]), 4), round(float(std[2]), 4)),
    )


def synthetic_count(arg: str, default: int, minimum: int) -> int:
    """The N of ``synthetic:N`` (``default`` without one).

    Raises:
        DataError: Not an integer, or fewer than ``minimum`` images.
    """
    try:
        size = int(arg) if arg else default
    except ValueError:
        raise DataError(f"synthetic:N needs an integer image count, got {arg!r}") from None
    if size < minimum:
        raise DataError(f"synthetic:N needs at least {minimum} images, got {size}")
    return size


def _synthetic(arg: str, geometry: Preprocessing, seed: int) -> Dataset:
    size = synthetic_count(arg, SYNTHETIC_DEFAULT_SIZE, 10 * len(synthetic.LABELS))
    side = geometry.resize  # drawn natively at the model's resolution, never upscaled
    train = synthetic.generate(size, seed=seed, split="train", size=side)
    test = synthetic.generate(max(size // 10, 10 * len(synthetic.LABELS)), seed=seed, split="test", size=side)
    return Dataset(
        train=_fit(train.images, train.labels, geometry),
        test=_fit(test.images, test.labels, geometry),
        labels=synthetic.LABELS,
        source=f"synthetic:{size}",
    )


def _imagefolder(root: Path, geometry: Preprocessing, seed: int) -> Dataset:
    from torchvision.datasets import ImageFolder

    if not root.is_dir():
        raise DataError(f"imagefolder path {root} is not a directory")
    held_out = next((root / name for name in ("val", "test") if (root / name).is_dir()), None)
    try:
        if (root / "train").is_dir() and held_out is not None:
            train_folder, test_folder = ImageFolder(str(root / "train")), ImageFolder(str(held_out))
            if train_folder.classes != test_folder.classes:
                raise DataError(f"{root}/train and {held_out} have different class folders")
            train, test = _read_folder(train_folder, geometry), _read_folder(test_folder, geometry)
        else:
            train_folder = ImageFolder(str(root))
            everything = _read_folder(train_folder, geometry)
            train, test = _stratified_split(everything, HOLDOUT_FRACTION, seed)
    except FileNotFoundError as exc:
        raise DataError(f"{root} is not an ImageFolder tree (one sub-folder of images per class): {exc}") from exc
    except OSError as exc:
        raise DataError(f"cannot read {exc.filename or root}: {exc.strerror or exc}") from exc
    return Dataset(train=train, test=test, labels=tuple(train_folder.classes), source=f"imagefolder:{root}")


def _read_folder(folder: ImageFolder, geometry: Preprocessing) -> ImageSet:
    pixels = np.empty((len(folder.samples), geometry.crop, geometry.crop, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(folder.samples):
        try:
            with Image.open(path) as image:
                pixels[i] = to_model(image, geometry, orientation(image))
        except Image.DecompressionBombError as exc:
            raise DataError(f"{path} is too large to read safely (PIL: {exc}); remove or shrink it") from exc
        except Exception as exc:  # decoders fail on corrupt files with OSError, but also EOFError, struct.error, ...
            raise DataError(f"cannot read image {path}: {exc.__class__.__name__}: {exc}") from exc
    return ImageSet(pixels, np.asarray(folder.targets, dtype=np.int64))


def _stratified_split(images: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    rng = np.random.default_rng(seed)
    test_index: list[int] = []
    for label in np.unique(images.labels):
        members = np.flatnonzero(images.labels == label)
        if len(members) < 2:
            raise DataError(f"class index {label} has {len(members)} image(s); each class needs at least 2")
        count = max(1, round(len(members) * fraction))
        test_index.extend(rng.choice(members, count, replace=False).tolist())
    is_test = np.zeros(len(images), dtype=bool)
    is_test[test_index] = True
    return (
        ImageSet(images.pixels[~is_test], images.labels[~is_test]),
        ImageSet(images.pixels[is_test], images.labels[is_test]),
    )


def _cifar10(root: Path, geometry: Preprocessing) -> Dataset:
    from torchvision.datasets import CIFAR10

    try:
        train, test = (
            CIFAR10(str(root), train=True, download=False),
            CIFAR10(str(root), train=False, download=False),
        )
    except RuntimeError as exc:
        raise DataError(
            f"no CIFAR-10 at {root}: expected {root}/cifar-10-batches-py with the python batches "
            "(data_batch_1..5, test_batch, batches.meta) from https://www.cs.toronto.edu/~kriz/cifar.html"
        ) from exc
    return Dataset(
        train=_fit(train.data, np.asarray(train.targets), geometry),
        test=_fit(test.data, np.asarray(test.targets), geometry),
        labels=tuple(train.classes),
        source=f"cifar10:{root}",
    )


def _fit(pixels: np.ndarray, labels: np.ndarray, geometry: Preprocessing) -> ImageSet:
    """Brings same-sized uint8 images to ``geometry``; a no-op when they are already crop x crop."""
    labels = labels.astype(np.int64)
    if pixels.shape[1] == pixels.shape[2] == geometry.crop == geometry.resize:
        return ImageSet(pixels, labels)
    fitted = np.stack([to_model(Image.fromarray(p), geometry) for p in pixels])
    return ImageSet(fitted, labels)
