"""Detection end to end: `amaas export --task detection` (SSDlite on synthetic scenes, small) and the artifact
served through the Lambda handler: POST /v1/detect with boxes in the original image's pixels, its query
parameters, batches, other tasks' routes, /v2 raw tensors, and the pre-traffic check on the golden boxes."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mangum import Mangum
from PIL import Image

from amaas.api.app import create_app
from amaas.artifact.manifest import read_manifest
from amaas.artifact.model import Model
from amaas.artifact.tasks.detection import DetectionConfig, decode_ssd
from amaas.rollout import api_event, check_version
from amaas.settings import Settings
from amaas_export.data import scenes
from tests.functional.conftest import Export
from tests.helpers import LambdaContext, encode_image

# Tiny on purpose (CI budget): 48 scenes at 64 px, one epoch. Boxes are then few and weak, so tests that need
# detections ask for them with ?score_threshold=0; what they check is geometry and the contract, not quality.
DETECTOR_EXPORT = {
    "task": "detection",
    "arch": "ssdlite320_mobilenet_v3_large",
    "data": "synthetic:48",
    "image_size": 64,
    "epochs": 1,
    "batch_size": 16,
    "seed": 0,
    "fold_normalization": "off",
}


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from amaas_export.config import ExportConfig
    from amaas_export.pipeline import run_export

    out = tmp_path_factory.mktemp("detector") / "model"
    run_export(ExportConfig(out=out, **DETECTOR_EXPORT), log=lambda line: None)  # type: ignore[arg-type]
    return out


@pytest.fixture(scope="module")
def handler(detector: Path) -> Any:
    app = create_app(Settings.from_env(model_dir=detector, ort_threads=1))
    app.state.model.load()
    mangum = Mangum(app, lifespan="off")
    return lambda event: mangum(event, LambdaContext())


def post(handler: Any, path: str, body: bytes, content_type: str = "image/png", query: str = "") -> dict[str, Any]:
    event = api_event("POST", path, body=body, content_type=content_type)
    if query:
        pairs = dict(p.split("=") for p in query.split("&"))
        event["queryStringParameters"] = pairs
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in pairs.items()}
    response: dict[str, Any] = handler(event)
    response["json"] = json.loads(response["body"]) if response.get("body") else None
    return response


def test_the_export_writes_a_detection_artifact_with_its_decoding_contract(detector: Path) -> None:
    manifest = read_manifest(detector)
    config = DetectionConfig.from_manifest(manifest)

    assert manifest.task == "detection" and manifest.preprocessing.resize_mode == "stretch"
    assert manifest.labels == scenes.LABELS
    assert config.layout == "ssd" and config.anchors is not None
    # the anchors the manifest describes are exactly as many as the graph's rows of boxes
    model = Model(detector)
    boxes, logits = model.predict_pixels(np.zeros((1, 64, 64, 3), np.uint8))
    assert boxes.shape == (1, config.anchors.count, 4) and logits.shape == (1, config.anchors.count, len(scenes.LABELS))
    for stage in ("fp32", "int8"):
        assert set(manifest.metrics[stage]) >= {"map50", "map50_95"}
    assert manifest.metrics["parity_min_iou"] >= 0.99
    assert (detector / "predictions.png").is_file()
    assert "mAP@0.5" in (detector / "MODEL_CARD.md").read_text()


def test_boxes_come_back_in_the_original_images_pixels(detector: Path, handler: Any) -> None:
    # GIVEN a 200x100 scene (the model sees it stretched to 64x64)
    image = Image.fromarray(scenes.scene(0, split="test", size=64).image).resize((200, 100))
    body = encode_image(image)

    response = post(handler, "/v1/detect", body, query="score_threshold=0&max_detections=7")

    # THEN the route answers what the model + numpy decoding find at 64x64, stretched back to 200x100
    assert response["statusCode"] == 200, response["body"]
    found = response["json"]["detections"]
    assert len(found) == 7
    assert [d["score"] for d in found] == sorted((d["score"] for d in found), reverse=True)
    model = Model(detector)
    manifest = model.manifest
    pixels = model.decode(body).pixels
    regression, logits = (o[0] for o in model.predict_pixels(pixels[None]))
    boxes, scores, labels = decode_ssd(
        regression, logits, DetectionConfig.from_manifest(manifest), 64, score_threshold=0.0, max_detections=7
    )
    expected = np.clip(boxes * np.array([200 / 64, 100 / 64] * 2), 0, [200, 100, 200, 100])
    np.testing.assert_allclose([d["box"] for d in found], expected, atol=0.02)
    np.testing.assert_allclose([d["score"] for d in found], scores, atol=1e-5)
    assert [d["label"] for d in found] == [manifest.labels[i] for i in labels]
    assert all(0 <= d["box"][0] <= d["box"][2] <= 200 and 0 <= d["box"][1] <= d["box"][3] <= 100 for d in found)


def test_defaults_thresholds_and_refusals(handler: Any) -> None:
    body = encode_image(Image.fromarray(scenes.scene(1, split="test", size=64).image))

    default = post(handler, "/v1/detect", body)
    everything = post(handler, "/v1/detect", body, query="score_threshold=0")
    too_many = post(handler, "/v1/detect", body, query="max_detections=5000")
    not_a_number = post(handler, "/v1/detect", body, query="score_threshold=high")

    assert default["statusCode"] == 200
    assert all(d["score"] >= 0.3 for d in default["json"]["detections"])  # the manifest's default threshold
    assert len(everything["json"]["detections"]) == 100  # the manifest's cap on detections per image
    assert (too_many["statusCode"], too_many["json"]["error"]) == (422, "invalid_parameter")
    assert (not_a_number["statusCode"], not_a_number["json"]["error"]) == (422, "invalid_parameter")


def test_a_batch_answers_each_image_in_order_and_other_tasks_routes_refuse(handler: Any) -> None:
    images = [encode_image(Image.fromarray(scenes.scene(i, split="test", size=64).image)) for i in range(3)]
    batch_body = json.dumps({"images": [base64.b64encode(i).decode() for i in images]}).encode()

    batch = post(handler, "/v1/detect", batch_body, "application/json", query="score_threshold=0.05")
    alone = [post(handler, "/v1/detect", i, query="score_threshold=0.05")["json"]["detections"] for i in images]
    classify = post(handler, "/v1/classify", images[0])

    assert batch["statusCode"] == 200
    assert [r["detections"] for r in batch["json"]["results"]] == alone
    assert (classify["statusCode"], classify["json"]["error"]) == (404, "task_not_served")


def test_v2_serves_the_raw_heads_with_their_shapes(detector: Path, handler: Any) -> None:
    manifest = read_manifest(detector)
    pixels = np.zeros((2, 3, 64, 64), np.float32)
    request = {
        "inputs": [{"name": "input", "shape": [2, 3, 64, 64], "datatype": "FP32", "data": pixels.ravel().tolist()}]
    }

    response = post(handler, f"/v2/models/{manifest.name}/infer", json.dumps(request).encode(), "application/json")

    assert response["statusCode"] == 200, response["body"]
    outputs = {o["name"]: o for o in response["json"]["outputs"]}
    anchors = DetectionConfig.from_manifest(manifest).anchors
    assert anchors is not None
    assert outputs["boxes"]["shape"] == [2, anchors.count, 4]
    assert outputs["logits"]["shape"] == [2, anchors.count, len(manifest.labels)]


def test_the_pre_traffic_check_passes_the_exported_version(detector: Path, handler: Any) -> None:
    sha = read_manifest(detector).model_sha256

    report = check_version(handler, detector, expected_sha256=sha, max_latency_ms=60_000)

    assert report.passed, report.problems


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge image and holds no pixels: refused before decoding, by its header."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("body", "query", "status", "code"),
    [
        (b"not an image at all", "", 400, "invalid_image"),
        (png_header_claiming(100_000, 100_000), "", 413, "payload_too_large"),
        (None, "score_threshold=nan", 422, "invalid_parameter"),
        (None, "max_detections=0", 422, "invalid_parameter"),
    ],
)
def test_hostile_requests_get_the_classifiers_4xx(
    handler: Any, body: bytes | None, query: str, status: int, code: str
) -> None:
    image = body if body is not None else encode_image(Image.fromarray(scenes.scene(2, split="test", size=64).image))

    response = post(handler, "/v1/detect", image, query=query)

    assert (response["statusCode"], response["json"]["error"]) == (status, code)


def test_batch_results_carry_each_images_detections_or_its_error(detector: Path) -> None:
    from amaas.batch.results import Item, classify

    model = Model(detector)
    image = encode_image(Image.fromarray(scenes.scene(3, split="test", size=64).image).resize((120, 80)))
    items = [Item("incoming/job/a.png", image), Item("incoming/job/broken.png", b"not an image")]

    results = classify(model, items, top_k=5)

    assert [r["status"] for r in results] == ["ok", "error"] and results[1]["error"] == "invalid_image"
    (alone,) = model.infer([image]).results
    assert results[0]["detections"] == [d.to_json() for d in alone]


def test_an_onnx_detector_imports_with_its_layout_declared_and_answers_as_the_original(
    detector: Path, export: Export, tmp_path: Path
) -> None:
    # GIVEN the SSD heads of an exported detector as a plain ONNX file, and the layout its outputs follow
    original = read_manifest(detector)
    (tmp_path / "labels.txt").write_text("\n".join(original.labels) + "\n")
    (tmp_path / "layout.json").write_text(json.dumps(original.task_config))
    prep = original.preprocessing
    common = ("--task", "detection", "--data", DETECTOR_EXPORT["data"], "--quantize", "none")
    onnx_args = ("--from-onnx", str(detector / "model.onnx"), "--labels", str(tmp_path / "labels.txt"))
    onnx_args += ("--mean", *map(str, prep.mean), "--std", *map(str, prep.std))

    # WHEN it is imported with the task and the layout declared
    imported = export(*common, *onnx_args, "--task-config", str(tmp_path / "layout.json"))

    # THEN it is scored on the same held-out scenes as the original was and detects the same boxes
    assert imported.code == 0, imported.stderr
    manifest = imported.manifest
    assert manifest.task == "detection" and manifest.task_config == original.task_config
    assert manifest.metrics["served"]["map50"] == pytest.approx(original.metrics["served"]["map50"], abs=1e-6)
    scene = encode_image(Image.fromarray(scenes.scene(3, split="test", size=64).image).resize((150, 100)))
    answers = [
        Model(path).infer([scene], score_threshold=0.0, max_detections=5).results[0]
        for path in (detector, imported.out)
    ]
    assert [d.index for d in answers[1]] == [d.index for d in answers[0]] and answers[0]
    np.testing.assert_allclose([d.box for d in answers[1]], [d.box for d in answers[0]], atol=1e-3)
    # AND a layout that does not fit the file is refused by name, before anything is written
    (tmp_path / "layout.json").write_text(json.dumps({**original.task_config, "layout": "yolo"}))
    refused = export(*common, *onnx_args, "--task-config", str(tmp_path / "layout.json"))
    assert refused.code == 1 and "layout" in refused.stderr and not refused.out.exists()


def write_coco(root: Path, count: dict[str, int]) -> None:
    """A COCO tree of synthetic scenes at 96 px: ``annotations/instances_<split>.json`` (category ids 11-14,
    boxes as ``[x, y, width, height]``) and ``<split>/*.jpg``."""
    categories = [{"id": 10 + i, "name": name} for i, name in enumerate(scenes.LABELS) if i]
    (root / "annotations").mkdir(parents=True)
    for split, n in count.items():
        (root / split).mkdir()
        images, annotations = [], []
        for i, scene in enumerate(scenes.scenes(n, split="train" if split.startswith("train") else "test", size=96)):
            Image.fromarray(scene.image).save(root / split / f"{i:06d}.jpg", quality=95)
            images.append({"id": i, "file_name": f"{i:06d}.jpg", "width": 96, "height": 96})
            for box, label in zip(scene.boxes.tolist(), scene.labels.tolist(), strict=True):
                x0, y0, x1, y1 = box
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": i,
                        "category_id": 10 + label,
                        "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "area": (x1 - x0) * (y1 - y0),
                        "iscrowd": 0,
                    }
                )
        document = {"images": images, "annotations": annotations, "categories": categories}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(document))


def test_a_coco_dataset_on_disk_exports_to_a_served_detector(export: Export, tmp_path: Path) -> None:
    # GIVEN a COCO tree (instances JSON + JPEGs) with its own category ids
    write_coco(tmp_path / "coco", {"train2017": 32, "val2017": 12})

    # WHEN a detector is exported from it
    run = export(
        "--task", "detection", "--arch", DETECTOR_EXPORT["arch"], "--data", f"coco:{tmp_path / 'coco'}",
        "--image-size", "64", "--epochs", "1", "--batch-size", "16", "--quantize", "none",
    )  # fmt: skip

    # THEN its labels are the categories in id order after background, it was scored on the val split, and
    # it serves /v1/detect with boxes in the original image's pixels
    assert run.code == 0, run.stderr
    manifest = run.manifest
    assert manifest.labels == scenes.LABELS
    assert manifest.details["data"] == {"kind": "coco", "train_images": 32, "held_out_images": 12}
    assert 0 <= manifest.metrics["served"]["map50"] <= 1
    photo = encode_image(Image.open(tmp_path / "coco" / "val2017" / "000000.jpg").resize((200, 120)))
    (answer,) = Model(run.out).infer([photo], score_threshold=0.0, max_detections=3).results
    assert answer and all(0 <= d.box[0] <= d.box[2] <= 200 and 0 <= d.box[1] <= d.box[3] <= 120 for d in answer)


def test_faster_rcnn_exports_whole_at_batch_one_and_serves_batches_image_by_image(
    export: Export, tmp_path: Path
) -> None:
    # GIVEN Faster R-CNN exported whole (transform, RPN, RoIAlign, NMS in the graph), tiny and untrained
    run = export(
        "--task", "detection", "--arch", "fasterrcnn_mobilenet_v3_large_320_fpn", "--data", "synthetic:20",
        "--image-size", "64", "--epochs", "1", "--batch-size", "8", "--quantize", "none",
    )  # fmt: skip

    # THEN the manifest says what the graph is: a batch of exactly one in, padded detections out
    assert run.code == 0, run.stderr
    manifest = run.manifest
    assert manifest.input.shape == (1, 3, 64, 64)
    assert [(o.name, o.shape) for o in manifest.outputs] == [
        ("boxes", (1, -1, 4)),
        ("scores", (1, -1)),
        ("labels", (1, -1)),
    ]
    assert manifest.task_config["layout"] == "boxes" and "anchors" not in manifest.task_config
    # AND a batch of images is answered, each on its own, in order, through the Lambda handler
    images = [encode_image(Image.fromarray(scenes.scene(i, split="test", size=64).image)) for i in range(3)]
    handler = Mangum(create_app(Settings.from_env(model_dir=run.out, ort_threads=1)), lifespan="off")
    body = json.dumps({"images": [base64.b64encode(image).decode() for image in images]}).encode()
    response = handler(api_event("POST", "/v1/detect", body=body, content_type="application/json"), LambdaContext())
    assert response["statusCode"] == 200, response["body"]
    results = json.loads(response["body"])["results"]
    assert len(results) == 3 and all(isinstance(r["detections"], list) for r in results)
    # (untrained, it finds nothing above the graph's own 0.05 score floor; which image each answer belongs to
    # is pinned for fixed-batch graphs by tests/unit/test_fixed_batch.py)
    model = Model(run.out)
    boxes, scores, labels = model.predict(model.preprocess(images))
    assert boxes.shape[:2] == scores.shape == labels.shape and boxes.shape[0] == 3
