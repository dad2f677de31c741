"""Segmentation as the export makes it: torchvision's ``lraspp_mobilenet_v3_large`` and
``deeplabv3_mobilenet_v3_large`` (or any of its segmentation models, or a user's module returning logits or
torchvision's ``{"out": logits}``); images with label maps; logits ``[N, classes, h, w]`` compared with torch
by the agreement of their masks; scored by mIoU and pixel accuracy.

The ONNX graph ends at torchvision's own output: logits upsampled to the input side in the graph
(``logits_stride`` 1); a user's module that ends lower is served with the stride it has.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from amaas.artifact.golden import GOLDEN_DIR, GoldenSample, write_golden
from amaas.artifact.manifest import Preprocessing, TensorSpec
from amaas.artifact.model import Model
from amaas.artifact.tasks.segmentation import (
    IGNORE_INDEX,
    SegmentationConfig,
    confusion,
    dominant,
    label_maps,
    mask_png,
    masks,
    miou_pixel_accuracy,
    overlay,
)
from amaas.errors import ManifestError
from amaas_export.config import Training
from amaas_export.data import Dataset, ImageSet
from amaas_export.data import masks as mask_data
from amaas_export.errors import ConfigError, GateError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from amaas_export.models import Pretrained

EVAL_BATCH = 32
# Pixels whose class torch and ONNX Runtime may disagree on: float32 differences flip near-ties only.
MIN_AGREEMENT = 0.999
PREVIEW_IMAGES = 4
PREVIEW_SIDE = 256
GOLDEN_IMAGES = 4
# A new deployment's masks of the golden images must match the export's on this fraction of pixels: INT8
# kernels differ slightly between CPUs, which moves only pixels at class boundaries.
GOLDEN_AGREEMENT = 0.98
# The served graph's output when it ends at the label map (``finish_graph``).
CLASSES_OUTPUT = "classes"


class SegmentationExport:
    name = "segmentation"
    resize_mode = "stretch"
    output_names: tuple[str, ...] = ("logits",)
    parity_metric = "parity_mask_agreement"

    def check_architecture(self, arch: str) -> None:
        from amaas_export.models import custom_class

        if arch in _torchvision_segmenters():
            return
        if ":" in arch:
            custom_class(arch)
            return
        raise ConfigError(
            f"unknown segmentation architecture {arch!r}; use a torchvision segmentation model "
            f"({', '.join(_torchvision_segmenters())}) or your own class as package.module:ClassName"
        )

    def pretrained_info(self, arch: str, weights: str) -> Pretrained:
        from amaas_export.models import weights_info

        if arch not in _torchvision_segmenters():
            raise ConfigError(f"--weights {weights}: named weights exist only for torchvision models, not {arch!r}")
        return weights_info(arch, weights)

    def build_model(self, arch: str, num_classes: int, pretrained: Pretrained | None) -> nn.Module:
        import torchvision

        from amaas_export.models import custom_module, weights_errors
        from amaas_export.train_segmentation import SegmentationLogits

        if ":" in arch:
            return SegmentationLogits(custom_module(arch, num_classes))
        if pretrained is None:
            return SegmentationLogits(
                torchvision.models.get_model(arch, weights=None, weights_backbone=None, num_classes=num_classes)
            )
        with weights_errors(arch, pretrained):
            model = torchvision.models.get_model(arch, weights=pretrained.name)
        model.aux_classifier = None  # a training aid; the served graph never needs it
        if num_classes != len(pretrained.categories):
            _replace_classifiers(model, len(pretrained.categories), num_classes)
        return SegmentationLogits(model)

    def load_data(self, spec: str, geometry: Preprocessing, *, seed: int) -> Dataset:
        return mask_data.load(spec, geometry, seed=seed)

    def export_graph(self, model: nn.Module, example: torch.Tensor, path: Path, output_names: tuple[str, ...]) -> int:
        from amaas_export.onnx_export import export_fp32

        export_fp32(model, example, path, output_names)
        return -1

    def check_outputs(self, outputs: Sequence[np.ndarray], images: int, labels: tuple[str, ...]) -> None:
        shape = tuple(outputs[0].shape) if len(outputs) == 1 else ()
        if len(shape) != 4 or shape[:2] != (images, len(labels)) or shape[2] != shape[3]:
            raise ConfigError(
                f"the model returns {shape or f'{len(outputs)} outputs'} for {images} images; expected logits "
                f"({images}, {len(labels)}, h, w) with h == w"
            )

    def train(
        self,
        model: nn.Module,
        dataset: Dataset,
        prep: Preprocessing,
        training: Training,
        report: Callable[[str], None],
    ) -> None:
        from amaas_export.train_segmentation import train_segmentation

        train_segmentation(model, dataset.train, prep, training, report)

    def parity(self, path: Path, model: nn.Module, batch: np.ndarray, tolerance: float) -> float:
        """The fraction of pixels whose class ONNX Runtime and torch agree on (at least ``MIN_AGREEMENT``)."""
        import torch

        from amaas.artifact.session import create_session
        from amaas_export.onnx_export import INPUT_NAME

        session = create_session(path, threads=1)
        side = batch.shape[-1]
        agree = 0.0
        for i in range(0, len(batch), EVAL_BATCH):
            part = batch[i : i + EVAL_BATCH]
            onnx_masks = masks(session.run(None, {INPUT_NAME: part})[0], side)
            with torch.inference_mode():
                torch_masks = masks(model(torch.from_numpy(part)).numpy(), side)
            agree += float((onnx_masks == torch_masks).sum())
        agreement = float(agree / (len(batch) * side * side))
        if agreement < MIN_AGREEMENT:
            raise GateError(
                f"ONNX parity gate failed: ONNX Runtime and torch masks agree on {agreement:.4%} of the pixels of "
                f"{len(batch)} held-out images (at least {MIN_AGREEMENT:.1%} required); the exported graph does "
                "not compute what the model does. Check for data-dependent control flow or unsupported operators."
            )
        return agreement

    def output_specs(
        self, labels: tuple[str, ...], side: int, names: tuple[str, ...], task_config: Mapping[str, Any]
    ) -> tuple[TensorSpec, ...]:
        if task_config.get("output") == "classes":
            return (TensorSpec(names[0], (-1, side, side), "uint8"),)
        return (TensorSpec(names[0], (-1, len(labels), -1, -1), "float32"),)

    def finish_graph(self, path: Path, out: Path, task_config: Mapping[str, Any]) -> dict[str, Any] | None:
        """The served graph ends at the label map: ``ArgMax`` over the classes and a ``Cast`` to uint8, output
        ``classes`` ``[N, side, side]`` (the first of equal logits wins, as numpy's argmax). What the server
        does with logits is exactly that, in ONNX Runtime's kernel instead of a strided numpy reduction (~5x
        faster at 5 classes and 320 px), one byte per pixel to copy out instead of four per class. Logits at
        a lower stride stay as they are (the server upsamples them first). Returns the new ``task_config``."""
        if task_config.get("logits_stride", 1) != 1 or task_config.get("output", "logits") != "logits":
            return None
        from amaas_export.optimize import end_at_argmax

        end_at_argmax(path, out, CLASSES_OUTPUT)
        return {**task_config, "output": "classes"}

    def task_config(self, model: nn.Module | None, side: int, declared: Mapping[str, Any]) -> dict[str, Any]:
        """The logits' stride, measured on the torch model (declared for an imported ONNX file), and the
        background class (label 0, torchvision's convention, unless declared). What the served graph ends at
        (``output``) is the export's decision (``finish_graph``), not a declaration."""
        if "output" in declared:
            raise ConfigError("--task-config: 'output' is not declared; the export ends the served graph itself")
        config: dict[str, Any] = {"logits_stride": 1, "background": 0, **declared}
        try:
            SegmentationConfig.parse(config, classes=256)  # the background's range is checked with the labels
        except ManifestError as exc:
            raise ConfigError(f"--task-config: {exc.message}") from exc
        if model is not None:
            import torch

            model.eval()
            with torch.inference_mode():
                logits = model(torch.zeros(1, 3, side, side))
            if side % logits.shape[-1]:
                raise ConfigError(f"the model's logits are {logits.shape[-1]} wide: not an integer stride of {side}")
            config["logits_stride"] = side // int(logits.shape[-1])
        return config

    def evaluate(self, model: Model, test: ImageSet) -> dict[str, float]:
        """mIoU and pixel accuracy, from a confusion matrix summed batch by batch (logits never held whole)."""
        manifest = model.manifest
        classes = len(manifest.labels)
        total = np.zeros((classes, classes), dtype=np.int64)
        for i in range(0, len(test), EVAL_BATCH):
            predicted = label_maps(model.predict_pixels(test.pixels[i : i + EVAL_BATCH])[0], manifest)
            total += confusion(predicted, test.labels[i : i + EVAL_BATCH], classes)
        return miou_pixel_accuracy(total)

    def golden(self, out_dir: Path, model: Model, held_out: ImageSet) -> list[GoldenSample]:
        """The first held-out images, with the served model's mask (a palette PNG beside each image), its
        dominant class and the fraction of the image that class covers."""
        import io

        from PIL import Image

        labels = model.manifest.labels
        background = model.manifest.task_config.get("background")
        (out_dir / GOLDEN_DIR).mkdir(exist_ok=True)
        samples = []
        for i in range(min(GOLDEN_IMAGES, len(held_out))):
            buffer = io.BytesIO()
            Image.fromarray(held_out.pixels[i]).save(buffer, "PNG")
            (answer,) = model.infer([buffer.getvalue()]).results
            counts = answer.pixel_counts(len(labels))
            index = dominant(counts, background)
            name = f"{GOLDEN_DIR}/{i}-{labels[index]}".replace(" ", "_")
            (out_dir / f"{name}.png").write_bytes(buffer.getvalue())
            (out_dir / f"{name}-mask.png").write_bytes(mask_png(answer.full_mask()))
            samples.append(
                GoldenSample(
                    file=f"{name}.png",
                    label=labels[index],
                    index=index,
                    score=round(float(counts[index] / counts.sum()), 6),
                    answer={"mask": f"{name}-mask.png", "min_agreement": GOLDEN_AGREEMENT},
                )
            )
        write_golden(out_dir, samples)
        return samples

    def preview(self, model: Model, test: ImageSet, path: Path) -> bool:
        """A grid of held-out images: the image, the truth and the served model's mask over it."""
        from PIL import Image

        count = min(PREVIEW_IMAGES, len(test))
        pixels = test.pixels[:count]
        predicted = label_maps(model.predict_pixels(pixels)[0], model.manifest)
        background = model.manifest.task_config.get("background")
        rows = []
        for pixels_one, truth, mask in zip(pixels, test.labels[:count], predicted, strict=True):
            image = Image.fromarray(pixels_one)
            shown_truth = np.where(truth == IGNORE_INDEX, 0, truth).astype(np.uint8)
            drawn = [overlay(image, shown_truth, background), overlay(image, mask, background)]
            rows.append(np.concatenate([pixels_one, *(np.asarray(d) for d in drawn)], 1))
        grid = Image.fromarray(np.concatenate(rows, 0))
        scale = max(1, PREVIEW_SIDE // pixels.shape[1])  # small models' images, enlarged to be seen
        grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST).save(path)
        return True


def _torchvision_segmenters() -> list[str]:
    import torchvision

    names: list[str] = torchvision.models.list_models(module=torchvision.models.segmentation)
    return names


def _replace_classifiers(model: nn.Module, old: int, new: int) -> None:
    """Swaps every final 1x1 convolution of the classifier that outputs the weights' ``old`` classes for a
    fresh one with ``new`` outputs (LR-ASPP has two, DeepLabV3 one)."""
    from torch import nn

    classifier = model.get_submodule("classifier")
    for name, module in list(classifier.named_modules()):
        if isinstance(module, nn.Conv2d) and module.out_channels == old:
            parent_name, _, attr = name.rpartition(".")
            parent = classifier.get_submodule(parent_name) if parent_name else classifier
            setattr(parent, attr, nn.Conv2d(module.in_channels, new, 1))


TASK = SegmentationExport()
