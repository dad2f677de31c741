"""Semantic segmentation: a class for every pixel. The model sees the whole image stretched to its square input
(``resize_mode`` ``stretch``, so every original pixel has a place in it) and answers logits ``[N, classes, h, w]``
at ``1 / logits_stride`` of its input side; its answer is the class mask at the ORIGINAL image's size, its
quality the mean IoU and the pixel accuracy.

The mask is taken at the model's resolution and mapped to the original size by nearest neighbour. A graph the
export finished answers the mask itself (``task_config.output`` ``classes``: an in-graph ArgMax to uint8 label
indices, one byte per pixel to copy out of ONNX Runtime instead of four per class, ~5x faster than numpy's argmax across
channels); a graph ending at logits has them upsampled bilinearly to the input side when it ends lower, as
torchvision's own heads do, then argmax on the server. Either way,
per-class pixel counts come from that mapping without building the full-size mask, which only a PNG answer
materialises (``full_mask``), one byte per pixel.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from amaas.artifact.imaging import Decoded, Limits, decode_sized
from amaas.artifact.imaging.resample import nearest_indices
from amaas.artifact.manifest import Manifest
from amaas.errors import ManifestError

# Label value that marks pixels of the ground truth no metric counts (Pascal VOC's object borders).
IGNORE_INDEX = 255
# What a segmentation graph may end at (``SegmentationConfig.output``).
OUTPUTS = ("logits", "classes")


@dataclass(frozen=True)
class SegmentationConfig:
    """The manifest's ``task_config`` for segmentation.

    Attributes:
        logits_stride: The model's input side over its logits' side: 1 when the graph upsamples to the input
            (torchvision's heads), 8 or 16 when it ends at the backbone's resolution and the server upsamples.
        background: Label index of "nothing here" (drawn transparent in overlays), or ``None``.
        output: What the model's output is: ``logits`` ``[N, classes, h, w]`` (float) or ``classes``, the
            label map itself ``[N, side, side]`` (uint8, argmax in the graph; stride 1 only).
    """

    logits_stride: int = 1
    background: int | None = 0
    output: str = "logits"

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> SegmentationConfig:
        return cls.parse(manifest.task_config, len(manifest.labels))

    @classmethod
    def parse(cls, data: Mapping[str, Any], classes: int) -> SegmentationConfig:
        """Raises:
        ManifestError: An unknown field, or a value of the wrong type or range, named.
        """
        unknown = set(data) - {"logits_stride", "background", "output"}
        if unknown:
            raise ManifestError(f"manifest task_config has unknown segmentation fields {sorted(unknown)}")
        stride, background = data.get("logits_stride", 1), data.get("background", 0)
        output = data.get("output", "logits")
        if not isinstance(stride, int) or isinstance(stride, bool) or not 1 <= stride <= 64:
            raise ManifestError("manifest task_config.logits_stride must be an integer from 1 to 64")
        if background is not None and not (
            isinstance(background, int) and not isinstance(background, bool) and 0 <= background < classes
        ):
            raise ManifestError("manifest task_config.background must be a label index or null")
        if output not in OUTPUTS:
            raise ManifestError(f"manifest task_config.output must be one of {', '.join(OUTPUTS)}")
        if output == "classes" and stride != 1:
            raise ManifestError("manifest task_config.output 'classes' is a label map at the input side: stride 1")
        return cls(logits_stride=stride, background=background, output=output)

    def to_dict(self) -> dict[str, Any]:
        return {"logits_stride": self.logits_stride, "background": self.background, "output": self.output}


@dataclass(frozen=True)
class Segmentation:
    """One image's answer: its class mask at the model's resolution, and the original size it maps to.

    Attributes:
        mask: uint8 (side, side) label indices at the model's input resolution.
        size: (width, height) of the original, upright image.
    """

    mask: np.ndarray
    size: tuple[int, int]
    _counts: dict[int, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def _rows_cols(self) -> tuple[np.ndarray, np.ndarray]:
        width, height = self.size
        side_h, side_w = self.mask.shape
        return nearest_indices(side_h, height, 0, height), nearest_indices(side_w, width, 0, width)

    def full_mask(self) -> np.ndarray:
        """uint8 (height, width) label indices at the original size: width x height bytes."""
        rows, cols = self._rows_cols()
        return np.ascontiguousarray(self.mask[rows][:, cols])

    def pixel_counts(self, classes: int) -> np.ndarray:
        """How many pixels of the original each class covers (int64, one per class), without the full mask.
        Computed once per answer (the JSON body and the metrics both ask)."""
        cached: np.ndarray | None = self._counts.get(classes)
        if cached is None:
            cached = self._counts[classes] = self._pixel_counts(classes)
        return cached

    def _pixel_counts(self, classes: int) -> np.ndarray:
        rows, cols = self._rows_cols()
        row_weight = np.bincount(rows, minlength=self.mask.shape[0])
        col_weight = np.bincount(cols, minlength=self.mask.shape[1])
        weights = np.outer(row_weight, col_weight).ravel()
        return np.bincount(self.mask.ravel(), weights=weights, minlength=classes)[:classes].round().astype(np.int64)


def upsample_bilinear(logits: np.ndarray, side: int) -> np.ndarray:
    """(N, C, h, w) float logits to (N, C, side, side), as ``F.interpolate(mode="bilinear",
    align_corners=False)`` computes them (torchvision's segmentation heads)."""
    _, _, h, w = logits.shape
    if (h, w) == (side, side):
        return logits

    def axis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = np.clip((np.arange(side, dtype=np.float32) + 0.5) * (n / side) - 0.5, 0, None)
        low = np.minimum(position.astype(np.int64), n - 1)
        high = np.minimum(low + 1, n - 1)
        return low, high, (position - low).astype(np.float32)

    y0, y1, fy = axis(h)
    x0, x1, fx = axis(w)
    rows = logits[:, :, y0, :] * (1 - fy)[:, None] + logits[:, :, y1, :] * fy[:, None]
    return np.asarray(rows[..., x0] * (1 - fx) + rows[..., x1] * fx, dtype=np.float32)


def masks(logits: np.ndarray, side: int) -> np.ndarray:
    """uint8 (N, side, side) label maps from logits at any stride."""
    return np.asarray(upsample_bilinear(logits, side).argmax(axis=1), dtype=np.uint8)


def label_maps(output: np.ndarray, manifest: Manifest) -> np.ndarray:
    """uint8 (N, side, side) label maps from the model's output, whichever the graph ends at: its own label
    map (``output`` ``classes``) or logits."""
    if SegmentationConfig.from_manifest(manifest).output == "classes":
        return np.asarray(output, dtype=np.uint8)
    return masks(output, manifest.preprocessing.crop)


def confusion(predicted: np.ndarray, truth: np.ndarray, classes: int) -> np.ndarray:
    """(classes, classes) pixel counts, truth by row; pixels marked ``IGNORE_INDEX`` in ``truth`` left out."""
    keep = truth != IGNORE_INDEX
    index = truth[keep].astype(np.int64) * classes + predicted[keep].astype(np.int64)
    return np.bincount(index, minlength=classes * classes)[: classes * classes].reshape(classes, classes)


def miou_pixel_accuracy(matrix: np.ndarray) -> dict[str, float]:
    """Mean IoU over the classes present in the truth or the prediction, and the fraction of pixels right
    (the definitions of torchmetrics' ``JaccardIndex(average="macro")`` and VOC's evaluation)."""
    hits = np.diag(matrix).astype(np.float64)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - hits
    present = union > 0
    total = matrix.sum()
    return {
        "miou": float((hits[present] / union[present]).mean()) if present.any() else 0.0,
        "pixel_accuracy": float(hits.sum() / total) if total else 0.0,
    }


class SemanticSegmentation:
    """The segmentation task as the model holds it."""

    name: str = "segmentation"
    metric: str = "miou"

    def check(self, manifest: Manifest) -> None:
        """Logits ``[N, classes, h, w]`` or a uint8 label map ``[N, side, side]``, as ``task_config.output``
        says; a stretched input; and a valid ``task_config``."""
        shape = manifest.output.shape
        if SegmentationConfig.from_manifest(manifest).output == "classes":
            side = manifest.preprocessing.crop
            if manifest.output.dtype != "uint8" or len(shape) != 3 or any(d not in (-1, side) for d in shape[1:]):
                raise ManifestError(
                    f"a segmentation model whose output is 'classes' answers uint8 label maps [N, {side}, {side}]; "
                    f"the manifest says {manifest.output.dtype} {list(shape)}"
                )
        elif len(shape) != 4 or shape[1] not in (-1, len(manifest.labels)):
            raise ManifestError(
                f"a segmentation model outputs logits [N, {len(manifest.labels)}, h, w] (one channel per label); "
                f"the manifest says {list(shape)}"
            )
        if manifest.preprocessing.resize_mode != "stretch":
            raise ManifestError("a segmentation model needs preprocessing.resize_mode 'stretch' to map masks back")

    def pixels(self, data: bytes, manifest: Manifest, limits: Limits) -> Decoded:
        """The whole image stretched to the model's square input, and its original size."""
        return decode_sized(data, manifest.preprocessing, limits)

    def decode(
        self, outputs: Sequence[np.ndarray], manifest: Manifest, sizes: Sequence[tuple[int, int]], **options: Any
    ) -> list[Any]:
        """Each image's ``Segmentation``: its mask at the model's input side, mapped to its original size."""
        return [Segmentation(mask, size) for mask, size in zip(label_maps(outputs[0], manifest), sizes, strict=True)]

    def to_json(self, answer: Any, manifest: Manifest) -> dict[str, Any]:
        """The original's size and, per class present, its pixels and the fraction of the image they cover,
        largest first."""
        assert isinstance(answer, Segmentation)
        counts = answer.pixel_counts(len(manifest.labels))
        total = int(counts.sum())
        present = sorted(np.flatnonzero(counts), key=lambda i: (-counts[i], i))
        classes = [
            {
                "label": manifest.labels[i],
                "index": int(i),
                "pixels": int(counts[i]),
                "fraction": round(counts[i] / total, 6),
            }
            for i in present
        ]
        return {"size": list(answer.size), "classes": classes}


SEGMENTATION = SemanticSegmentation()


def palette() -> list[int]:
    """PASCAL VOC's colour map (bit-interleaved label index), flattened RGB for 256 entries: a palette PNG of
    label indices shows the classes in the colours every VOC tool uses."""
    colours = []
    for index in range(256):
        r = g = b = 0
        value = index
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        colours += [r, g, b]
    return colours


def overlay(image: Image.Image, mask: np.ndarray, background: int | None, alpha: float = 0.5) -> Image.Image:
    """The RGB ``image`` with every non-background pixel of ``mask`` (same height and width) tinted by its class
    colour. Done by Pillow in 8 bits: about 14 bytes per pixel at the peak, all told."""
    size = (mask.shape[1], mask.shape[0])
    labels = np.ascontiguousarray(mask, dtype=np.uint8)
    colours = Image.frombytes("P", size, labels.tobytes())
    colours.putpalette(palette())
    tinted = Image.blend(image, colours.convert("RGB"), alpha)
    if background is None:
        return tinted
    keep = Image.frombytes("L", size, np.where(labels == background, 0, 255).astype(np.uint8).tobytes())
    return Image.composite(tinted, image, keep)


def mask_png(mask: np.ndarray) -> bytes:
    """A (height, width) uint8 label map as a palette PNG: pixel values are label indices, shown in VOC colours."""
    image = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask, dtype=np.uint8).tobytes())
    image.putpalette(palette())
    return png(image)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)  # fast: masks are runs of a few values and compress anyway
    return buffer.getvalue()


def dominant(counts: np.ndarray, background: int | None) -> int:
    """The class covering most of the image, background only when nothing else is there."""
    ranked = counts.astype(np.float64)
    if background is not None and ranked.sum() > ranked[background]:
        ranked[background] = -1
    return int(ranked.argmax())
