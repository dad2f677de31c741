"""MODEL_CARD.md, rendered from the manifest so the card can never disagree with it."""

from __future__ import annotations

import shlex
from typing import Any

from amaas.manifest import PROVENANCE, Manifest


def render_card(manifest: Manifest) -> str:
    m: dict[str, Any] = dict(manifest.metrics)
    fp32, int8 = m["fp32"], m["int8"]
    details = manifest.details
    data, training, quant = details["data"], details["training"], details["quantization"]
    provenance = details[PROVENANCE]
    settings = provenance["export"]
    prep = manifest.preprocessing
    synthetic = data["kind"] == "synthetic"
    lines = [
        f"# Model card: {manifest.name} (version {manifest.version})",
        "",
        f"An image classifier over {len(manifest.labels)} classes, exported by `amaas export` on "
        f"{details['created_at']} and quantized to INT8 for CPU serving on AWS Lambda.",
        "",
        "## Accuracy and size",
        "",
        f"Held-out top-1 on {data['held_out_images']} images never used for training or calibration.",
        "",
        "| Stage | Held-out top-1 | File size | Size vs FP32 |",
        "| --- | ---: | ---: | ---: |",
        f"| FP32 ONNX | {fp32['top1']:.2%} | {_size(fp32['bytes'])} | 1.00x |",
        f"| INT8 ONNX (served) | {int8['top1']:.2%} | {_size(int8['bytes'])} | {int8['bytes'] / fp32['bytes']:.2f}x |",
        "",
        f"INT8 vs FP32 top-1: {-m['top1_drop_points']:+.2f} points (gate: a drop of at most "
        f"{details['gates']['max_accuracy_drop_points']:.2f}). ONNX Runtime vs torch max |logit difference|: "
        f"{m['parity_max_abs_diff']:.1e}.",
        "",
        "## Model",
        "",
        f"- Architecture: `{manifest.architecture}`",
        f"- Input: `{manifest.input.name}`, {manifest.input.dtype} {list(manifest.input.shape)} "
        f"({manifest.input.layout}; -1 is the batch)",
        f"- Output: `{manifest.output.name}`, {manifest.output.dtype} logits {list(manifest.output.shape)}",
        f"- Labels: {', '.join(f'`{label}`' for label in manifest.labels)}",
        "",
        "## Preprocessing (applied by the server; send plain images)",
        "",
        f"Convert to {prep.channel_order}, resize the shorter side to {prep.resize} ({prep.interpolation}), "
        f"centre-crop {prep.crop}x{prep.crop}, scale to [0, 1], normalise with mean "
        f"{list(prep.mean)} and std {list(prep.std)}.",
        "",
        "## Training data",
        "",
        f"- Source: `{settings['data']}`, {data['train_images']} training images, {data['held_out_images']} held out",
        f"- Training: {training['epochs']} epochs"
        + (_weights(provenance["weights"]) if training["from_weights"] else " from scratch")
        + f", {training['seconds']:.0f} s on CPU",
        "",
        "## Quantization",
        "",
        f"Static INT8 with ONNX Runtime: {quant['format']} format, {quant['calibration_method']} calibration on "
        f"{quant['calibration_samples']} training images, activations {quant['activation_type']}, weights "
        f"{quant['weight_type']}{' per channel' if quant['per_channel'] else ''}." + _float_nodes(quant["float_nodes"]),
        "",
        "## Intended use and limitations",
        "",
        (
            "Built from the synthetic shapes dataset for demonstrations and tests. It knows ten drawn shapes on "
            "plain or gradient backgrounds and nothing else: every photograph will be forced into one of them."
            if synthetic
            else "Only as good as its training data: it assigns every input to one of its classes, including "
            "inputs unlike anything it was trained on. Check the held-out figures above against your own "
            "data before relying on it."
        ),
        "",
        "## Reproduce",
        "",
        "```",
        _command(settings),
        "```",
        "",
        "Library versions: " + ", ".join(f"{k} {v}" for k, v in sorted(details["libraries"].items())) + ".",
        "",
    ]
    return "\n".join(lines)


def _float_nodes(nodes: list[str]) -> str:
    if not nodes:
        return ""
    return f" Kept in float: {', '.join(f'`{n}`' for n in nodes)}, the layer producing the logits."


def _weights(weights: dict[str, str]) -> str:
    return f" from weights `{weights['path']}` (sha256 {weights['sha256'][:12]})"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def _command(config: dict[str, Any]) -> str:
    flags = {"arch": "--arch", "data": "--data", "epochs": "--epochs", "weights": "--weights"}
    flags |= {"seed": "--seed", "image_size": "--image-size", "max_accuracy_drop": "--max-accuracy-drop"}
    parts = ["amaas", "export"]
    for key, flag in flags.items():
        if config.get(key) is not None:
            parts += [flag, str(config[key])]
    return shlex.join(parts)
