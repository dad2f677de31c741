"""torchvision detectors as the export builds, trains and exports them, and what their ONNX graphs contain.

``ssdlite320_mobilenet_v3_large`` (and any torchvision ``SSD``) exports as its raw heads (``SSDHeads``):
backbone + head on the normalised, already resized input, ending at box regressions ``[N, A, 4]`` and class
logits ``[N, A, classes]``, with a dynamic batch axis (dynamo exporter). Anchor decoding and NMS run in numpy
on the server (``amaas.artifact.tasks.detection``); the manifest carries the default-box description.

``fasterrcnn_mobilenet_v3_large_320_fpn`` (any torchvision ``FasterRCNN``) exports whole (``BoxesGraph``):
torchvision's transform, RPN, RoIAlign, box head and post-processing with NMS, ending at ``boxes [1, D, 4]``,
``scores [1, D]``, ``labels [1, D]`` padded with score -1. Its proposal selection is data-dependent per image, so
the graph only exports for a batch of ONE (TorchScript exporter): the manifest's input says ``[1, 3, S, S]`` and
the server runs a batch one image at a time.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torchvision.models import detection

from amaas.artifact.tasks.detection import Anchors, DetectionConfig
from amaas_export.errors import ConfigError

if TYPE_CHECKING:
    from amaas_export.models import Pretrained

SSD_ARCHS = ("ssdlite320_mobilenet_v3_large", "ssd300_vgg16")
RCNN_ARCHS = (
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
)
ARCHS = SSD_ARCHS + RCNN_ARCHS
SSD_OUTPUTS = ("boxes", "logits")
RCNN_OUTPUTS = ("boxes", "scores", "labels")


def layout(arch: str) -> str:
    return "ssd" if arch in SSD_ARCHS else "boxes"


def build_detector(arch: str, num_classes: int, weights: str | None = None) -> nn.Module:
    """A torchvision detector for ``num_classes`` (background included), with torchvision's weights if named.

    Raises:
        ConfigError: Not a detector this export knows.
    """
    if arch not in ARCHS:
        raise ConfigError(f"unknown detection architecture {arch!r}; use one of {', '.join(ARCHS)}")
    builder = getattr(detection, arch)
    options: dict[str, Any] = {"weights": weights, "weights_backbone": None}
    if weights is None:
        options["num_classes"] = num_classes
    model: nn.Module = builder(**options)
    if weights is None:
        # Short training from scratch: torchvision's detection BatchNorm momentum (0.03, tuned for long COCO
        # schedules) leaves the running statistics far behind the weights after a few hundred steps.
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 0.1
    return model


class SSDHeads(nn.Module):
    """The SSD without its transform and post-processing: normalised ``[N, 3, S, S]`` in, raw heads out."""

    output_names = SSD_OUTPUTS

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector: Any = detector

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = list(self.detector.backbone(images).values())
        out = self.detector.head(features)
        return out["bbox_regression"], out["cls_logits"]


class BoxesGraph(nn.Module):
    """A whole torchvision detector on ``[1, 3, S, S]`` pixels in [0, 1] (the graph normalises and resizes as
    torchvision does), its detections padded to ``slots`` rows so every output has a fixed shape."""

    output_names = RCNN_OUTPUTS

    def __init__(self, detector: nn.Module, slots: int) -> None:
        super().__init__()
        self.detector: Any = detector
        self.slots = slots
        # The RPN keeps its top proposals whatever their objectness. With torchvision's floor (0.05 for the 320
        # model) an image whose every proposal scores below it reaches the box head with none, and the exported
        # graph's Reshape of an empty [0, 4 * classes] tensor fails in ONNX Runtime when it runs without its
        # graph rewrites, as INT8 calibration runs it (seen on a training image of a trained detector).
        # Detections still have to pass the box head's own score floor.
        rpn: Any = detector.rpn
        rpn.score_thresh = 0.0

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        found = self.detector(list(images.unbind(0)))[0]
        pad = self.slots
        boxes = torch.cat([found["boxes"], torch.zeros(pad, 4)])[:pad]
        scores = torch.cat([found["scores"], torch.full((pad,), -1.0)])[:pad]
        labels = torch.cat([found["labels"], torch.zeros(pad, dtype=torch.int64)])[:pad]
        return boxes[None], scores[None], labels[None]


def ssd_anchors(detector: Any, side: int) -> Anchors:
    """The SSD's default boxes at ``side``, described as the manifest carries them."""
    generator = detector.anchor_generator
    with torch.no_grad():
        grids = [tuple(f.shape[-2:]) for f in detector.backbone(torch.zeros(1, 3, side, side)).values()]
    return Anchors(
        grid_sizes=tuple((int(h), int(w)) for h, w in grids),
        scales=tuple(float(s) for s in generator.scales),
        aspect_ratios=tuple(tuple(float(a) for a in r) for r in generator.aspect_ratios),
        steps=tuple(int(s) for s in generator.steps) if generator.steps else None,
        clip=bool(generator.clip),
    )


