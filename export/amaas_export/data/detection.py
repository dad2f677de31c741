"""Detection datasets: images stretched to the model's square input (``resize_mode`` ``stretch``) and, per image,
its objects' classes and boxes in that input's pixels.

Sources, named by ``--data`` with ``--task detection``:
    ``synthetic`` or ``synthetic:N``   scenes of drawn shapes (``amaas_export.data.scenes``), N training images
    ``coco:PATH``                      COCO instances: PATH/annotations/instances_{train,val}*.json with the
                                       images in PATH/{train,val}*/ (the file names the JSON gives)
    ``voc:PATH``                       Pascal VOC, PATH = .../VOCdevkit/VOC2012 (torchvision ``VOCDetection``,
                                       never downloading): ImageSets/Main/{train,val}.txt, Annotations, JPEGImages

Targets travel in ``ImageSet.labels`` as one float32 array ``[N, M, 5]``: per image up to M rows of
``(class, x0, y0, x1, y1)``, padded with class -1, so subsets, shuffles and batches index them like pixels.
Annotations are read in the stored image's frame (COCO and VOC boxes ignore EXIF orientation), so images are
too. Crowd regions (COCO ``iscrowd``) and VOC's ``difficult`` objects are left out, as their benchmarks do.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from amaas.artifact.imaging import to_model
from amaas.artifact.manifest import Preprocessing
from amaas_export.data import Dataset, ImageSet, scenes
from amaas_export.errors import DataError

SYNTHETIC_DEFAULT_SIZE = 2000
VOC_LABELS: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def pack(objects: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Per image (boxes [K, 4], labels [K]) to one padded float32 array [N, M, 5]."""
    rows = max([len(labels) for _, labels in objects] + [1])
    packed = np.zeros((len(objects), rows, 5), np.float32)
    packed[:, :, 0] = -1
    for i, (boxes, labels) in enumerate(objects):
        packed[i, : len(labels), 0] = labels
        packed[i, : len(labels), 1:] = np.asarray(boxes, np.float32).reshape(-1, 4)
    return packed


def unpack(targets: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The inverse of ``pack``: per image (boxes float32 [K, 4], labels int64 [K])."""
    return [(t[t[:, 0] >= 0, 1:].copy(), t[t[:, 0] >= 0, 0].astype(np.int64)) for t in targets]


def load(spec: str, geometry: Preprocessing, *, seed: int) -> Dataset:
    """Raises:
    DataError: Unknown source, missing path, or files not in the format the source names.
    """
    kind, _, arg = spec.partition(":")
    if kind == "synthetic":
        return _synthetic(arg, geometry.crop, seed)
    if kind in ("coco", "voc") and not arg:
        raise DataError(f"--data {kind}:PATH needs a path")
    if kind == "coco":
        return _coco(Path(arg).expanduser(), geometry)
    if kind == "voc":
        return _voc(Path(arg).expanduser(), geometry)
    raise DataError(f"unknown detection data source {spec!r}; use synthetic[:N], coco:PATH or voc:PATH")


def _synthetic(arg: str, side: int, seed: int) -> Dataset:
    try:
        count = int(arg) if arg else SYNTHETIC_DEFAULT_SIZE
    except ValueError:
        raise DataError(f"synthetic:N needs an integer image count, got {arg!r}") from None
    if count < 20:
        raise DataError(f"synthetic:N needs at least 20 images, got {count}")

    def split(name: str, n: int) -> ImageSet:
        drawn = scenes.scenes(n, seed=seed, split=name, size=side)
        return ImageSet(np.stack([s.image for s in drawn]), pack([(s.boxes, s.labels) for s in drawn]))

    return Dataset(
        train=split("train", count),
        test=split("test", max(count // 10, 100)),
        labels=scenes.LABELS,
        source=f"synthetic:{count}",
    )


def _read(path: Path, boxes: np.ndarray, geometry: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """One image stretched to the model's input, and its boxes scaled with it."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            pixels = to_model(image, geometry)
    except FileNotFoundError as exc:
        raise DataError(f"image {path} named by the annotations is missing") from exc
    except Exception as exc:  # decoders fail with OSError, but also EOFError, struct.error, ...
        raise DataError(f"cannot read image {path}: {exc.__class__.__name__}: {exc}") from exc
    side = geometry.crop
    scale = np.array([side / width, side / height] * 2, np.float32)
    return pixels, np.clip(boxes.reshape(-1, 4) * scale, 0, side)


def _image_set(items: list[tuple[Path, np.ndarray, np.ndarray]], geometry: Preprocessing) -> ImageSet:
    pixels, objects = [], []
    for path, boxes, labels in items:
        image, scaled = _read(path, boxes, geometry)
        pixels.append(image)
        objects.append((scaled, labels))
    side = geometry.crop
    return ImageSet(np.stack(pixels) if pixels else np.zeros((0, side, side, 3), np.uint8), pack(objects))


def _coco(root: Path, geometry: Preprocessing) -> Dataset:
    files = {p.stem.removeprefix("instances_"): p for p in sorted((root / "annotations").glob("instances_*.json"))}
    train = next((files[k] for k in files if k.startswith("train")), None)
    test = next((files[k] for k in files if k.startswith("val")), None)
    if train is None or test is None:
        raise DataError(
            f"no COCO annotations at {root}/annotations: expected instances_train*.json and instances_val*.json"
        )
    documents = {split: _json(path) for split, path in (("train", train), ("val", test))}
    categories = sorted(
        {(int(c["id"]), str(c["name"])) for doc in documents.values() for c in doc.get("categories", [])}
    )
    if not categories:
        raise DataError(f"{train} lists no categories")
    index = {cid: i + 1 for i, (cid, _) in enumerate(categories)}
    labels = ("background", *(name for _, name in categories))
    sets = []
    for split, path in (("train", train), ("val", test)):
        folder = root / path.stem.removeprefix("instances_")
        sets.append(_image_set(_coco_items(documents[split], folder, index, path), geometry))
    return Dataset(train=sets[0], test=sets[1], labels=labels, source=f"coco:{root}")


def _json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read COCO annotations {path}: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise DataError(f"{path} is not a COCO instances file (no 'images' list)")
    return document


def _coco_items(
    document: dict[str, Any], folder: Path, index: dict[int, int], path: Path
) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    objects: dict[int, list[tuple[list[float], int]]] = {}
    try:
        for ann in document.get("annotations", []):
            if ann.get("iscrowd", 0):
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            if w > 0 and h > 0:
                objects.setdefault(int(ann["image_id"]), []).append(
                    ([x, y, x + w, y + h], index[int(ann["category_id"])])
                )
        items = []
        for image in document["images"]:
            found = objects.get(int(image["id"]), [])
            boxes = np.asarray([b for b, _ in found], np.float32).reshape(-1, 4)
            items.append((folder / str(image["file_name"]), boxes, np.asarray([c for _, c in found], np.int64)))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{path} has an image or annotation without a valid id, file_name, bbox or category_id"
        ) from exc
    return items


