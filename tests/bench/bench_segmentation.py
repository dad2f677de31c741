"""Segmentation figures per architecture, each against a baseline measured in the same run.

    python tests/bench/bench_segmentation.py [--archs lraspp_mobilenet_v3_large ...]
        [--images 2000] [--size 96] [--epochs 16] [--learning-rate 0.005] [--out dist/bench-seg] [--seconds 20]
        [--reuse]

For each architecture:
  - export time at the tests' size (the session fixture's settings, tests/conftest.py) and at the benchmark's;
  - held-out mIoU and pixel accuracy of FP32 and INT8 on the synthetic scenes (the INT8 gate: <= 1 point);
  - INT8 vs FP32 latency, batch 1, 1 ORT thread (the export's round-robin stage timing, from the manifest), at
    the benchmark's size and at ``--latency-size`` (a one-epoch export on 20 scenes: accuracy irrelevant);
  - warm ``POST /v1/segment`` p50 through the Lambda handler (API Gateway event -> Mangum -> FastAPI -> answer)
    on a 640x480 photo (skimage's astronaut) answered as JSON and as a PNG mask at 640x480, against the ORT
    floor: ``session.run`` of the same model on that photo's ready input tensor; for the benchmark's model and
    the ``--latency-size`` one (whose ORT time dominates, as a real model's does);
  - what the served ONNX graph contains (its outputs and its operator counts).

The defaults are the recipe that reaches the issue's mIoU on an idle 2-core machine (LR-ASPP: ~6.5 min of
training). On a machine shared with other work, ``OMP_NUM_THREADS=1`` keeps torch's training from fighting
other processes for cores (two threads were ~10x slower than one there). ``--reuse`` serves artifacts already
in ``--out`` instead of exporting.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO)]

ARCHS = ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large")


def export(arch: str, out: Path, **settings: Any) -> float:
    from amaas_export.config import ExportConfig
    from amaas_export.pipeline import run_export

    started = time.perf_counter()
    run_export(ExportConfig(task="segmentation", arch=arch, out=out, **settings), log=lambda line: print("   ", line))
    return time.perf_counter() - started


def photo_jpeg() -> bytes:
    from PIL import Image
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).resize((640, 480), Image.Resampling.BILINEAR).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def serving(model_dir: Path, image: bytes, budget_s: float) -> dict[str, float]:
    from mangum import Mangum

    from amaas.api.app import create_app
    from amaas.artifact.model import Model
    from amaas.artifact.session import create_session
    from amaas.settings import Settings
    from amaas_export.measure import round_robin_ms
    from tests.gateway import make_event
    from tests.helpers import LambdaContext

    handler = Mangum(create_app(Settings(model_dir=model_dir, ort_threads=1)), lifespan="off")

    def call(accept: str) -> Callable[[], object]:
        headers = {"content-type": "image/jpeg", "accept": accept}

        def run() -> object:
            response = handler(make_event("POST", "/v1/segment", "", headers, image, "bench", True), LambdaContext())
            assert response["statusCode"] == 200, response["body"][:200]
            return response

        return run

    model = Model(model_dir)
    tensor = model.preprocess([image])
    session = create_session(model_dir / "model.onnx", threads=1)
    name = model.manifest.input.name
    # round-robin, so that the machine's busy moments hit the floor and the handler alike
    floor, as_json, as_png = round_robin_ms(
        [lambda: session.run(None, {name: tensor}), call("application/json"), call("image/png")], budget_s=budget_s
    )
    return {"ort_floor_ms": floor, "handler_json_ms": as_json, "handler_png_ms": as_png}


def graph(model_path: Path) -> dict[str, Any]:
    import onnx

    proto = onnx.load(str(model_path))
    ops = collections.Counter(node.op_type for node in proto.graph.node)
    outputs = [
        f"{o.name} {[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]}" for o in proto.graph.output
    ]
    inputs = [
        f"{i.name} {onnx.TensorProto.DataType.Name(i.type.tensor_type.elem_type).lower()} "
        f"{[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]}"
        for i in proto.graph.input
    ]
    return {"inputs": inputs, "outputs": outputs, "nodes": len(proto.graph.node), "ops": dict(ops.most_common())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=list(ARCHS))
    parser.add_argument("--images", type=int, default=2000, help="synthetic training scenes (N/10 held out)")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=0.005)
    parser.add_argument("--out", type=Path, default=REPO / "dist" / "bench-seg")
    parser.add_argument("--seconds", type=float, default=20.0, help="timing budget per model (at least 20 rounds)")
    parser.add_argument("--reuse", action="store_true", help="serve the artifacts already in --out")
    parser.add_argument("--latency-size", type=int, default=320, help="also time FP32 vs INT8 at this side (0: no)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from amaas.artifact.manifest import read_manifest
    from tests.conftest import SEGMENTER_EXPORT

    image = photo_jpeg()
    figures: dict[str, Any] = {}
    for arch in args.archs:
        print(f"== {arch}")
        out = args.out / arch
        row: dict[str, Any] = {}
        if not args.reuse:
            with tempfile.TemporaryDirectory() as work:
                tiny = {k: v for k, v in SEGMENTER_EXPORT.items() if k not in ("task", "arch")}
                row["export_s_test_size"] = round(export(arch, Path(work) / "tiny", **tiny), 1)
            row["export_s"] = round(
                export(
                    arch,
                    out,
                    data=f"synthetic:{args.images}",
                    image_size=args.size,
                    epochs=args.epochs,
                    batch_size=16,
                    learning_rate=args.learning_rate,
                ),
                1,
            )
        manifest = read_manifest(out)
        stages = {s["name"]: s for s in manifest.details["stages"]}
        metrics = manifest.metrics
        row.update(
            size=manifest.preprocessing.crop,
            fp32_miou=metrics["fp32"]["miou"],
            int8_miou=metrics.get("int8", {}).get("miou"),
            fp32_pixel_accuracy=metrics["fp32"]["pixel_accuracy"],
            int8_pixel_accuracy=metrics.get("int8", {}).get("pixel_accuracy"),
            miou_drop_points=metrics.get("miou_drop_points"),
            parity_mask_agreement=metrics.get("parity_mask_agreement"),
            served=metrics["served"]["stage"],
            fp32_latency_ms=stages["fp32"]["latency_ms"],
            int8_latency_ms=stages.get("int8", {}).get("latency_ms"),
            fp32_mb=round(stages["fp32"]["bytes"] / 1e6, 2),
            int8_mb=round(stages["int8"]["bytes"] / 1e6, 2) if "int8" in stages else None,
        )
        if row["int8_latency_ms"]:
            row["int8_vs_fp32_latency"] = round(row["int8_latency_ms"] / row["fp32_latency_ms"], 3)
        if args.latency_size:
            with tempfile.TemporaryDirectory() as work:
                big = Path(work) / "big"
                settings = {"data": "synthetic:20", "image_size": args.latency_size, "epochs": 1, "batch_size": 4}
                export(arch, big, **settings, max_accuracy_drop=100.0)
                timed = {s["name"]: s for s in read_manifest(big).details["stages"]}
                at_size = serving(big, image, args.seconds)
            row.update({f"{key}_{args.latency_size}": value for key, value in at_size.items()})
            row[f"handler_json_vs_floor_{args.latency_size}"] = round(
                at_size["handler_json_ms"] / at_size["ort_floor_ms"], 3
            )
            row[f"handler_png_vs_floor_{args.latency_size}"] = round(
                at_size["handler_png_ms"] / at_size["ort_floor_ms"], 3
            )
            row[f"fp32_latency_ms_{args.latency_size}"] = timed["fp32"]["latency_ms"]
            row[f"int8_latency_ms_{args.latency_size}"] = timed["int8"]["latency_ms"]
            row[f"int8_vs_fp32_latency_{args.latency_size}"] = round(
                timed["int8"]["latency_ms"] / timed["fp32"]["latency_ms"], 3
            )
        row.update(serving(out, image, args.seconds))
        row["handler_json_vs_floor"] = round(row["handler_json_ms"] / row["ort_floor_ms"], 3)
        row["handler_png_vs_floor"] = round(row["handler_png_ms"] / row["ort_floor_ms"], 3)
        row["graph"] = graph(out / "model.onnx")
        figures[arch] = row
        print(json.dumps(row, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    print(
        "\narch | export s (tests / bench) | mIoU fp32 / int8 | INT8/FP32 latency | /v1/segment JSON, PNG p50 vs floor"
    )
    for arch, r in figures.items():
        print(
            f"{arch} | {r.get('export_s_test_size')} / {r.get('export_s')} | {r['fp32_miou']:.4f} / "
            f"{r['int8_miou'] or float('nan'):.4f} | {r['fp32_latency_ms']:.3f} -> {r['int8_latency_ms'] or 0:.3f} ms "
            f"({r.get('int8_vs_fp32_latency')}x) | {r['handler_json_ms']:.2f}, {r['handler_png_ms']:.2f} ms vs "
            f"{r['ort_floor_ms']:.2f} ms ({r['handler_json_vs_floor']}x, {r['handler_png_vs_floor']}x)"
        )


if __name__ == "__main__":
    main()
