"""Stage 3 (``--prune``): structured pruning of the float model, fine-tuned, gated on the top-1 it costs."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from amaas.artifact.preprocessing import model_input
from amaas_export.config import ExportConfig
from amaas_export.gates import check_prune_drop
from amaas_export.stages.common import Log, Prepared, Stage
from amaas_export.stages.source import export_stage


@dataclass(frozen=True)
class Pruned:
    """Attributes:
    stage: The pruned, fine-tuned ONNX file (``pruned``).
    drop: Its top-1 drop against the unpruned stage, in points (gated by ``--max-prune-drop``).
    """

    stage: Stage
    drop: float


def pruned(config: ExportConfig, prepared: Prepared, parent: Stage, work: Path, log: Log) -> Pruned:
    import torch

    from amaas_export.prune import prune_channels
    from amaas_export.train import train

    assert parent.model is not None, "pruning needs the torch model"
    model = copy.deepcopy(parent.model)
    example = torch.from_numpy(model_input(prepared.dataset.test.pixels[:2], prepared.prep, parent.spec))
    prune_channels(model, example, config.prune)
    if config.freeze_backbone:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log(f"freeze: backbone still frozen after pruning, {trainable} trainable parameters in the head")
    if config.finetune_epochs:
        log(f"prune: {config.prune:.0%} of channels removed; fine-tuning {config.finetune_epochs} epochs")
        train(
            model,
            prepared.dataset.train,
            prepared.dataset.test,
            prepared.prep,
            epochs=config.finetune_epochs,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate / 2,
            seed=config.seed + 1,
            report=lambda epoch: log(f"  {epoch}"),
        )
    stage, _ = export_stage(config, prepared, "pruned", model, work, log)
    drop = check_prune_drop(parent.score, stage.score, config.max_prune_drop)
    log(f"gate: pruned top-1 drop {drop:+.2f} points <= {config.max_prune_drop:.2f}: pass")
    return Pruned(stage, drop)
