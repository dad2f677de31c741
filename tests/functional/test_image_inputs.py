"""Every way an image can reach /v1/classify, the limits around them, and images as they really arrive, all
through real HTTP against `amaas serve` and the Lambda handler behind API Gateway."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import numpy as np
import pytest
from mangum import Mangum
from moto import mock_aws
from PIL import Image

from amaas.api.app import create_app
from amaas.artifact.model import Model
from amaas.settings import Settings
from amaas_export.data import synthetic
from tests.gateway import api_gateway
from tests.helpers import encode_image
from tests.unit.test_preprocessing import png_header_only

ORDER = ("star", "ring", "heart", "cross")


def sample(label: str) -> bytes:
    return encode_image(synthetic.sample(label, variant=1))


def top_labels(result: dict[str, object]) -> list[str]:
    return [r["predictions"][0]["label"] for r in result["results"]]  # type: ignore[index,union-attr]


def test_multipart_with_one_image(base_url: str) -> None:
    response = httpx.post(f"{base_url}/v1/classify", files={"image": ("star.png", sample("star"), "image/png")})

    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == "star"


def test_multipart_with_several_images_answers_in_request_order(base_url: str) -> None:
    files = [("images", (f"{label}.png", sample(label), "image/png")) for label in ORDER]

    response = httpx.post(f"{base_url}/v1/classify?top_k=2", files=files)

    assert response.status_code == 200, response.text
    result = response.json()
    assert top_labels(result) == list(ORDER)
    assert all(len(r["predictions"]) == 2 for r in result["results"])


def test_json_list_of_images_runs_as_one_batch(base_url: str, artifact: Path) -> None:
    encoded = [base64.b64encode(sample(label)).decode() for label in ORDER]

    response = httpx.post(f"{base_url}/v1/classify", json={"images": encoded})

    assert response.status_code == 200, response.text
    result = response.json()
    assert top_labels(result) == list(ORDER)
    direct = Model(artifact).infer([sample(label) for label in ORDER], k=5).results
    np.testing.assert_allclose(
        [r["predictions"][0]["score"] for r in result["results"]], [p[0].score for p in direct], rtol=1e-5
    )


def test_too_many_images_is_413(base_url: str) -> None:
    encoded = base64.b64encode(sample("star")).decode()

    response = httpx.post(f"{base_url}/v1/classify", json={"images": [encoded] * 17})

    assert response.status_code == 413
    assert response.json()["error"] == "too_many_images"
    assert "17 images in one request; the limit is 16" in response.json()["message"]


def test_one_bad_image_in_a_batch_is_named(base_url: str) -> None:
    good = base64.b64encode(sample("star")).decode()
    bad = base64.b64encode(b"definitely not an image").decode()

    response = httpx.post(f"{base_url}/v1/classify", json={"images": [good, bad, good]})

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_image"
    assert response.json()["message"].startswith("image 1:")


def test_decompression_bomb_is_refused_before_decoding(base_url: str) -> None:
    response = httpx.post(
        f"{base_url}/v1/classify", content=png_header_only(50_000, 50_000), headers={"content-type": "image/png"}
    )

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_body_over_the_limit_is_413_before_reading_it(base_url: str) -> None:
    response = httpx.post(
        f"{base_url}/v1/classify", content=b"\xff" * 4_600_000, headers={"content-type": "image/jpeg"}
    )

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_per_image_byte_limit(artifact: Path) -> None:
    app = Mangum(create_app(Settings(model_dir=artifact, max_image_bytes=500)), lifespan="off")
    with api_gateway(app) as url:
        response = httpx.post(f"{url}/v1/classify", json={"images": [base64.b64encode(sample("star")).decode()]})

    assert response.status_code == 413
    assert "image 0 is" in response.json()["message"] and "the limit is 500" in response.json()["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"images": []}, "the request carried no images"),
        ("[" * 100_000, "the JSON body is nested too deeply"),
        ('{"images": ' + "[" * 900 + "]" * 900 + "}", "each image must be a base64 string"),
    ],
    ids=["no-images", "deep-json", "deep-images"],
)
def test_empty_and_deeply_nested_json_bodies_are_400(base_url: str, body: object, message: str) -> None:
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()

    response = httpx.post(f"{base_url}/v1/classify", content=content, headers={"content-type": "application/json"})

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert response.json()["message"].startswith(message)


@pytest.fixture
def s3_api(artifact: Path) -> Iterator[tuple[str, Any]]:
    """The Lambda path with S3 references allowed for one bucket, against moto's S3."""
    with pytest.MonkeyPatch.context() as patch, mock_aws():
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        from amaas import storage

        storage._client.cache_clear()
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in ("amaas-images", "someone-elses"):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket="amaas-images", Key="uploads/star.png", Body=sample("star"))
        s3.put_object(Bucket="someone-elses", Key="star.png", Body=sample("star"))
        big = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1200, 1200, 3), dtype=np.uint8))
        s3.put_object(Bucket="amaas-images", Key="huge.png", Body=encode_image(big))
        settings = Settings(model_dir=artifact, s3_buckets=("amaas-images",), max_s3_image_bytes=1_000_000)
        with api_gateway(Mangum(create_app(settings), lifespan="off")) as url:
            yield url, s3
        storage._client.cache_clear()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"s3": "s3://amaas-images/uploads/star.png"}, 200, None),
        (
            {"images": [{"s3": "s3://amaas-images/uploads/star.png"}, base64.b64encode(sample("ring")).decode()]},
            200,
            None,
        ),
        ({"s3": "s3://someone-elses/star.png"}, 403, "forbidden"),
        ({"s3": "s3://amaas-images/missing.png"}, 404, "image_not_found"),
        ({"s3": "s3://amaas-images/huge.png"}, 413, "payload_too_large"),
        ({"s3": "https://example.com/star.png"}, 400, "invalid_request"),
    ],
    ids=["allowed", "mixed-batch", "other-bucket", "missing", "too-large", "not-s3"],
)
def test_s3_references(s3_api: tuple[str, object], body: dict[str, object], status: int, code: str | None) -> None:
    url, _ = s3_api

    response = httpx.post(f"{url}/v1/classify", json=body)

    assert response.status_code == status, response.text
    if code:
        assert response.json()["error"] == code
    elif "images" in body:
        assert top_labels(response.json()) == ["star", "ring"]
    else:
        assert response.json()["predictions"][0]["label"] == "star"