def export_boxes_graph(module: BoxesGraph, example: torch.Tensor, path: Path) -> None:
    """The whole detector at batch 1 through the TorchScript exporter (opset 17): torch.export cannot trace
    torchvision's NMS and proposal filtering, whose sizes depend on the data."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module.eval(),
                (example[:1],),
                str(path),
                input_names=["input"],
                output_names=list(RCNN_OUTPUTS),
                opset_version=17,
                dynamo=False,
            )
        except Exception as exc:
            raise ConfigError(f"torch.onnx.export could not export the detector: {exc.__class__.__name__}") from exc


def build_model(arch: str, num_classes: int, pretrained: Pretrained | None) -> nn.Module:
    """The export-ready module for ``arch``: ``SSDHeads`` or ``BoxesGraph`` around the torchvision detector
    (its ``detector`` attribute, which training uses), with torchvision's COCO weights when named. ``sized``
    sets the side the data has."""
    weights = None
    if pretrained is not None:
        weights = pretrained.name
        if num_classes != len(pretrained.categories):
            raise ConfigError(
                f"--weights {pretrained.name} detects {len(pretrained.categories)} classes (background included) "
                f"but the data has {num_classes}; a new detection head is not supported, train from scratch"
            )
    detector: Any = build_detector(arch, num_classes, weights)
    return (
        SSDHeads(detector)
        if layout(arch) == "ssd"
        else BoxesGraph(detector, slots=detector.roi_heads.detections_per_img)
    )


def sized(model: nn.Module, side: int) -> None:
    """Makes the detector's own transform leave ``side`` x ``side`` images normalised by the manifest's
    preprocessing as they are: the data and the server already stretch every image to the side and normalise
    it, so training, the torch reference and the graph all see the very tensor the server feeds."""
    detector: Any = model.detector
    transform = detector.transform
    transform.min_size, transform.max_size = (side,), side
    if getattr(transform, "fixed_size", None) is not None:
        transform.fixed_size = (side, side)
    transform.image_mean, transform.image_std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]


def detection_config(model: nn.Module, side: int, declared: Mapping[str, Any]) -> DetectionConfig:
    """The manifest's ``task_config`` read off the detector at ``side``, with the user's declared values.
    Fixes the detector's transform to ``side`` (``sized``): from here on it is exported and compared as served."""
    sized(model, side)
    detector: Any = model.detector
    if isinstance(model, SSDHeads):
        measured: dict[str, Any] = {
            "layout": "ssd",
            "iou_threshold": float(detector.nms_thresh),
            "candidates_per_class": int(detector.topk_candidates),
            "box_weights": tuple(float(w) for w in detector.box_coder.weights),
            "box_clip": float(detector.box_coder.bbox_xform_clip),
            "anchors": ssd_anchors(detector, side),
        }
    else:
        measured = {"layout": "boxes", "iou_threshold": float(detector.roi_heads.nms_thresh)}
        measured["max_detections"] = int(detector.roi_heads.detections_per_img)
    unknown = set(declared) - set(DetectionConfig.__dataclass_fields__) - {"anchors"}
    if unknown:
        raise ConfigError(f"--task-config has unknown detection fields {sorted(unknown)}")
    return DetectionConfig(**{**measured, **declared})


def reference_detections(
    model: nn.Module, batch: np.ndarray, config: DetectionConfig
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """torchvision's own answer for a normalised ``batch``: the SSD's eval forward (transform, decoding, NMS)
    with the manifest's thresholds, or the whole-graph module itself image by image."""
    detector: Any = model.detector
    side = batch.shape[-1]
    sized(model, side)
    found = []
    model.eval()
    with torch.inference_mode():
        if isinstance(model, SSDHeads):
            images = torch.from_numpy(batch)
            saved = (detector.score_thresh, detector.detections_per_img)
            detector.score_thresh, detector.detections_per_img = config.score_threshold, config.max_detections
            try:
                for d in detector(list(images.unbind(0))):
                    found.append((d["boxes"].numpy(), d["scores"].numpy(), d["labels"].numpy()))
            finally:
                detector.score_thresh, detector.detections_per_img = saved
        else:
            for i in range(len(batch)):
                boxes, scores, labels = (t[0].numpy() for t in model(torch.from_numpy(batch[i : i + 1])))
                keep = scores >= config.score_threshold
                found.append(
                    (
                        boxes[keep][: config.max_detections],
                        scores[keep][: config.max_detections],
                        labels[keep][: config.max_detections],
                    )
                )
    return found


def draw_boxes(
    pixels: np.ndarray,
    truth: Sequence[tuple[np.ndarray, np.ndarray]],
    answers: Sequence[Sequence[Any]],
    labels: Sequence[str],
    path: Path,
) -> None:
    """A grid: each held-out image with its true boxes (green), then with the model's (red, with class and
    score), upscaled so small inputs stay legible."""
    from PIL import Image, ImageDraw

    scale = max(1, 256 // pixels.shape[1])
    rows = []
    for image, (t_boxes, t_labels), found in zip(pixels, truth, answers, strict=True):
        tiles = []
        for boxes, names, colour in (
            ([b for b in t_boxes], [labels[i] for i in t_labels], (0, 200, 0)),
            ([d.box for d in found], [f"{d.label} {d.score:.2f}" for d in found], (230, 0, 0)),
        ):
            tile = Image.fromarray(image).resize(
                (image.shape[1] * scale, image.shape[0] * scale), Image.Resampling.NEAREST
            )
            draw = ImageDraw.Draw(tile)
            for box, name in zip(boxes, names, strict=True):
                corners = [float(v) * scale for v in box]
                draw.rectangle(corners, outline=colour, width=2)
                draw.text((corners[0] + 2, corners[1] + 1), name, fill=colour)
            tiles.append(np.asarray(tile))
        rows.append(np.concatenate(tiles, 1))
    Image.fromarray(np.concatenate(rows, 0)).save(path)
