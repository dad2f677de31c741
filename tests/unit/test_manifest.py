from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from amaas.artifact.manifest import (
    MODEL_FILE,
    Manifest,
    Preprocessing,
    TensorSpec,
    file_entry,
    read_manifest,
    verify_files,
    write_manifest,
)
from amaas.errors import ManifestError


def make_manifest(model_dir: Path) -> Manifest:
    (model_dir / MODEL_FILE).write_bytes(b"pretend onnx bytes")
    return Manifest(
        name="shapes",
        version="abc123",
        architecture="cifar-cnn",
        labels=("circle", "square", "star"),
        input=TensorSpec("input", (-1, 3, 32, 32), "float32", "NCHW"),
        output=TensorSpec("logits", (-1, 3), "float32"),
        preprocessing=Preprocessing(resize=36, crop=32, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2)),
        files={MODEL_FILE: file_entry(model_dir / MODEL_FILE)},
        metrics={"fp32": {"top1": 0.9, "bytes": 100}, "int8": {"top1": 0.89, "bytes": 30}},
        details={"created_at": "2026-11-26T00:00:00+00:00", "libraries": {"onnx": "1.0"}},
    )


def test_written_manifest_reads_back_identically(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)

    write_manifest(tmp_path, manifest)

    assert read_manifest(tmp_path) == manifest


def test_manifest_json_has_the_documented_contract(tmp_path: Path) -> None:
    write_manifest(tmp_path, make_manifest(tmp_path))

    data = json.loads((tmp_path / "manifest.json").read_text())

    assert data["schema_version"] == 1
    assert data["model"] == {"name": "shapes", "version": "abc123", "architecture": "cifar-cnn"}
    assert data["input"] == {"name": "input", "shape": [-1, 3, 32, 32], "dtype": "float32", "layout": "NCHW"}
    assert data["preprocessing"]["mean"] == [0.5, 0.4, 0.3]
    assert data["preprocessing"]["channel_order"] == "RGB"
    assert data["metrics"]["int8"]["top1"] == 0.89
    assert len(data["files"][MODEL_FILE]["sha256"]) == 64
    assert data["libraries"] == {"onnx": "1.0"}


def test_pixel_scale_reads_back_and_defaults_to_1_255_for_older_artifacts(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)
    pixels = replace(manifest, preprocessing=replace(manifest.preprocessing, scale=1.0))
    write_manifest(tmp_path, pixels)
    assert read_manifest(tmp_path).preprocessing.scale == 1.0

    _rewrite(tmp_path, lambda d: d["preprocessing"].pop("scale"))
    assert read_manifest(tmp_path).preprocessing.scale == pytest.approx(1 / 255)


def test_missing_manifest_says_to_export_without_leaking_the_path(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        read_manifest(tmp_path / "secret-internal-dir")

    assert "export a model first" in caught.value.message
    assert "secret-internal-dir" not in caught.value.message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(schema_version=99), "schema_version 99"),
        (lambda d: d.pop("labels"), "manifest.json is missing field 'labels'"),
        (lambda d: d["preprocessing"].update(crop=64), "crop <= resize"),
        (lambda d: d["preprocessing"].update(channel_order="GBR"), "channel order"),
        (lambda d: d["output"].update(shape=[-1, 7]), "3 labels but the model outputs 7"),
        (lambda d: d["preprocessing"].update(scale=0), "scale must be a positive number"),
        (lambda d: d["input"].update(dtype="int64"), "input input is int64; amaas feeds images as one of"),
        (lambda d: d["input"].update(layout="NHWC"), r"input \[-1, 3, 32, 32\] is not a batch of RGB images in NHWC"),
        (lambda d: d["input"].update(shape=[-1, 32, 32]), "is not a batch of RGB images"),
    ],
)
def test_invalid_manifests_are_refused_with_the_reason(tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    write_manifest(tmp_path, make_manifest(tmp_path))
    data = json.loads((tmp_path / "manifest.json").read_text())
    change(data)
    (tmp_path / "manifest.json").write_text(json.dumps(data))

    with pytest.raises(ManifestError, match=message):
        read_manifest(tmp_path)


def _rewrite(model_dir: Path, change) -> None:  # type: ignore[no-untyped-def]
    write_manifest(model_dir, make_manifest(model_dir))
    data = json.loads((model_dir / "manifest.json").read_text())
    change(data)
    (model_dir / "manifest.json").write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("labels"), "manifest.json is missing field 'labels'"),
        (lambda d: d["model"].pop("name"), "manifest.json is missing field 'model.name'"),
        (lambda d: d["input"].pop("shape"), "manifest.json is missing field 'input.shape'"),
        (lambda d: d.pop("preprocessing"), "manifest.json is missing field 'preprocessing'"),
        (lambda d: d["preprocessing"].update(resize="big"), "manifest.json field 'preprocessing.resize' has a value"),
        (lambda d: d["preprocessing"].update(mean=[0.5]), "manifest.json field 'preprocessing.mean' has a value"),
        (lambda d: d["output"].update(shape=None), "manifest.json field 'output.shape' has a value"),
        (lambda d: d.update(labels="abc"), "manifest.json field 'labels' has a value"),
        (lambda d: d.update(model=["shapes"]), "manifest.json field 'model' must be an object"),
        (lambda d: d.update(files=[]), "manifest.json field 'files' must be an object"),
        (lambda d: d["files"]["model.onnx"].pop("sha256"), "manifest.json is missing field 'files.model.onnx.sha256'"),
    ],
)
def test_malformed_manifest_messages_name_the_field_not_python(tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    # GIVEN a manifest with one field missing or of the wrong type
    _rewrite(tmp_path, change)

    # WHEN it is read THEN the message (shown to API clients in a 503) names the field in plain words
    with pytest.raises(ManifestError) as caught:
        read_manifest(tmp_path)

    assert caught.value.message.startswith(message)
    assert not re.search(r"Error\b|Exception|Traceback|invalid literal|/", caught.value.message)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"schema_version": 1,', "manifest.json is not valid JSON (line 1, column 22)"),
        (b"\xff\xfe{}", "manifest.json is not UTF-8 text"),
        (b"[" * 100_000, "manifest.json is nested too deeply"),
    ],
)
def test_unreadable_manifest_messages_say_what_is_wrong(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "manifest.json").write_bytes(content)

    with pytest.raises(ManifestError) as caught:
        read_manifest(tmp_path)

    assert caught.value.message == message


def test_verify_files_accepts_the_exported_files(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)

    verify_files(tmp_path, manifest)


def test_verify_files_catches_a_swapped_model(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)
    (tmp_path / MODEL_FILE).write_bytes(b"someone else's model!")

    with pytest.raises(ManifestError, match="does not match its sha256"):
        verify_files(tmp_path, manifest)


def test_verify_files_catches_a_missing_model(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)
    (tmp_path / MODEL_FILE).unlink()

    with pytest.raises(ManifestError, match="missing"):
        verify_files(tmp_path, manifest)
