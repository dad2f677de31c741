"""Segmentation end to end: `amaas export --task segmentation` makes an artifact whose manifest, card and golden
samples describe a segmenter, and the server answers `POST /v1/segment` with masks at the original image's
size, per-class areas, overlays, the graph's raw /v2 label maps and task-shaped batch results; the pre-traffic
check compares masks."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mangum import Mangum
from PIL import Image

from amaas.api.app import create_app
from amaas.artifact.golden import read_golden
from amaas.artifact.manifest import read_manifest, verify_files
from amaas.artifact.model import Model
from amaas.artifact.tasks.segmentation import mask_png
from amaas.batch.results import Item, classify
from amaas.rollout import check_version
from amaas.settings import Settings
from amaas_cli.jobs import table
from amaas_export.data import scenes
from tests.functional.conftest import Export
from tests.gateway import make_event
from tests.helpers import LambdaContext, encode_image

SIDE = 64


@dataclass
class Answer:
    status_code: int
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class LambdaClient:
    """Requests as API Gateway events through the Lambda handler (Mangum), as deployed."""

    def __init__(self, settings: Settings) -> None:
        self.handler = Mangum(create_app(settings), lifespan="off")

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = self.handler(event, LambdaContext())
        return response

    def post(
        self, path: str, content: bytes = b"", *, json_body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        path, _, query = path.partition("?")
        sent = {"content-type": "application/json" if json_body is not None else "image/png", **(headers or {})}
        body = json.dumps(json_body).encode() if json_body is not None else content
        response = self.invoke(make_event("POST", path, query, sent, body, "test", binary=True))
        raw = response.get("body") or ""
        data = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()
        return Answer(response["statusCode"], {k.lower(): v for k, v in response["headers"].items()}, data)


@pytest.fixture(scope="module")
def client(segmenter: Path) -> LambdaClient:
    return LambdaClient(Settings(model_dir=segmenter))


def scene_photo(width: int, height: int, index: int = 0) -> Image.Image:
    """A held-out-style scene stretched to ``width`` x ``height``: what a client would send."""
    drawn = scenes.scene(index, split="test", size=SIDE)
    return Image.fromarray(drawn.image).resize((width, height), Image.Resampling.BILINEAR)


def png_mask(content: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(content)) as image:
        assert image.format == "PNG" and image.mode == "P"
        return np.asarray(image)


def test_the_artifact_describes_a_segmenter_with_its_metrics_per_stage(segmenter: Path) -> None:
    manifest = read_manifest(segmenter)
    verify_files(segmenter, manifest)

    assert manifest.task == "segmentation"
    assert manifest.labels == scenes.LABELS
    # the served graph ends at the label map (argmax in the graph); every earlier stage at the logits
    assert (manifest.output.name, manifest.output.shape, manifest.output.dtype) == (
        "classes",
        (-1, SIDE, SIDE),
        "uint8",
    )
    assert manifest.task_config == {"logits_stride": 1, "background": 0, "output": "classes"}
    assert manifest.preprocessing.resize_mode == "stretch" and manifest.preprocessing.crop == SIDE
    for stage in ("fp32", "int8", "served"):
        assert 0 <= manifest.metrics[stage]["miou"] <= 1 and 0 <= manifest.metrics[stage]["pixel_accuracy"] <= 1
    assert "miou_drop_points" in manifest.metrics and "top1" not in manifest.metrics["int8"]
    assert manifest.metrics["parity_mask_agreement"] >= 0.999
    card = (segmenter / "MODEL_CARD.md").read_text()
    assert "A semantic segmentation model over 5 classes" in card and "| Stage | Held-out mIoU |" in card
    assert "masks agree on" in card
    with Image.open(segmenter / "predictions.png") as preview:
        assert preview.size == (3 * 4 * SIDE, 4 * 4 * SIDE), "image, truth, prediction; 4 images enlarged 4x"


def test_a_mask_comes_back_at_the_original_size_and_orientation(client: LambdaClient, segmenter: Path) -> None:
    # GIVEN a 160x120 photo stored sideways, with EXIF orientation 6 (rotate 90 degrees clockwise to view)
    upright = scene_photo(120, 160)
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode_image(stored, "JPEG", quality=95, exif=exif)

    response = client.post("/v1/segment", content=data, headers={"content-type": "image/jpeg", "accept": "image/png"})

    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    mask = png_mask(response.content)
    assert mask.shape == (160, 120), "height x width of the upright image"
    # the same mask as the upright image sent without EXIF
    plain = client.post(
        "/v1/segment", content=encode_image(upright, "JPEG", quality=95), headers={"accept": "image/png"}
    )
    assert (png_mask(plain.content) == mask).mean() > 0.97


def test_json_areas_add_up_to_the_png_masks_pixels(client: LambdaClient) -> None:
    data = encode_image(scene_photo(200, 150, index=3))

    areas = client.post("/v1/segment", content=data, headers={"content-type": "image/png"}).json()
    mask = png_mask(client.post("/v1/segment", content=data, headers={"accept": "image/png"}).content)

    assert areas["size"] == [200, 150]
    counts = np.bincount(mask.ravel(), minlength=len(scenes.LABELS))
    assert {c["index"]: c["pixels"] for c in areas["classes"]} == {i: int(n) for i, n in enumerate(counts) if n}
    assert sum(c["fraction"] for c in areas["classes"]) == pytest.approx(1.0, abs=1e-4)
    assert [c["pixels"] for c in areas["classes"]] == sorted((c["pixels"] for c in areas["classes"]), reverse=True)


def test_several_images_answer_json_in_order_and_refuse_a_png(client: LambdaClient) -> None:
    images = [
        base64.b64encode(encode_image(scene_photo(w, h, i))).decode() for i, (w, h) in enumerate([(90, 60), (64, 64)])
    ]

    answer = client.post("/v1/segment", json_body={"images": images})
    refused = client.post("/v1/segment", json_body={"images": images}, headers={"accept": "image/png"})

    assert answer.status_code == 200
    assert [r["size"] for r in answer.json()["results"]] == [[90, 60], [64, 64]]
    assert refused.status_code == 406 and refused.json()["error"] == "not_acceptable"


def test_an_overlay_is_the_original_with_the_mask_tinted_over_it(client: LambdaClient) -> None:
    photo = scene_photo(100, 80, index=5)

    response = client.post("/v1/segment?overlay=true", content=encode_image(photo))

    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    drawn = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB")).astype(int)
    assert drawn.shape == (80, 100, 3)
    mask = png_mask(client.post("/v1/segment", content=encode_image(photo), headers={"accept": "image/png"}).content)
    original = np.asarray(photo).astype(int)
    assert np.array_equal(drawn[mask == 0], original[mask == 0]), "background pixels are left as they were"
    if (mask != 0).any():
        assert np.abs(drawn[mask != 0] - original[mask != 0]).mean() > 5, "classes are tinted"


def test_full_size_answers_are_bounded_but_json_areas_are_not(segmenter: Path) -> None:
    client = LambdaClient(Settings(model_dir=segmenter, max_mask_pixels=100 * 100))
    data = encode_image(scene_photo(200, 150))

    too_big = client.post("/v1/segment", content=data, headers={"accept": "image/png"})
    areas = client.post("/v1/segment", content=data)

    assert too_big.status_code == 413 and too_big.json()["error"] == "payload_too_large"
    assert areas.status_code == 200 and areas.json()["size"] == [200, 150]


def test_routes_of_another_task_refuse_with_a_stable_code(client: LambdaClient) -> None:
    response = client.post("/v1/classify", content=encode_image(scene_photo(64, 64)))

    assert response.status_code == 404 and response.json()["error"] == "task_not_served"
    assert "segmentation" in response.json()["message"]


def test_v2_serves_the_label_map_the_graph_ends_at_and_v1_answers_the_same_mask(
    client: LambdaClient, segmenter: Path
) -> None:
    manifest = read_manifest(segmenter)
    png = encode_image(scene_photo(SIDE, SIDE))
    encoded = base64.b64encode(png).decode()
    base64_bytes = {"content_type": "base64"}
    body = {
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "parameters": base64_bytes, "data": [encoded]}]
    }

    response = client.post(f"/v2/models/{manifest.name}/infer", json_body=body)

    assert response.status_code == 200, response.content
    (output,) = response.json()["outputs"]
    assert output == {**output, "name": "classes", "datatype": "UINT8", "shape": [1, SIDE, SIDE]}
    label_map = np.asarray(output["data"], dtype=np.uint8).reshape(output["shape"])
    assert set(np.unique(label_map)) <= set(range(len(manifest.labels)))
    as_png = client.post("/v1/segment", png, headers={"accept": "image/png"})
    with Image.open(io.BytesIO(as_png.content)) as mask:
        np.testing.assert_array_equal(np.asarray(mask), label_map[0])


def test_batch_results_carry_each_images_areas_or_its_error(segmenter: Path) -> None:
    model = Model(segmenter)
    items = [
        Item("incoming/job/a.png", encode_image(scene_photo(90, 70))),
        Item("incoming/job/broken.png", b"not an image"),
        Item("incoming/job/b.png", encode_image(scene_photo(30, 40, 2))),
    ]

    results = classify(model, items, top_k=5)

    assert [r["key"] for r in results] == [i.key for i in items]
    assert [r["status"] for r in results] == ["ok", "error", "ok"]
    assert results[0]["size"] == [90, 70] and results[2]["size"] == [30, 40]
    assert sum(c["pixels"] for c in results[2]["classes"]) == 30 * 40
    assert results[1]["error"] == "invalid_image"
    lines = table(results).splitlines()
    assert (
        lines[1].split()[:2] == ["incoming/job/a.png", "ok"]
        and lines[1].split()[2] == results[0]["classes"][0]["label"]
    )
    assert "invalid_image" in lines[2]


def test_the_pre_traffic_check_compares_golden_masks(segmenter: Path, tmp_path: Path) -> None:
    invoke = LambdaClient(Settings(model_dir=segmenter)).invoke
    sha = read_manifest(segmenter).model_sha256
    samples = read_golden(segmenter)
    assert samples and all("mask" in s.answer for s in samples)
    assert check_version(invoke, segmenter, expected_sha256=sha, max_latency_ms=5000).passed

    # WHEN the expected masks no longer match what the version answers, THEN the check fails naming the sample
    tampered = tmp_path / "artifact"
    tampered.mkdir()
    for path in segmenter.rglob("*"):
        if path.is_file():
            target = tampered / path.relative_to(segmenter)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    first = samples[0].answer["mask"]
    with Image.open(tampered / first) as recorded:
        expected = np.asarray(recorded)
    (tampered / first).write_bytes(mask_png(((expected + 1) % len(scenes.LABELS)).astype(np.uint8)))
    report = check_version(invoke, tampered, expected_sha256=sha, max_latency_ms=5000)
    assert not report.passed and any(samples[0].file in p and "agrees on" in p for p in report.problems)


def test_golden_json_records_the_dominant_class_and_its_share(segmenter: Path) -> None:
    document = json.loads((segmenter / "golden" / "golden.json").read_text())
    for sample in document["samples"]:
        with Image.open(segmenter / sample["answer"]["mask"]) as recorded:
            mask = np.asarray(recorded)
        counts = np.bincount(mask.ravel(), minlength=len(scenes.LABELS))
        foreground = counts[1:].sum() > 0
        assert sample["index"] == (int(counts[1:].argmax()) + 1 if foreground else 0)
        assert sample["score"] == pytest.approx(counts[sample["index"]] / mask.size, abs=1e-6)


USER_SEGMENTER = """
import torch
from torch import nn


