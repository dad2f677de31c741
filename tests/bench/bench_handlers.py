"""This project's API function against a minimal hand-written ONNX Runtime handler and the usual torch-eager
FastAPI + Mangum handler, on one artifact, in one run.

    python tests/bench/bench_handlers.py --model-dir /path/to/resnet18-224 [--build-dir DIR] [--cold 5]
        [--warm 40] [--before-build DIR] [--write-readme]

Every handler runs in the local Lambda runtime (``amaas_cli.lambda_local``: awslambdaric, a fresh sandbox
process, read-only code, the same API Gateway events), and every figure is Lambda's own REPORT:

* ``amaas``: the ApiFunction of a ``sam build`` of this repo with the artifact as its model layer (built into
  a temporary folder unless ``--build-dir`` names one), python3.13;
* ``minimal``: ``baselines/minimal_ort.py`` (PIL + numpy + ORT + json) on the same runtime and model layers,
  python3.13;
* ``torch``: ``baselines/torch_eager.py``, torchvision resnet18 with the manifest's class count and random
  weights (nothing can be downloaded), under the development venv's Python, as torch is not in the layers;
* ``before`` (with ``--before-build``): the ApiFunction of another build, to measure a change in the same run;
* the ORT floor: ``session.run`` on a ready tensor, timed inside a python3.13 sandbox with the runtime layer.

All use one ORT (or torch) intra-op thread and batch 1. Cold start is process spawn to the first response,
median over ``--cold`` fresh sandboxes per handler, started round-robin. Warm figures are REPORT Duration
p50 over ``--warm`` rounds; each round sends every input to every handler and the floor, in rotating order,
so load from other processes on the machine hits them alike. Max Memory Used is the sandbox's resident peak
after every input. Inputs are scikit-image's photographs resized: astronaut as a 224x224 JPEG, coffee as a
640x480 JPEG, chelsea as a 2048x1536 JPEG (quality 90), astronaut as a 512x512 PNG.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(REPO / "cli"), str(REPO / "functions"), str(REPO / "tests" / "events")]

from generate import event  # noqa: E402 - tests/events/generate.py

from amaas_cli.lambda_local import LocalLambda  # noqa: E402 - after the path set-up above
from amaas_cli.lambda_local.runtime_dir import ensure_runtime  # noqa: E402

HANDLERS = ("amaas", "minimal", "torch")
INPUTS = ("224 JPEG", "640x480 JPEG", "2048x1536 JPEG", "512 PNG")
MARKERS = ("<!-- bench-handlers:start -->", "<!-- bench-handlers:end -->")
# The figures for this project's handler (resnet18 224x224 INT8, 1 thread, batch 1)
WARM_TARGETS = {"224 JPEG": 1.15, "640x480 JPEG": 1.4, "2048x1536 JPEG": 2.0, "512 PNG": 1.9}
COLD_TARGET_MS, COLD_VS_MINIMAL, COLD_VS_TORCH, RSS_TARGET_MB = 500, 3.0, 5.0, 150


def photos() -> dict[str, dict[str, Any]]:
    """The benchmark's API Gateway events, one per input."""
    from skimage import data

    def sized(pixels: np.ndarray, size: tuple[int, int]) -> Image.Image:
        return Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS)

    def encoded(image: Image.Image, fmt: str, media: str) -> dict[str, Any]:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        return event("POST", "/v1/classify", body=buffer.getvalue(), content_type=media)

    return {
        "224 JPEG": encoded(sized(data.astronaut(), (224, 224)), "JPEG", "image/jpeg"),
        "640x480 JPEG": encoded(sized(data.coffee(), (640, 480)), "JPEG", "image/jpeg"),
        "2048x1536 JPEG": encoded(sized(data.chelsea(), (2048, 1536)), "JPEG", "image/jpeg"),
        "512 PNG": encoded(sized(data.astronaut(), (512, 512)), "PNG", "image/png"),
    }


