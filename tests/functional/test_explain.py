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
from amaas.artifact.model import Model
from amaas.errors import InvalidParameterError
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
    labels = Model(artifact).manifest.labels

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
    result = explain.occlusion(Model(artifact), encode_image(image), grid=4)

    # THEN hiding cells of the shape costs more than hiding cells of background
    grid = np.array(result.grid)
    coverage = on_shape.reshape(4, 8, 4, 8).mean(axis=(1, 3))
    assert result.label == "star"
    assert grid[coverage > 0.25].mean() > grid[coverage < 0.02].mean()


@pytest.mark.parametrize(
    ("accept", "png"),
    [
        ("image/png", True),
        ("image/*", True),
        ("application/json;q=0.9, image/png", True),
        ("image/png;q=0", False),
        ("image/png;q=0.2, application/json", False),
        ("*/*", False),
        ("application/json", False),
    ],
)
def test_accept_is_negotiated_with_q_values(base_url: str, accept: str, png: bool) -> None:
    response = httpx.post(
        f"{base_url}/v1/explain?grid=2", content=star(), headers={"content-type": "image/png", "accept": accept}
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == ("image/png" if png else "application/json")


class Recording:
    """An Model whose model runs are recorded, to see exactly which pixels each run had hidden."""

    def __init__(self, classifier: Model) -> None:
        self.classifier = classifier
        self.batches: list[np.ndarray] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.classifier, name)

    def predict_pixels(self, pixels: np.ndarray) -> np.ndarray:
        self.batches.append(pixels.copy())
        return self.classifier.predict_pixels(pixels)


@pytest.mark.parametrize("grid", range(9, 17))
def test_every_cell_hides_pixels_and_the_cells_tile_the_image(artifact: Path, grid: int) -> None:
    # GIVEN a 32 px model, where 9..15 cells of ceil(32 / grid) px used to run off the image and leave cells empty
    recording = Recording(Model(artifact))

    result = explain.occlusion(recording, star(), grid=grid)  # type: ignore[arg-type]

    # THEN each of the grid x grid runs hid a non-empty rectangle, and together they cover every pixel once
    runs = np.concatenate(recording.batches)
    original, occluded = runs[0], runs[1:]
    assert len(occluded) == grid * grid == result.runs - 1
    hidden = (occluded != original[None]).any(axis=-1)
    assert hidden.any(axis=(1, 2)).all(), "a cell hid nothing"
    assert (hidden.sum(axis=0) <= 1).all(), "cells overlap"
    sides = [np.diff(np.flatnonzero(np.diff(np.r_[0, h.any(axis=a), 0]))) for h in hidden for a in (1, 0)]
    assert all(len(s) == 1 and s[0] in (32 // grid, 32 // grid + 1) for s in sides), "cells are not even"
    assert np.array(result.grid).shape == (grid, grid)
    assert (np.array(result.grid) != 0).mean() > 0.5


def test_heatmap_cells_line_up_with_the_occluded_cells() -> None:
    # GIVEN a 32 px image and a 9 x 9 grid where only the bottom-right cell mattered
    pixels = np.full((32, 32, 3), 128, dtype=np.uint8)
    drops = np.zeros((9, 9))
    drops[8, 8] = 0.5

    with Image.open(io.BytesIO(explain.heatmap(pixels, drops))) as image:
        heat = np.asarray(image.convert("RGB")).astype(int)

    # THEN the red is exactly that cell's pixels (the last of 9 even cells of 32 px: 28..32), scaled 7x to 224
    edge = int(explain.cell_edges(32, 9)[8]) * 7
    assert edge == 196
    red = heat[..., 0] - heat[..., 2] > 30
    expected = np.zeros((224, 224), dtype=bool)
    expected[edge:, edge:] = True
    np.testing.assert_array_equal(red, expected)


def test_a_grid_finer_than_the_input_is_refused(artifact: Path) -> None:
    with pytest.raises(InvalidParameterError, match="largest grid is 32"):
        explain.occlusion(Model(artifact), star(), grid=33)
