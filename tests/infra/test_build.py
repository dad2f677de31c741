"""`sam build` on this machine: no Docker, no python3.13 on PATH, layers within Lambda's limits."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from amaas.artifact.manifest import read_manifest, verify_files
from layers import sizes
from tests.helpers import REPO


def shipped_bytecode(root: Path) -> tuple[list[Path], list[Path]]:
    """The sources under ``root`` without python3.13 bytecode beside them, and the bytecode that is not
    unchecked-hash (PEP 552 flags 0b01: valid whatever timestamps the zip gives the sources)."""
    missing, checked = [], []
    for source in root.rglob("*.py"):
        pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        if not pyc.is_file():
            missing.append(source)
        elif int.from_bytes(pyc.read_bytes()[4:8], "little") != 0b01:
            checked.append(pyc)
    return missing, checked


def test_function_bundle_is_the_serving_package_only(sam_build: Path) -> None:
    bundle = sam_build / "ApiFunction"

    assert (bundle / "amaas" / "handlers" / "api.py").is_file()
    assert not (bundle / "amaas" / "cli.py").exists() and not (bundle / "amaas" / "local.py").exists()
    # AND it ships the runtime's own bytecode, nothing from the Python that ran the build
    assert shipped_bytecode(bundle) == ([], [])
    assert {p.name.split(".")[1] for p in bundle.rglob("*.pyc")} == {"cpython-313"}


def test_model_layer_holds_the_verified_artifact_at_model(sam_build: Path, artifact: Path) -> None:
    layer = sam_build / "ModelLayer" / "model"  # a layer's root is /opt, so this is /opt/model

    manifest = read_manifest(layer)
    verify_files(layer, manifest)
    assert manifest == read_manifest(artifact)


def test_runtime_layer_is_trimmed_and_cross_built_for_lambda(sam_build: Path) -> None:
    site = sam_build / "RuntimeLayer" / "python"

    extension = next(site.glob("onnxruntime/capi/onnxruntime_pybind11_state.cpython-313-*.so"))
    assert "x86_64-linux-gnu" in extension.name
    assert not list(site.rglob("tests"))
    assert not (site / "onnxruntime" / "quantization").exists()
    # AND every module is compiled by python3.13 (vendored files that do not compile stay source-only)
    missing, checked = shipped_bytecode(site)
    assert checked == [] and len(missing) <= 5, missing
    assert {p.name.split(".")[1] for p in site.rglob("*.pyc")} == {"cpython-313"}
    assert not (site / "torch").exists()


def test_sizes_are_printed_and_within_limits(sam_build: Path) -> None:
    result = subprocess.run(
        [sys.executable, "layers/sizes.py", str(sam_build)], cwd=REPO, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "ApiFunction" in result.stdout and "RuntimeLayer" in result.stdout
    functions = sizes.measure(sam_build)
    assert {f.name for f in functions} == {"ApiFunction", "BatchFunction", "BatchJobFunction", "PreTrafficHookFunction"}
    for function in functions:
        assert function.total < sizes.LIMIT_BYTES and len(function.layers) <= sizes.MAX_LAYERS
        assert function.layers["RuntimeLayer"] <= sizes.RUNTIME_LAYER_GOAL_BYTES


def test_sizes_fail_past_the_lambda_limit(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(
        "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      Layers: [{Ref: Big}]\n"
    )
    (tmp_path / "Fn").mkdir()
    (tmp_path / "Big").mkdir()
    with (tmp_path / "Big" / "blob").open("wb") as f:
        f.truncate(300_000_000)  # sparse: 300 MB by size, nothing on disk

    result = subprocess.run(
        [sys.executable, "layers/sizes.py", str(tmp_path)], cwd=REPO, capture_output=True, text=True, check=False
    )

    assert result.returncode != 0
    assert "Fn is 300.0 MB unzipped; Lambda's limit is 262.1 MB" in result.stderr


def test_model_layer_build_refuses_a_tampered_artifact(tmp_path: Path, artifact: Path) -> None:
    tampered = tmp_path / "model"
    shutil.copytree(artifact, tampered)
    (tampered / "model.onnx").write_bytes(b"not the exported model")

    result = subprocess.run(
        ["make", "-f", "layers/model/Makefile", "build-ModelLayer", f"ARTIFACTS_DIR={tmp_path / 'out'}"],
        cwd=REPO,
        env={
            **os.environ,
            "AMAAS_ARTIFACT": str(tampered),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        },
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode != 0
    assert "not a deployable artifact: artifact file model.onnx does not match its sha256" in result.stderr
    assert not (tmp_path / "out" / "model").exists()
