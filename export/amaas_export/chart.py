"""The stage chart in the model card: held-out accuracy against latency, marker area proportional to size."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from amaas_export.measure import StageReport


def stage_chart(stages: Sequence[StageReport], path: Path, title: str, metric: str = "top-1") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    largest = max(stage.bytes for stage in stages)
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=100)
    for stage in stages:
        area = 120 + 1800 * stage.bytes / largest
        axes.scatter(stage.latency_ms, stage.score * 100, s=area, alpha=0.55)
        axes.annotate(
            f"{stage.name}\n{stage.bytes / 1e6:.2f} MB",
            (stage.latency_ms, stage.score * 100),
            textcoords="offset points",
            xytext=(10, 8),
            fontsize=9,
        )
    axes.set_xlabel("ONNX Runtime latency, p50 ms (batch 1, 1 thread)")
    axes.set_ylabel(f"held-out {metric} (%)")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.margins(x=0.25, y=0.25)
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)
    return path
