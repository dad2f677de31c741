"""Segmentation datasets, reduced to one shape: uint8 RGB pixels at the model's input geometry (the whole image
stretched, ``resize_mode`` ``stretch``) and uint8 label maps of the same side (``ImageSet.labels``, N x side x
side; 255 marks pixels no metric counts, as in Pascal VOC).

Sources, named by ``--data``:
    ``synthetic`` or ``synthetic:N``   the built-in scenes (``amaas_export.data.scenes``): N training, N/10 held out
    ``masks:PATH``                     PATH/images/x.jpg (or .png) + PATH/masks/x.png, the mask's pixel values
                                       being label indices (a palette PNG or greyscale), PATH/labels.txt naming
                                       them one per line; PATH/train and PATH/val of that layout if present,
                                       otherwise a seeded 20% hold-out
    ``voc:PATH``                       torchvision ``VOCSegmentation`` (train / val) of PATH = .../VOCdevkit/VOC20xx,
                                       never downloading

Images go through ``amaas.artifact.imaging.to_model`` (EXIF orientation applied), the code serving runs;
masks are in the upright image's frame and are resized by nearest neighbour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from amaas.artifact.imaging import orientation, to_model
from amaas.artifact.imaging.resample import SWAPS
from amaas.artifact.manifest import Preprocessing
from amaas.artifact.tasks.segmentation import IGNORE_INDEX
from amaas_export.data import HOLDOUT_FRACTION, Dataset, ImageSet, synthetic_count
from amaas_export.data import scenes as scene_data
from amaas_export.errors import DataError

SYNTHETIC_DEFAULT_SIZE = 2_000
VOC_LABELS: tuple[str, ...] = (
    "__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def load(spec: str, geometry: Preprocessing, *, seed: int) -> Dataset:
    """Raises:
    DataError: Unknown source, missing path, or files not in the layout the source names.
    """
    kind, _, arg = spec.partition(":")
    if kind == "synthetic":
        return _synthetic(arg, geometry, seed)
    if kind in ("masks", "voc") and not arg:
        raise DataError(f"--data {kind}:PATH needs a path")
    if kind == "masks":
        return _masks_folder(Path(arg).expanduser(), geometry, seed)
    if kind == "voc":
        return _voc(Path(arg).expanduser(), geometry)
    raise DataError(f"unknown segmentation data source {spec!r}; use synthetic[:N], masks:PATH or voc:PATH")


def _synthetic(arg: str, geometry: Preprocessing, seed: int) -> Dataset:
    size = synthetic_count(arg, SYNTHETIC_DEFAULT_SIZE, 20)

    def split(name: str, count: int) -> ImageSet:
        drawn = scene_data.scenes(count, split=name, size=geometry.crop, seed=seed)
        return ImageSet(np.stack([s.image for s in drawn]), np.stack([s.mask for s in drawn]))

    return Dataset(split("train", size), split("test", max(size // 10, 10)), scene_data.LABELS, f"synthetic:{size}")


def _masks_folder(root: Path, geometry: Preprocessing, seed: int) -> Dataset:
    if not root.is_dir():
        raise DataError(f"masks path {root} is not a directory")
    labels = _labels(root / "labels.txt")
    if (root / "train").is_dir() and (root / "val").is_dir():
        train = _read_pairs(_pairs(root / "train"), geometry, len(labels))
        test = _read_pairs(_pairs(root / "val"), geometry, len(labels))
    else:
        pairs = _pairs(root)
        if len(pairs) < 2:
            raise DataError(f"{root} holds {len(pairs)} image/mask pair(s); at least 2 are needed to hold one out")
        order = np.random.default_rng(seed).permutation(len(pairs))
        held = max(1, round(len(pairs) * HOLDOUT_FRACTION))
        test = _read_pairs([pairs[i] for i in sorted(order[:held])], geometry, len(labels))
        train = _read_pairs([pairs[i] for i in sorted(order[held:])], geometry, len(labels))
    return Dataset(train, test, labels, f"masks:{root}")


def _labels(path: Path) -> tuple[str, ...]:
    try:
        labels = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except OSError as exc:
        raise DataError(f"cannot read {path} (one class name per line, index 0 first): {exc.strerror}") from exc
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise DataError(f"{path} needs at least two distinct class names, one per line")
    return labels


def _pairs(root: Path) -> list[tuple[Path, Path]]:
    images, masks = root / "images", root / "masks"
    if not images.is_dir() or not masks.is_dir():
        raise DataError(f"{root} is not a masks layout: expected {root}/images/ and {root}/masks/")
    pairs = []
    for image in sorted(p for p in images.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES):
        mask = masks / f"{image.stem}.png"
        if not mask.is_file():
            raise DataError(f"{image.name} has no mask: expected {mask}")
        pairs.append((image, mask))
    if not pairs:
        raise DataError(f"no images ({', '.join(_IMAGE_SUFFIXES)}) in {images}")
    return pairs


def _read_pairs(pairs: list[tuple[Path, Path]], geometry: Preprocessing, classes: int) -> ImageSet:
    side = geometry.crop
    pixels = np.empty((len(pairs), side, side, 3), dtype=np.uint8)
    labels = np.empty((len(pairs), side, side), dtype=np.uint8)
    for i, (image_path, mask_path) in enumerate(pairs):
        pixels[i], labels[i] = read_pair(image_path, mask_path, geometry)
        wrong = labels[i][(labels[i] >= classes) & (labels[i] != IGNORE_INDEX)]
        if wrong.size:
            raise DataError(
                f"{mask_path} has label value {int(wrong[0])}, but there are {classes} classes "
                f"(values 0..{classes - 1}, or {IGNORE_INDEX} for pixels to ignore)"
            )
    return ImageSet(pixels, labels)


def read_pair(image_path: Path, mask_path: Path, geometry: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """One image at the model's geometry and its mask, resized alike (the mask by nearest neighbour)."""
    try:
        with Image.open(image_path) as image:
            turn = orientation(image)
            size = image.size[::-1] if turn in SWAPS else image.size
            pixels = to_model(image, geometry, turn)
        with Image.open(mask_path) as mask:
            if mask.mode not in ("P", "L"):
                raise DataError(f"{mask_path} is a {mask.mode} image; a mask is a palette or greyscale PNG")
            if mask.size != size:
                raise DataError(f"{mask_path} is {mask.size[0]}x{mask.size[1]} but its image is {size[0]}x{size[1]}")
            side = geometry.crop
            labels = np.asarray(mask.resize((side, side), Image.Resampling.NEAREST), dtype=np.uint8)
    except DataError:
        raise
    except Exception as exc:  # corrupt files fail with OSError, but also EOFError, struct.error, ...
        raise DataError(f"cannot read {image_path.name} or its mask: {exc.__class__.__name__}: {exc}") from exc
    return pixels, labels


def _voc(path: Path, geometry: Preprocessing) -> Dataset:
    from torchvision.datasets import VOCSegmentation

    year = path.name.removeprefix("VOC")
    if path.parent.name != "VOCdevkit" or not year.isdigit():
        raise DataError(f"voc:PATH names the year's folder, such as ~/VOCdevkit/VOC2012; got {path}")
    try:
        train, val = (
            VOCSegmentation(str(path.parent.parent), year=year, image_set=split, download=False)
            for split in ("train", "val")
        )
    except (RuntimeError, OSError, ValueError) as exc:
        raise DataError(
            f"no Pascal VOC {year} segmentation at {path}: expected JPEGImages/, SegmentationClass/ and "
            f"ImageSets/Segmentation/train.txt and val.txt ({exc})"
        ) from exc

    def read(dataset: VOCSegmentation) -> ImageSet:
        pairs = [(Path(i), Path(t)) for i, t in zip(dataset.images, dataset.targets, strict=True)]
        return _read_pairs(pairs, geometry, len(VOC_LABELS))

    return Dataset(read(train), read(val), VOC_LABELS, f"voc:{path}")