def build(model_dir: Path, build_dir: Path) -> None:
    print(f"sam build of this repo with {model_dir} as the model layer, into {build_dir} ...", file=sys.stderr)
    env = {**os.environ, "AMAAS_ARTIFACT": str(model_dir), "SAM_CLI_TELEMETRY": "0"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    sam = Path(sys.executable).parent / "sam"
    subprocess.run([str(sam), "build", "--build-dir", str(build_dir)], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def baseline_template(build_dir: Path, folder: Path, torch_python: str) -> Path:
    """A template whose functions are the baselines, on the built layers of ``build_dir``."""

    def function(handler: str, runtime: str, layers: list[str], memory: int) -> dict[str, Any]:
        return {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "CodeUri": str(HERE / "baselines"),
                "Handler": handler,
                "Runtime": runtime,
                "MemorySize": memory,
                "Timeout": 60,
                "Layers": [{"Ref": layer} for layer in layers],
                "Environment": {"Variables": {"AMAAS_MODEL_DIR": "/opt/model", "OMP_NUM_THREADS": "1"}},
            },
        }

    def layer(name: str) -> dict[str, Any]:
        return {"Type": "AWS::Serverless::LayerVersion", "Properties": {"ContentUri": str(build_dir / name)}}

    both = ["RuntimeLayer", "ModelLayer"]
    template = {
        "Resources": {
            "MinimalFunction": function("minimal_ort.handler", "python3.13", both, 1024),
            "FloorFunction": function("minimal_ort.floor", "python3.13", both, 1024),
            # torch's own reservations are large; its memory is not what is limited here, only measured
            "TorchFunction": function("torch_eager.handler", f"python{torch_python}", ["ModelLayer"], 4096),
            "RuntimeLayer": layer("RuntimeLayer"),
            "ModelLayer": layer("ModelLayer"),
        }
    }
    (folder / "template.yaml").write_text(json.dumps(template, indent=1))  # JSON is YAML
    return folder


class Handlers:
    """How to start each handler's sandbox."""

    def __init__(self, build_dir: Path, baselines: Path, before: Path | None) -> None:
        torch_python = Path(sys.executable)
        runtime = ensure_runtime(torch_python)
        site = next(Path(sys.prefix).glob("lib/python3.*/site-packages"))
        # The dev venv's packages (torch, torchvision, FastAPI, Mangum) in place of the layers, then awslambdaric
        torch_path = os.pathsep.join(map(str, [HERE / "baselines", site, runtime.runtime_dir]))
        self.makers: dict[str, Callable[[], LocalLambda]] = {
            "amaas": lambda: LocalLambda(build_dir, "ApiFunction"),
            "minimal": lambda: LocalLambda(baselines, "MinimalFunction"),
            "torch": lambda: LocalLambda(
                baselines, "TorchFunction", python=torch_python, env={"PYTHONPATH": torch_path}
            ),
            "floor": lambda: LocalLambda(baselines, "FloorFunction"),
        }
        if before is not None:
            self.makers["before"] = lambda: LocalLambda(before, "ApiFunction")
        self.names = [name for name in ("amaas", "before", *HANDLERS[1:]) if name in self.makers]


def cold_starts(handlers: Handlers, first: dict[str, Any], rounds: int) -> dict[str, list[float]]:
    names = handlers.names
    colds: dict[str, list[float]] = {name: [] for name in names}
    for turn in range(rounds):
        shift = turn % len(names)
        for name in names[shift:] + names[:shift]:
            function = handlers.makers[name]()
            try:
                process = function.start()
                result = function.invoke(first)
                colds[name].append((time.monotonic() - process.spawned) * 1000)
                check(name, result)
            finally:
                function.close()
    return colds


def check(name: str, result: Any) -> dict[str, Any]:
    payload = result.check()
    if payload.get("statusCode") != 200:
        raise SystemExit(f"{name} answered {payload.get('statusCode')}: {payload.get('body')}")
    body: dict[str, Any] = json.loads(payload["body"])
    return body


def warm(handlers: Handlers, events: dict[str, dict[str, Any]], rounds: int) -> dict[str, Any]:
    functions = {name: make() for name, make in handlers.makers.items()}
    durations: dict[tuple[str, str], list[float]] = {(h, i): [] for h in handlers.names for i in INPUTS}
    floor: list[float] = []
    floor_trips: list[float] = []  # the floor function's REPORT Duration: session.run plus this runtime's round trip
    top1: dict[tuple[str, str], str] = {}
    try:
        for function in functions.values():  # the first (cold) invocation and a warm-up of every input
            for payload in events.values():
                function.invoke(payload).check()
        for turn in range(rounds):
            for i, (label, payload) in enumerate(events.items()):
                order = ["floor", *handlers.names]
                shift = (turn + i) % len(order)
                for name in order[shift:] + order[:shift]:
                    result = functions[name].invoke(payload)
                    if name == "floor":
                        floor.append(result.check()["run_ms"])
                        floor_trips.append(result.report.duration_ms)
                        continue
                    durations[name, label].append(result.report.duration_ms)
                    top1[name, label] = check(name, result)["predictions"][0]["label"]
        memory = {name: functions[name].invoke(events[INPUTS[0]]).report.max_memory_mb for name in handlers.names}
    finally:
        for function in functions.values():
            function.close()
    return {"durations": durations, "floor": floor, "floor_trips": floor_trips, "memory": memory, "top1": top1}


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x"


def report(colds: dict[str, list[float]], measured: dict[str, Any], args: argparse.Namespace) -> str:
    p50 = {key: statistics.median(values) for key, values in measured["durations"].items()}
    floor = statistics.median(measured["floor"])
    harness = statistics.median(measured["floor_trips"]) - floor
    cold = {name: statistics.median(values) for name, values in colds.items()}
    memory = measured["memory"]
    lines = [
        f"resnet18 224x224 INT8, 1 intra-op thread, batch 1. ORT floor (`session.run` on a ready tensor, "
        f"python3.13): p50 {floor:.2f} ms over {len(measured['floor'])} runs. Cold start: spawn to first response, "
        f"median of {args.cold} fresh sandboxes each. Warm: REPORT Duration p50 over {args.warm} interleaved rounds, "
        "as a ratio to the floor and to the minimal handler. The floor function's own REPORT Duration is "
        f"{harness:.2f} ms over its `session.run`: what this local runtime adds to every Duration (on Lambda "
        "a fraction of a millisecond), here counted against every handler.",
        "",
        "| handler | cold start | Max Memory Used | " + " | ".join(INPUTS) + " |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in INPUTS) + " |",
    ]
    for name in colds:
        cells = [
            f"{p50[name, i]:.1f} ms ({ratio(p50[name, i], floor)} floor, {ratio(p50[name, i], p50['minimal', i])} min)"
            for i in INPUTS
        ]
        lines.append(f"| {name} | {cold[name]:.0f} ms ({ratio(cold[name], cold['minimal'])} min) | "
                     f"{memory[name]} MB | " + " | ".join(cells) + " |")  # fmt: skip
    lines += ["", "| target (amaas) | measured | met |", "| --- | ---: | :-: |"]
    targets = [
        (f"cold start <= {COLD_TARGET_MS} ms", f"{cold['amaas']:.0f} ms", cold["amaas"] <= COLD_TARGET_MS),
        (f"cold start <= {COLD_VS_MINIMAL:g}x minimal", ratio(cold["amaas"], cold["minimal"]),
         cold["amaas"] <= COLD_VS_MINIMAL * cold["minimal"]),
        (f"cold start >= {COLD_VS_TORCH:g}x faster than torch", ratio(cold["torch"], cold["amaas"]),
         cold["torch"] >= COLD_VS_TORCH * cold["amaas"]),
        (f"Max Memory Used <= {RSS_TARGET_MB} MB", f"{memory['amaas']} MB", memory["amaas"] <= RSS_TARGET_MB),
    ]  # fmt: skip
    for label, limit in WARM_TARGETS.items():
        # judged on REPORT Duration as measured; beside it, the ratio without what the local runtime adds
        value = f"{ratio(p50['amaas', label], floor)} ({ratio(p50['amaas', label] - harness, floor)} without it)"
        targets.append((f"warm {label} <= {limit:g}x floor", value, p50["amaas", label] <= limit * floor))
    lines += [f"| {label} | {value} | {'yes' if met else '**no**'} |" for label, value, met in targets]
    agree = [i for i in INPUTS if measured["top1"]["amaas", i] == measured["top1"]["minimal", i]]
    lines += ["", f"amaas and minimal agree on the top-1 class for {len(agree)} of {len(INPUTS)} inputs."]
    return "\n".join(lines)


def write_readme(table: str, command: str) -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    start, end = MARKERS
    if start not in text or end not in text:
        raise SystemExit(f"README.md has no {start} ... {end} section to write into")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n`{command}`\n\n{table}\n{end}{tail}")
    print("README.md performance section updated", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="the artifact (model.onnx + manifest.json)")
    parser.add_argument("--build-dir", type=Path, help="a `sam build` with that artifact (default: build one)")
    parser.add_argument("--before-build", type=Path, help="another build whose ApiFunction joins the run as `before`")
    parser.add_argument("--cold", type=int, default=5, help="fresh sandboxes per handler")
    parser.add_argument("--warm", type=int, default=40, help="interleaved rounds of warm invocations")
    parser.add_argument("--write-readme", action="store_true", help="write the table into README.md")
    args = parser.parse_args()
    events = photos()
    with tempfile.TemporaryDirectory(prefix="bench-handlers-") as tmp:
        build_dir = args.build_dir
        if build_dir is None:
            build_dir = Path(tmp, "build")
            build(args.model_dir.resolve(), build_dir)
        built = json.loads((build_dir / "ModelLayer" / "model" / "manifest.json").read_text())
        wanted = json.loads((args.model_dir / "manifest.json").read_text())
        if built["model"] != wanted["model"]:
            raise SystemExit(f"{build_dir} serves {built['model']}, not the --model-dir's {wanted['model']}")
        python = f"{sys.version_info[0]}.{sys.version_info[1]}"
        baselines = baseline_template(build_dir.resolve(), Path(tmp), python)
        handlers = Handlers(build_dir, baselines, args.before_build)
        colds = cold_starts(handlers, events[INPUTS[0]], args.cold)
        measured = warm(handlers, events, args.warm)
    table = report(colds, measured, args)
    print(table)
    if args.write_readme:
        write_readme(table, "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]))


if __name__ == "__main__":
    main()
