"""MODEL_CARD.md, rendered from the manifest so the card can never disagree with it."""

from __future__ import annotations

import shlex
from typing import Any

from amaas.artifact.manifest import PIXEL_SCALE, PROVENANCE, Manifest
from amaas.artifact.tasks import task_for
from amaas_export.tasks import metric_title
from amaas_export.tasks.segmentation import MIN_AGREEMENT

# How the card names each task's model and its gated metric; a task without an entry reads generically.
KINDS = {
    "classification": "An image classifier",
    "segmentation": "A semantic segmentation model",
    "detection": "An object detector",
}
SYNTHETIC_USE = {
    "classification": "Built from the synthetic shapes dataset for demonstrations and tests. It knows ten drawn "
    "shapes on plain or gradient backgrounds and nothing else: every photograph will be forced into one of them.",
    "segmentation": "Built from the synthetic scenes for demonstrations and tests. It knows four drawn shapes on "
    "gradient backgrounds and nothing else: in a photograph it will find shapes, or only background.",
    "detection": "Built from the synthetic scenes for demonstrations and tests. It boxes four drawn shapes on "
    "gradient backgrounds and nothing else: in a photograph it finds shapes, or nothing.",
}


def render_card(manifest: Manifest, *, chart: str, config_file: str) -> str:
    details = dict(manifest.details)
    metrics: dict[str, Any] = dict(manifest.metrics)
    stages: list[dict[str, Any]] = details["stages"]
    data, training = details["data"], details["training"]
    settings = details[PROVENANCE]["export"]
    served = metrics["served"]
    key = task_for(manifest.task).metric
    metric = metric_title(key)
    lines = [
        f"# Model card: {manifest.name} (version {manifest.version})",
        "",
        f"{KINDS.get(manifest.task, f'A {manifest.task} model')} over {len(manifest.labels)} classes, exported by "
        f"`amaas export` on {details['created_at']}. It serves the **{served['stage']}** model: held-out {metric} "
        f"{served[key]:.2%}, {_size(served['bytes'])}.",
        "",
        "## Stages",
        "",
        f"Held-out {metric} on {data['held_out_images']} images never used for training or calibration. Latency is "
        "ONNX Runtime p50 for one image on one thread, all stages timed round-robin in the same run.",
        "",
        f"| Stage | Held-out {metric} | File size | Parameters | MACs | Latency p50 | Size vs FP32 | Latency vs FP32 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base = stages[0]
    for stage in stages:
        lines.append(
            f"| {stage['name']} | {stage[key]:.2%} | {_size(stage['bytes'])} | {stage['params'] / 1e6:.3f} M | "
            f"{stage['macs'] / 1e6:.1f} M | {stage['latency_ms']:.3f} ms | {stage['bytes'] / base['bytes']:.2f}x | "
            f"{stage['latency_ms'] / base['latency_ms']:.2f}x |"
        )
    lines += [
        "",
        f"![accuracy against latency per stage]({chart})",
        "",
        *_gates(metrics, details, key, "TensorFlow" if manifest.architecture in ("keras", "savedmodel") else "torch"),
        *_quantization(details, key),
    ]
    lines += [*_serving(details), *_model(manifest), *_data(settings, data, training, details)]
    lines += [
        "## Intended use and limitations",
        "",
        (
            SYNTHETIC_USE.get(manifest.task, SYNTHETIC_USE["classification"])
            if data["kind"] == "synthetic"
            else "Only as good as its training data: it assigns every input to one of its classes, including "
            "inputs unlike anything it was trained on. Check the held-out figures above against your own "
            "data before relying on it."
        ),
        "",
        "## Reproduce",
        "",
        "```",
        f"amaas export --config {config_file} --out <dir>",
        _command(settings),
        "```",
        "",
        "Library versions: " + ", ".join(f"{k} {v}" for k, v in sorted(details["libraries"].items()) if v) + ".",
        "",
    ]
    return "\n".join(lines)


def _gates(metrics: dict[str, Any], details: dict[str, Any], key: str, framework: str) -> list[str]:
    gates = details["gates"]
    lines = ["## Gates", ""]
    if metrics.get("parity_max_abs_diff") is not None:
        lines.append(
            f"- ONNX Runtime vs {framework}: max |logit difference| {metrics['parity_max_abs_diff']:.1e} "
            f"(limit {gates['parity_tolerance']:.0e} + 1e-05 x max|logit|)"
        )
    if metrics.get("parity_mask_agreement") is not None:
        lines.append(
            f"- ONNX Runtime vs torch: masks agree on {metrics['parity_mask_agreement']:.4%} of pixels "
            f"(at least {MIN_AGREEMENT:.1%} required)"
        )
    if metrics.get("parity_min_iou") is not None:
        lines.append(
            f"- ONNX Runtime + the server's decoding vs torchvision's own forward: every detection found again, "
            f"same class, lowest IoU {metrics['parity_min_iou']:.4f} (at least 0.99 required)"
        )
    if "prune_drop_points" in metrics:
        lines.append(
            f"- Pruned vs unpruned top-1: {_change(metrics['prune_drop_points'])} points "
            f"(a drop of at most {gates['max_prune_drop_points']:.2f} allowed)"
        )
    if f"{key}_drop_points" in metrics:
        lines.append(
            f"- INT8 vs its float model {metric_title(key)}: {_change(metrics[f'{key}_drop_points'])} points "
            f"(a drop of at most {gates['max_accuracy_drop_points']:.2f} allowed)"
        )
    lines += [f"- Served file {_size(metrics['served']['bytes'])} (budget {gates['max_size_mb']:.0f} MB)", ""]
    return lines


def _quantization(details: dict[str, Any], key: str) -> list[str]:
    quant = details["quantization"]
    if quant["mode"] == "none":
        return ["## Quantization", "", "Not quantized (`--quantize none`).", ""]
    lines = ["## Quantization", ""]
    if quant.get("chosen"):
        kept = ", ".join(f"`{n}`" for n in quant["float_nodes"])
        lines.append(
            f"Static INT8 with ONNX Runtime: {quant['format']} format, {quant['chosen']} "
            f"(calibration/granularity/activations+weights) on {quant['calibration_samples']} training images. "
            f"Kept in float: {kept} (the output layers: each output back to its last convolution or matrix "
            "product, plus any asked for)."
        )
    else:
        lines.append("**No INT8 candidate passed the accuracy gate: the float model ships.**")
    if quant.get("candidates"):
        title = f"Held-out {metric_title(key)}"
        lines += ["", f"| Candidate | {title} | Drop (points) | Latency p50 |", "| --- | ---: | ---: | ---: |"]
        for c in quant["candidates"]:
            if "error" in c:
                lines.append(f"| {c['settings']} | could not be calibrated: {c['error']} | | |")
                continue
            chosen = " (chosen)" if c["settings"] == quant.get("chosen") else ""
            lines.append(
                f"| {c['settings']}{chosen} | {c[key]:.2%} | {c['drop_points']:.2f} | {c['latency_ms']:.3f} ms |"
            )
    return [*lines, ""]


def _serving(details: dict[str, Any]) -> list[str]:
    optimization = details["optimization"]
    fold = optimization["fold_normalization"]
    lines = ["## Serving file", ""]
    if "float_input_ms" in fold:
        where = "folded into the graph (uint8 NHWC input)" if fold["applied"] else "done by the server"
        lines.append(
            f"- Normalisation {where}: "
            f"normalize + run {fold['float_input_ms']:.3f} ms vs uint8 input {fold['uint8_input_ms']:.3f} ms "
            f"(`--fold-normalization {fold['mode']}`)"
        )
    if "session_create_ms" in optimization:
        create = optimization["session_create_ms"]
        lines.append(
            f"- ONNX Runtime `{optimization['offline_level']}` graph optimizations baked in: session creation "
            f"{create['as_exported']:.1f} ms → {create['optimized']:.1f} ms"
        )
    return [*lines, ""]


def _model(manifest: Manifest) -> list[str]:
    prep = manifest.preprocessing
    labels = ", ".join(f"`{label}`" for label in manifest.labels[:40])
    more = f" and {len(manifest.labels) - 40} more" if len(manifest.labels) > 40 else ""
    return [
        "## Model",
        "",
        f"- Architecture: `{manifest.architecture}`",
        f"- Input: `{manifest.input.name}`, {manifest.input.dtype} {list(manifest.input.shape)} "
        f"({manifest.input.layout}; -1 is the batch)",
        f"- Output: `{manifest.output.name}`, {manifest.output.dtype} logits {list(manifest.output.shape)}",
        f"- Labels: {labels}{more}",
        "",
        "## Preprocessing (applied by the server; send plain images)",
        "",
        f"Convert to {prep.channel_order}, "
        + (
            f"resize the whole image to {prep.crop}x{prep.crop} ({prep.interpolation}, aspect ratio not kept), "
            if prep.resize_mode == "stretch"
            else f"resize the shorter side to {prep.resize} ({prep.interpolation}), "
            f"centre-crop {prep.crop}x{prep.crop}, "
        )
        + _arithmetic(manifest),
        "",
    ]


def _data(
    settings: dict[str, Any], data: dict[str, Any], training: dict[str, Any], details: dict[str, Any]
) -> list[str]:
    start = (
        f"from torchvision's `{training['pretrained']}`"
        if training.get("pretrained")
        else "from the given weights"
        if training["from_weights"]
        else "from scratch"
    )
    lines = [
        "## Training data",
        "",
        f"- Source: `{settings['data']}`, {data['train_images']} training images, {data['held_out_images']} held out",
        f"- Training: {_epochs(training['epochs'])} {start}"
        + (", backbone frozen" if training.get("frozen_backbone") else "")
        + f", {training['seconds']:.0f} s on CPU",
    ]
    if details.get("pruning"):
        pruning = details["pruning"]
        lines.append(
            f"- Pruning: {pruning['ratio']:.0%} of channels removed (torch-pruning, L2 magnitude), then "
            f"{_epochs(pruning['finetune_epochs'])} of fine-tuning"
        )
    return [*lines, ""]


def _change(drop: float) -> str:
    """A drop as a signed change, without printing -0.00."""
    return f"{-drop + 0.0:+.2f}"


def _arithmetic(manifest: Manifest) -> str:
    prep = manifest.preprocessing
    if manifest.input.dtype == "uint8":
        return "and feed the pixels 0..255 as they are (the model scales them itself)."
    scale = "1/255 (to [0, 1])" if prep.scale == PIXEL_SCALE else f"{prep.scale:g}"
    return f"multiply by {scale}, normalise with mean {list(prep.mean)} and std {list(prep.std)}."


def _epochs(n: int) -> str:
    return f"{n} epoch{'s' if n != 1 else ''}"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def _command(settings: dict[str, Any]) -> str:
    parts = ["amaas", "export"]
    defaults = {"task": "classification", "arch": "cifar-cnn", "data": "synthetic", "seed": 0, "quantize": "int8"}
    for key in (
        "task",
        "from_onnx",
        "from_keras",
        "from_savedmodel",
        "task_config",
        "labels_file",
        "arch",
        "data",
        "weights",
        "image_size",
        "epochs",
        "prune",
        "quantize",
        "seed",
    ):
        value = settings.get(key)
        if (
            value is None
            or (value == 0.0 and key == "prune")
            or (key in defaults and value == defaults[key] and key != "arch")
        ):
            continue
        parts += [f"--{key.replace('_', '-').replace('labels-file', 'labels')}", str(value)]
    return shlex.join(parts)