def _voc(path: Path, geometry: Preprocessing) -> Dataset:
    from torchvision.datasets import VOCDetection

    year = path.name.removeprefix("VOC")
    if not path.name.startswith("VOC") or path.parent.name != "VOCdevkit":
        raise DataError(f"voc:PATH must name a VOCdevkit/VOC<year> folder, got {path}")
    sets = []
    for image_set in ("train", "val"):
        try:
            voc = VOCDetection(str(path.parent.parent), year=year, image_set=image_set, download=False)
        except (RuntimeError, ValueError) as exc:
            raise DataError(f"no Pascal VOC {year} {image_set} split at {path}: {exc}") from exc
        items = []
        for image_path, annotation_path in zip(voc.images, voc.annotations, strict=True):
            try:
                annotation = voc.parse_voc_xml(_xml(annotation_path))["annotation"]
                found = annotation.get("object", [])
                kept = [o for o in found if str(o.get("difficult", "0")) != "1"]
                boxes = [[float(o["bndbox"][k]) for k in ("xmin", "ymin", "xmax", "ymax")] for o in kept]
                labels = [VOC_LABELS.index(o["name"]) for o in kept]
            except (KeyError, ValueError, TypeError) as exc:
                raise DataError(f"{annotation_path} is not a VOC annotation with known classes: {exc}") from exc
            # VOC pixel indices start at 1 and are inclusive: [xmin - 1, xmax] is the box in pixel edges
            edges = np.asarray(boxes, np.float32).reshape(-1, 4) - np.array([1, 1, 0, 0], np.float32)
            items.append((Path(image_path), edges, np.asarray(labels, np.int64)))
        sets.append(_image_set(items, geometry))
    return Dataset(train=sets[0], test=sets[1], labels=VOC_LABELS, source=f"voc:{path}")


def _xml(path: str) -> Any:
    from xml.etree.ElementTree import parse

    try:
        return parse(path).getroot()  # noqa: S314
    except (OSError, SyntaxError) as exc:
        raise DataError(f"cannot read VOC annotation {path}: {exc}") from exc