def test_s3_images_in_one_request_have_a_total_cap(s3_api: tuple[str, Any]) -> None:
    # GIVEN three S3 images, each under the 1 MB per-image limit, together over the 2 MB per request
    url, s3 = s3_api
    rng = np.random.default_rng(1)
    for i in range(3):
        noise = Image.fromarray(rng.integers(0, 256, (520, 520, 3), dtype=np.uint8))
        body = encode_image(noise)
        assert 750_000 < len(body) < 1_000_000
        s3.put_object(Bucket="amaas-images", Key=f"part-{i}.png", Body=body)
    refs = [{"s3": f"s3://amaas-images/part-{i}.png"} for i in range(3)]

    # WHEN they come in one request
    response = httpx.post(f"{url}/v1/classify", json={"images": refs})
    two = httpx.post(f"{url}/v1/classify", json={"images": refs[:2]})

    # THEN it is refused with the total limit, while two of them fit
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "payload_too_large"
    assert "add up to more than 2000000 bytes" in response.json()["message"]
    assert two.status_code == 200, two.text


def test_first_frame_of_an_animation_is_used(artifact: Path) -> None:
    star, bar = synthetic.sample("star", variant=1), synthetic.sample("bar", variant=1)
    buffer = io.BytesIO()
    star.save(buffer, "GIF", save_all=True, append_images=[bar], duration=100, loop=0)

    (ranked,) = Model(artifact).infer([buffer.getvalue()], k=1).results

    assert ranked[0].label == "star"


def test_large_jpeg_is_decoded_in_draft_mode_close_to_a_full_decode(artifact: Path) -> None:
    from amaas.artifact import imaging

    # GIVEN a 12-megapixel photo-like JPEG (smooth gradients and a shape, plus sensor noise)
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:3000, 0:4000]
    pixels = np.stack([xs / 16 % 256, ys / 12 % 256, (xs + ys) / 28 % 256], axis=-1)
    pixels = np.clip(pixels + rng.normal(0, 6, pixels.shape), 0, 255).astype(np.uint8)
    data = encode_image(Image.fromarray(pixels), "JPEG", quality=90)
    prep = Model(artifact).manifest.preprocessing

    # WHEN it is decoded for the model (draft mode) and in full
    fast = imaging.decode_pixels(data, prep, imaging.Limits())
    decoded = imaging.decode(data, imaging.Limits())
    full = imaging.to_model(decoded, prep)
    with Image.open(io.BytesIO(data)) as opened:
        drafted = imaging.draft(opened, prep.resize)

    # THEN the draft decode really is reduced (libjpeg's 1/8 scale here), yet keeps twice the side the resize needs
    assert decoded.size == (4000, 3000)
    assert drafted == (500, 375) and min(drafted) >= 2 * prep.resize
    # AND the model sees practically the same pixels
    difference = np.abs(fast.astype(np.int16) - full.astype(np.int16))
    assert difference.mean() < 1.0 and np.percentile(difference, 99) <= 4
