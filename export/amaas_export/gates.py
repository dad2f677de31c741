"""Measured gates between stages. A failed gate raises ``GateError`` with the figures and what to try."""

from __future__ import annotations

from amaas_export.errors import GateError


def check_accuracy_drop(
    fp32_top1: float, int8_top1: float, max_drop_points: float, source: str = "FP32", metric: str = "top-1"
) -> float:
    """Fails if INT8 ``metric`` (top-1, mIoU) is more than ``max_drop_points`` points below its float ``source``.

    Returns:
        The measured drop in points (negative when INT8 scored higher).
    """
    drop = (fp32_top1 - int8_top1) * 100
    if drop > max_drop_points + 1e-9:
        raise GateError(
            f"INT8 accuracy gate failed: held-out {metric} fell from {fp32_top1:.2%} ({source}) "
            f"to {int8_top1:.2%} (INT8), a drop of {drop:.2f} points; "
            f"the limit is {max_drop_points:.2f} (--max-accuracy-drop). "
            "No artifact was written. Try more --calibration-samples, more training, or a larger limit."
        )
    return drop


def check_prune_drop(unpruned_top1: float, pruned_top1: float, max_drop_points: float) -> float:
    """Fails if pruning (after its fine-tuning) cost more than ``max_drop_points`` points of top-1."""
    drop = (unpruned_top1 - pruned_top1) * 100
    if drop > max_drop_points + 1e-9:
        raise GateError(
            f"pruning gate failed: held-out top-1 fell from {unpruned_top1:.2%} to {pruned_top1:.2%} after pruning "
            f"and fine-tuning, a drop of {drop:.2f} points; the limit is {max_drop_points:.2f} (--max-prune-drop). "
            "No artifact was written. Prune less (--prune), fine-tune longer (--prune-epochs) or allow more."
        )
    return drop


def check_size(size_bytes: int, max_size_mb: float) -> None:
    """Fails if the served model file is larger than the budget."""
    if size_bytes > max_size_mb * 1e6:
        raise GateError(
            f"size gate failed: the served model is {size_bytes / 1e6:.2f} MB; the budget is {max_size_mb:g} MB "
            "(--max-size-mb). No artifact was written. Quantize (--quantize int8), prune (--prune), or raise "
            "the budget if the layers still fit Lambda's 250 MB."
        )
