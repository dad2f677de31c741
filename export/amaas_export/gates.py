"""Measured gates between stages. A failed gate raises ``GateError`` with the figures and what to try."""

from __future__ import annotations

from amaas_export.errors import GateError


def check_accuracy_drop(fp32_top1: float, int8_top1: float, max_drop_points: float) -> float:
    """Fails if INT8 top-1 is more than ``max_drop_points`` percentage points below FP32.

    Returns:
        The measured drop in points (negative when INT8 scored higher).
    """
    drop = (fp32_top1 - int8_top1) * 100
    if drop > max_drop_points + 1e-9:
        raise GateError(
            f"INT8 accuracy gate failed: held-out top-1 fell from {fp32_top1:.2%} (FP32) to {int8_top1:.2%} (INT8), "
            f"a drop of {drop:.2f} points; the limit is {max_drop_points:.2f} (--max-accuracy-drop). "
            "No artifact was written. Try more --calibration-samples, more training, or a larger limit."
        )
    return drop
