"""Detection as the export makes it: torchvision's ``ssdlite320_mobilenet_v3_large`` (raw heads in the graph,
decoding and NMS on the server) and ``fasterrcnn_mobilenet_v3_large_320_fpn`` (the whole detector in the graph,
batch 1); images with boxes (synthetic scenes, COCO, Pascal VOC); ONNX compared with torchvision's own eval
forward by matching boxes; scored by COCO mAP (pycocotools).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from amaas.artifact.golden import GOLDEN_DIR, GoldenSample, write_golden
from amaas.artifact.manifest import Preprocessing, TensorSpec
from amaas.artifact.model import Model
from amaas.artifact.tasks.detection import DetectionConfig, decode_boxes_layout, decode_ssd
from amaas.errors import ManifestError
from amaas_export.config import Training
from amaas_export.data import Dataset, ImageSet
from amaas_export.data import detection as box_data
from amaas_export.errors import ConfigError, GateError
from amaas_export.tasks.detection_metrics import coco_map

if TYPE_CHECKING:
    import torch
    from torch import nn

    from amaas_export.models import Pretrained

EVAL_BATCH = 32
# What the mAP is computed over: COCO's protocol keeps every detection down to a very low score
EVAL_SCORE_THRESHOLD = 0.01
EVAL_MAX_DETECTIONS = 100
# Parity: every detection of torchvision's own forward must be found by ONNX Runtime + numpy (same class,
# IoU at least this), except ones whose score sits within SCORE_MARGIN of the threshold (float noise flips them)
MIN_PARITY_IOU = 0.99
SCORE_MARGIN = 0.01
PREVIEW_IMAGES = 4
GOLDEN_IMAGES = 4
# A deployed version must find each golden box again this closely (INT8 kernels differ a little across CPUs)
GOLDEN_IOU = 0.9


class DetectionExport:
    name = "detection"
    resize_mode = "stretch"
    output_names: tuple[str, ...] = ("boxes", "logits")
    parity_metric = "parity_min_iou"

    def check_architecture(self, arch: str) -> None:
        from amaas_export.tasks.detection_models import ARCHS

        if arch not in ARCHS:
            raise ConfigError(f"unknown detection architecture {arch!r}; use one of {', '.join(ARCHS)}")

    def pretrained_info(self, arch: str, weights: str) -> Pretrained:
        """torchvision's detection weights (COCO_V1): their categories; the input side the architecture is
        named for; the normalisation its transform applies (SSD's [-1, 1], ImageNet's statistics for R-CNNs),
        which the manifest's preprocessing takes over."""
        import torchvision

        from amaas_export.models import Pretrained
        from amaas_export.tasks.detection_models import layout

        self.check_architecture(arch)
        enum = torchvision.models.get_model_weights(arch)
        try:
            chosen = enum[weights.rpartition(".")[2]]
        except KeyError:
            raise ConfigError(
                f"{arch} has no weights {weights!r}; available: {', '.join(w.name for w in enum)}"
            ) from None
        ssd = layout(arch) == "ssd"
        side = 320 if "320" in arch else 300 if "300" in arch else 512
        return Pretrained(
            name=f"{enum.__name__}.{chosen.name}",
            categories=tuple(chosen.meta["categories"]),
            resize=side,
            crop=side,
            mean=(0.5, 0.5, 0.5) if ssd else (0.485, 0.456, 0.406),
            std=(0.5, 0.5, 0.5) if ssd else (0.229, 0.224, 0.225),
            interpolation="bilinear",
        )

    def build_model(self, arch: str, num_classes: int, pretrained: Pretrained | None) -> nn.Module:
        from amaas_export.tasks.detection_models import build_model

        return build_model(arch, num_classes, pretrained)

    def load_data(self, spec: str, geometry: Preprocessing, *, seed: int) -> Dataset:
        return box_data.load(spec, geometry, seed=seed)

    def export_graph(self, model: nn.Module, example: torch.Tensor, path: Path, output_names: tuple[str, ...]) -> int:
        """SSD heads: the dynamo exporter with a dynamic batch. A whole detector (``BoxesGraph``): the
        TorchScript exporter at a batch of 1, the only form torchvision's NMS and proposal filtering export in."""
        from amaas_export.onnx_export import export_fp32
        from amaas_export.tasks.detection_models import SSDHeads, export_boxes_graph

        if isinstance(model, SSDHeads):
            export_fp32(model, example, path, output_names)
            return -1
        export_boxes_graph(model, example, path)  # type: ignore[arg-type]
        return 1

    def check_outputs(self, outputs: Sequence[np.ndarray], images: int, labels: tuple[str, ...]) -> None:
        shapes = [tuple(o.shape) for o in outputs]
        ssd = len(shapes) == 2 and shapes[0][::2] == (images, 4) and shapes[1][::2] == (images, len(labels))
        boxes = len(shapes) == 3 and shapes[0][0] == 1 and shapes[0][2] == 4 and shapes[1] == shapes[2] == shapes[0][:2]
        if not (ssd or boxes):
            raise ConfigError(
                f"the detector returns {shapes} for {images} images; expected SSD heads ({images}, A, 4) and "
                f"({images}, A, {len(labels)}), or padded boxes, scores and labels (1, D, 4), (1, D), (1, D)"
            )

    def train(
        self,
        model: nn.Module,
        dataset: Dataset,
        prep: Preprocessing,
        training: Training,
        report: Callable[[str], None],
    ) -> None:
        from amaas_export.tasks.detection_models import sized
        from amaas_export.tasks.detection_train import train_detector

        sized(model, prep.crop)
        train_detector(model.detector, dataset.train, prep, training, report)  # type: ignore[arg-type]

    def parity(self, path: Path, model: nn.Module, batch: np.ndarray, tolerance: float) -> float:
        """The lowest IoU between a box of torchvision's own eval forward (its transform, decoding and NMS) and
        the same-class box ONNX Runtime + the server's decoding find for it, over ``batch``.

        Raises:
            GateError: A detection torch makes is missing from ONNX's answer, or matched below ``MIN_PARITY_IOU``.
        """
        from amaas_export.tasks.detection_models import detection_config, reference_detections

        config = detection_config(model, batch.shape[-1], {})
        mine = _decode_all(_run(path, batch), config, batch.shape[-1], config.score_threshold, config.max_detections)
        theirs = reference_detections(model, batch, config)
        worst, missing = 1.0, 0
        for (boxes, _, labels), (t_boxes, t_scores, t_labels) in zip(mine, theirs, strict=True):
            for box, score, label in zip(t_boxes, t_scores, t_labels, strict=True):
                same = labels == label
                iou = _iou(box, boxes[same]).max(initial=0.0)
                if iou < MIN_PARITY_IOU and score > config.score_threshold + SCORE_MARGIN:
                    missing += 1
                if iou >= MIN_PARITY_IOU or score > config.score_threshold + SCORE_MARGIN:
                    worst = min(worst, float(iou))
        if missing:
            raise GateError(
                f"ONNX parity gate failed: {missing} detection(s) of torchvision's own forward on {len(batch)} "
                f"held-out images have no same-class ONNX Runtime box with IoU >= {MIN_PARITY_IOU} (worst {worst:.3f});"
                " the exported graph or the server's decoding does not compute what the model does."
            )
        return worst

    def output_specs(
        self, labels: tuple[str, ...], side: int, names: tuple[str, ...], task_config: Mapping[str, Any]
    ) -> tuple[TensorSpec, ...]:
        if len(names) == 2:  # SSD heads, anchors fixed by the side
            return (
                TensorSpec(names[0], (-1, -1, 4), "float32"),
                TensorSpec(names[1], (-1, -1, len(labels)), "float32"),
            )
        return (
            TensorSpec(names[0], (1, -1, 4), "float32"),
            TensorSpec(names[1], (1, -1), "float32"),
            TensorSpec(names[2], (1, -1), "int64"),
        )

    def finish_graph(self, path: Path, out: Path, task_config: Mapping[str, Any]) -> dict[str, Any] | None:
        return None

    def task_config(self, model: nn.Module | None, side: int, declared: Mapping[str, Any]) -> dict[str, Any]:
        """Thresholds and caps from the detector itself (IoU, candidates per class, box coder) and the default
        boxes measured on it at ``side``; the API defaults (score threshold 0.3, 100 detections) unless
        declared (``--task-config``)."""
        from amaas_export.tasks.detection_models import detection_config

        if model is None:  # an imported file: what the user declares
            try:
                return DetectionConfig.parse(declared).to_dict()
            except ManifestError as exc:
                raise ConfigError(f"--task-config: {exc.message}") from exc
        return detection_config(model, side, declared).to_dict()

    def evaluate(self, model: Model, test: ImageSet) -> dict[str, float]:
        """COCO mAP@0.5 and mAP@0.5:0.95 of the served model on held-out images."""
        detections = []
        for i in range(0, len(test), EVAL_BATCH):
            for answer in model.postprocess(
                model.predict_pixels(test.pixels[i : i + EVAL_BATCH]),
                score_threshold=EVAL_SCORE_THRESHOLD,
                max_detections=EVAL_MAX_DETECTIONS,
            ):
                detections.append(
                    (
                        np.asarray([d.box for d in answer], np.float32).reshape(-1, 4),
                        np.asarray([d.score for d in answer], np.float32),
                        np.asarray([d.index for d in answer], np.int64),
                    )
                )
        return coco_map(detections, box_data.unpack(test.labels))

    def golden(self, out_dir: Path, model: Model, held_out: ImageSet) -> list[GoldenSample]:
        """The first held-out images on which the served model finds something, with its boxes: the pre-traffic
        check wants each box back, same class, at IoU >= ``GOLDEN_IOU`` and a score within the tolerance."""
        import io

        from PIL import Image

        labels = model.manifest.labels
        (out_dir / GOLDEN_DIR).mkdir(exist_ok=True)
        samples: list[GoldenSample] = []
        for pixels in held_out.pixels:
            if len(samples) == GOLDEN_IMAGES:
                break
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "PNG")
            (found,) = model.infer([buffer.getvalue()]).results
            if not found:
                continue
            best = found[0]
            name = f"{GOLDEN_DIR}/{len(samples)}-{labels[best.index]}".replace(" ", "_")
            (out_dir / f"{name}.png").write_bytes(buffer.getvalue())
            answer = {"detections": [d.to_json() for d in found], "min_iou": GOLDEN_IOU}
            samples.append(GoldenSample(f"{name}.png", best.label, best.index, round(best.score, 6), answer))
        write_golden(out_dir, samples)
        return samples

    def preview(self, model: Model, test: ImageSet, path: Path) -> bool:
        """Held-out images side by side: the true boxes, and the served model's at its default threshold."""
        from amaas_export.tasks.detection_models import draw_boxes

        count = min(PREVIEW_IMAGES, len(test))
        answers = model.postprocess(model.predict_pixels(test.pixels[:count]))
        labels = model.manifest.labels
        draw_boxes(test.pixels[:count], box_data.unpack(test.labels[:count]), answers, labels, path)
        return True


def _run(path: Path, batch: np.ndarray) -> list[np.ndarray]:
    from amaas.artifact.session import create_session

    session = create_session(path, threads=1)
    name = session.get_inputs()[0].name
    parts = [session.run(None, {name: batch[i : i + 1]}) for i in range(len(batch))]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def _decode_all(
    outputs: list[np.ndarray], config: DetectionConfig, side: int, threshold: float, limit: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    if config.layout == "ssd":
        return [
            decode_ssd(r, c, config, side, score_threshold=threshold, max_detections=limit)
            for r, c in zip(outputs[0], outputs[1], strict=True)
        ]
    return [
        decode_boxes_layout(b, s, lab, score_threshold=threshold, max_detections=limit)
        for b, s, lab in zip(*outputs, strict=True)
    ]


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = width * height
    union = (box[2] - box[0]) * (box[3] - box[1]) + (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return np.asarray(inter / np.maximum(union - inter, 1e-9))


TASK = DetectionExport()
