"""``amaas export``: source -> (train) -> FP32 ONNX -> (prune + fine-tune) -> INT8 -> served file -> artifact.

Every stage is a real ONNX file, evaluated on the same held-out images through the same ``Model`` serving uses,
and every transition is gated (parity, pruning drop, INT8 drop, size). The stages (``amaas_export.stages``) pass
nothing to each other but their frozen results. All of it happens in a staging directory next to
``config.out``, moved into place only when every gate has passed: a failed export leaves no artifact that
looks deployable, and keeps a previous good one.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from amaas.artifact.manifest import Manifest
from amaas_export.config import ExportConfig
from amaas_export.gates import check_size
from amaas_export.measure import StageReport
from amaas_export.sources import SourcePlan, plan_source
from amaas_export.stages import data, package, prune, quantize, serving, source
from amaas_export.stages.common import Log, Stage
from amaas_export.tasks import export_task, metric_title


@dataclass(frozen=True)
class ExportResult:
    out: Path
    manifest: Manifest


def run_export(config: ExportConfig, log: Log = print) -> ExportResult:
    """Runs every stage of the export and returns the manifest of the artifact written to ``config.out``.

    Raises:
        ExportError: Bad options or data, or a failed gate; nothing is written to ``config.out``.
    """
    package.check_replaceable(config.out)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".amaas-export-", dir=config.out.parent) as work_dir:
        work = Path(work_dir)
        if config.imported is None:
            export_task(config.task).check_architecture(config.arch)
        plan = plan_source(config, work)
        _fetch_pretrained(plan, config)  # a download that cannot happen fails before the data is read
        prepared = data.load(config, plan, log)

        float_model = source.float_model(config, plan, prepared, work, log)
        prepared = float_model.prepared  # with the graph's outputs and the task's manifest section
        stages: list[Stage] = [float_model.stage]
        pruned = prune.pruned(config, prepared, float_model.stage, work, log) if config.prune else None
        if pruned is not None:
            stages.append(pruned.stage)
        quantized = quantize.int8(config, prepared, stages[-1], work, log)
        if quantized.stage is not None:
            stages.append(quantized.stage)
        served = stages[-1]

        final = serving.finalize(config, prepared, served, work, log)
        prepared = final.prepared  # the served file's outputs and task_config
        check_size(final.path.stat().st_size, config.max_size_mb)
        rows = package.reports(prepared, stages)
        log("stages:\n" + "\n".join(f"  {_row(r)}" for r in rows))
        if quantized.stage is not None and rows[-1].latency_ms > rows[-2].latency_ms:
            _note_slower_int8(rows[-1], rows[-2], log)

        run = package.Run(plan, float_model, pruned, quantized, served, final, rows)
        packaged = package.package(config, prepared, run, work, log)
    log(f"artifact: {config.out}/ serving {served.name} ({time.perf_counter() - started:.0f}s)")
    return ExportResult(out=packaged.out, manifest=packaged.manifest)


def _fetch_pretrained(plan: SourcePlan, config: ExportConfig) -> None:
    if plan.pretrained is not None:
        from amaas_export.models import Pretrained, fetch_pretrained

        assert isinstance(plan.pretrained, Pretrained)
        fetch_pretrained(config.arch, plan.pretrained)


def _note_slower_int8(int8: StageReport, parent: StageReport, log: Log) -> None:
    log(
        f"note: on this CPU INT8 runs slower than {parent.name} ({int8.latency_ms:.3f} vs "
        f"{parent.latency_ms:.3f} ms); it ships for its size ({int8.bytes / parent.bytes:.2f}x). "
        "Use --quantize none to serve the float model."
    )


def _row(r: StageReport) -> str:
    scores = "  ".join(f"{metric_title(metric)} {value:.4f}" for metric, value in r.metrics.items())
    return (
        f"{r.name:<7} {scores}  {r.bytes / 1e6:8.3f} MB  {r.params / 1e6:7.3f} M params  "
        f"{r.macs / 1e6:9.2f} M MACs  {r.latency_ms:8.3f} ms"
    )
