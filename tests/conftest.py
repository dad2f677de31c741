"""Session fixtures shared across the suite: a real model artifact built by the project's own export code,
and the Lambda build of the template."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

# Small enough to train in ~20 s on 2 cores, good enough (~88% held-out top-1) that its predictions mean
# something. tests/events/ images were picked so that this model classifies them clearly.
# fold_normalization pinned: "auto" decides by timing, so the served input type would depend on machine load.
FIXTURE_EXPORT = {"arch": "cifar-cnn", "data": "synthetic:12000", "epochs": 12, "seed": 0, "fold_normalization": "off"}


# A segmenter of the real architecture, as small as it exports: one epoch on 48 synthetic scenes at 64 px. Its
# masks are rough (mIoU far from the benchmark's); the tests check the contract, not its quality. The INT8 gate
# is opened because an untrained model's INT8 drop means nothing.
SEGMENTER_EXPORT = {
    "task": "segmentation",
    "arch": "lraspp_mobilenet_v3_large",
    "data": "synthetic:48",
    "image_size": 64,
    "epochs": 1,
    "batch_size": 16,
    "seed": 0,
    "fold_normalization": "off",
    "max_accuracy_drop": 100.0,
}


@pytest.fixture(scope="session")
def segmenter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A segmentation artifact from `amaas export --task segmentation`."""
    from amaas_export.config import ExportConfig
    from amaas_export.pipeline import run_export

    out = tmp_path_factory.mktemp("export-seg") / "model"
    run_export(ExportConfig(out=out, **SEGMENTER_EXPORT), log=lambda line: None)
    return out


@pytest.fixture(scope="session")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model artifact directory (model.onnx, manifest.json, MODEL_CARD.md) from `amaas export`."""
    from amaas_export.config import ExportConfig
    from amaas_export.pipeline import run_export

    out = tmp_path_factory.mktemp("export") / "model"
    run_export(ExportConfig(out=out, **FIXTURE_EXPORT), log=lambda line: None)
    return out


@pytest.fixture(scope="session")
def sam_build(tmp_path_factory: pytest.TempPathFactory, artifact: Path) -> Path:
    """`sam build` of template.yaml with the fixture artifact in the model layer; returns the build dir."""
    build_dir = tmp_path_factory.mktemp("sam") / "build"
    env = {
        **os.environ,
        "AMAAS_ARTIFACT": str(artifact),
        "SAM_CLI_TELEMETRY": "0",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    sam = shutil.which("sam", path=env["PATH"])
    assert sam, "sam is not installed (pip install -e '.[dev]')"
    result = subprocess.run(
        [sam, "build", "--template-file", "template.yaml", "--build-dir", str(build_dir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"sam build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return build_dir
