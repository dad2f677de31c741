"""Stage 1: the data, at the model's input geometry, and the preprocessing every later stage and the server use."""

from __future__ import annotations

import time
from dataclasses import replace

from amaas.artifact.manifest import Preprocessing
from amaas_export import data as datasets
from amaas_export.config import ExportConfig
from amaas_export.errors import ConfigError
from amaas_export.sources import SourcePlan
from amaas_export.stages.common import Log, Prepared


def load(config: ExportConfig, plan: SourcePlan, log: Log) -> Prepared:
    """The dataset (labels from the source if it fixes them) and its preprocessing: the source's normalisation,
    or the training images' own mean and std."""
    started = time.perf_counter()
    geometry = Preprocessing(
        resize=plan.resize,
        crop=plan.crop,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        interpolation=plan.interpolation,
        channel_order=config.channel_order,
        scale=plan.scale,
        resize_mode=plan.task.resize_mode,
    )
    dataset = plan.task.load_data(config.data, geometry, seed=config.seed)
    if plan.labels is not None and (plan.onnx is not None or set(dataset.labels) <= set(plan.labels)):
        dataset = datasets.with_labels(dataset, plan.labels)
    elif plan.onnx is not None and plan.onnx.classes != len(dataset.labels):
        raise ConfigError(
            f"the model outputs {plan.onnx.classes} classes but the data has {len(dataset.labels)} "
            f"({', '.join(dataset.labels[:5])}{', ...' if len(dataset.labels) > 5 else ''}); "
            "pass --labels FILE with its class names in output order"
        )
    if config.num_classes is not None and config.num_classes != len(dataset.labels):
        raise ConfigError(f"--num-classes {config.num_classes} but the data has {len(dataset.labels)} classes")
    if plan.mean is not None and plan.std is not None:
        mean, std = plan.mean, plan.std
    else:
        mean, std = datasets.mean_std(dataset.train)
    log(
        f"data: {dataset.source}: {len(dataset.train)} training / {len(dataset.test)} held-out images, "
        f"{len(dataset.labels)} classes, {plan.crop}x{plan.crop} ({time.perf_counter() - started:.1f}s)"
    )
    return Prepared(dataset=dataset, prep=replace(geometry, mean=mean, std=std), task=plan.task)
