"""POST /v1/explain: occlusion sensitivity, as JSON with a grid and a base64 heatmap, or as a raw PNG."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from amaas import explain
from amaas.model import ImageClassifier
from amaas_export.data import synthetic
from tests.helpers import encode_image


def star() -> bytes:
    return encode_image(synthetic.sample("star", variant=1))


def test_json_explanation_of_the_top_class(base_url: str) -> None:
    response = httpx.post(f"{base_url}/v1/explain", content=star(), headers={"content-type": "image/png"})

    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["label"], result["grid_size"], result["runs"]) == ("star", 8, 65)
    assert len(result["grid"]) == 8 and all(len(row) == 8 for row in result["grid"])
    with Image.open(io.BytesIO(base64.b64decode(result["heatmap_png"]))) as heatmap:
        assert heatmap.format == "PNG" and heatmap.size == (224, 224)


def test_png_when_the_client_asks_for_it(base_url: str) -> None:
    response = httpx.post(
        f"{base_url}/v1/explain?grid=4", content=star(), headers={"content-type": "image/png", "accept": "image/png"}
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-amaas-label"] == "star"
    with Image.open(io.BytesIO(response.content)) as heatmap:
        assert heatmap.format == "PNG"


def test_a_requested_class_by_label_or_index(base_url: str, artifact: Path) -> None:
    labels = ImageClassifier(artifact).manifest.labels

    by_label = httpx.post(
        f"{base_url}/v1/explain?target=ring&grid=2", content=star(), headers={"content-type": "image/png"}
    )
    by_index = httpx.post(
        f"{base_url}/v1/explain?target={labels.index('ring')}&grid=2",
        content=star(),
        headers={"content-type": "image/png"},
    )

    assert by_label.json()["label"] == by_index.json()["label"] == "ring"
    assert by_label.json()["score"] < 0.5


@pytest.mark.parametrize(
    ("query", "status"), [("grid=1", 422), ("grid=17", 422), ("target=zebra", 422), ("target=10", 422)]
)
def test_bad_parameters(base_url: str, query: str, status: int) -> None:
    response = httpx.post(f"{base_url}/v1/explain?{query}", content=star(), headers={"content-type": "image/png"})

    assert response.status_code == status
    assert response.json()["error"] == "invalid_parameter"


def test_one_image_only(base_url: str) -> None:
    encoded = base64.b64encode(star()).decode()

    response = httpx.post(f"{base_url}/v1/explain", json={"images": [encoded, encoded]})

    assert response.status_code == 422
    assert "exactly one image" in response.json()["message"]


def test_the_shape_matters_more_than_the_background(artifact: Path) -> None:
    # GIVEN a large star on a plain background, and where it is
    image = synthetic.sample("star", variant=1)
    pixels = np.asarray(image).astype(np.int16)
    background = np.median(pixels[[0, 0, -1, -1], [0, -1, 0, -1]], axis=0)
    on_shape = np.abs(pixels - background).sum(axis=-1) > 60

    # WHEN the top class is explained on a 4x4 grid
    result = explain.occlusion(ImageClassifier(artifact), encode_image(image), grid=4)

    # THEN hiding cells of the shape costs more than hiding cells of background
    grid = np.array(result.grid)
    coverage = on_shape.reshape(4, 8, 4, 8).mean(axis=(1, 3))
    assert result.label == "star"
    assert grid[coverage > 0.25].mean() > grid[coverage < 0.02].mean()