class QuarterRes(nn.Module):  # logits at a quarter of the input side: the server upsamples them
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU())
        self.classifier = nn.Conv2d(16, num_classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.classifier(self.body(x))}
"""


def test_a_users_module_and_its_onnx_file_export_with_the_stride_they_have(
    export: Export, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "user_segmenter.py").write_text(USER_SEGMENTER)
    monkeypatch.syspath_prepend(str(tmp_path))
    common = ("--task", "segmentation", "--data", "synthetic:40", "--image-size", "32", "--quantize", "none")

    # GIVEN a user's module whose logits come out at a quarter of the input side
    module = export(*common, "--arch", "user_segmenter:QuarterRes", "--epochs", "1", "--optimize", "none")

    assert module.code == 0, module.stderr
    assert module.manifest.task_config == {"logits_stride": 4, "background": 0}
    # WHEN its ONNX file is imported with the task and its layout declared
    (tmp_path / "labels.txt").write_text("\n".join(scenes.LABELS) + "\n")
    (tmp_path / "layout.json").write_text('{"logits_stride": 4, "background": 0}')
    prep = module.manifest.preprocessing
    onnx_args = ("--from-onnx", str(module.out / "model.onnx"), "--labels", str(tmp_path / "labels.txt"))
    onnx_args += ("--mean", *map(str, prep.mean), "--std", *map(str, prep.std))
    imported = export(*common, *onnx_args, "--task-config", str(tmp_path / "layout.json"))

    # THEN it is served as the same segmenter: same metrics, masks at the original size
    assert imported.code == 0, imported.stderr
    assert imported.manifest.task_config == module.manifest.task_config
    assert imported.manifest.metrics["fp32"]["miou"] == pytest.approx(module.manifest.metrics["fp32"]["miou"])
    answer = LambdaClient(Settings(model_dir=imported.out)).post("/v1/segment", encode_image(scene_photo(50, 70)))
    assert answer.status_code == 200 and answer.json()["size"] == [50, 70]
    # AND a wrong declaration is refused by name
    (tmp_path / "layout.json").write_text('{"logits_stride": "four"}')
    refused = export(*common, *onnx_args, "--task-config", str(tmp_path / "layout.json"))
    assert refused.code == 1 and "--task-config: manifest task_config.logits_stride must be" in refused.stderr


def test_a_masks_folder_on_disk_exports_to_a_served_segmenter(export: Export, tmp_path: Path) -> None:
    # GIVEN the masks layout: labels.txt, train/ and val/ of images/x.jpg + masks/x.png (palette label indices)
    root = tmp_path / "defects"
    (root / "labels.txt").parent.mkdir()
    (root / "labels.txt").write_text("\n".join(scenes.LABELS) + "\n")
    for split, n in (("train", 24), ("val", 8)):
        for i, scene in enumerate(scenes.scenes(n, split="train" if split == "train" else "test", size=80)):
            (root / split / "images").mkdir(parents=True, exist_ok=True)
            (root / split / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(scene.image).save(root / split / "images" / f"{i}.jpg", quality=95)
            (root / split / "masks" / f"{i}.png").write_bytes(mask_png(scene.mask))

    # WHEN a segmenter is exported from it
    run = export(
        "--task", "segmentation", "--arch", "lraspp_mobilenet_v3_large", "--data", f"masks:{root}",
        "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--quantize", "none",
    )  # fmt: skip

    # THEN it carries the folder's labels, was scored on val/, and serves masks at the original size
    assert run.code == 0, run.stderr
    manifest = run.manifest
    assert manifest.labels == scenes.LABELS
    assert manifest.details["data"] == {"kind": "masks", "train_images": 24, "held_out_images": 8}
    assert 0 <= manifest.metrics["served"]["miou"] <= 1
    photo = encode_image(Image.open(root / "val" / "images" / "0.jpg").resize((120, 90)))
    answer = LambdaClient(Settings(model_dir=run.out)).post("/v1/segment", photo, headers={"accept": "image/png"})
    with Image.open(io.BytesIO(answer.content)) as mask:
        assert answer.status_code == 200 and mask.size == (120, 90) and mask.mode == "P"
