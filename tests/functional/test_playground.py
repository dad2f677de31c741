"""The playground page in a real headless Chromium (Debian's chromium + chromium-driver, driven by selenium):
upload an image, see the predictions and the heatmap, locally and under an API Gateway stage prefix; for a
detector, see each box drawn where it is in the original image."""

from __future__ import annotations

import base64
import colorsys
import hashlib
import io
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from mangum import Mangum
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from amaas.api.app import create_app
from amaas.artifact.manifest import MODEL_FILE, Manifest, Preprocessing, TensorSpec, file_entry, write_manifest
from amaas.settings import Settings
from amaas_export.data import synthetic

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def test_page_is_self_contained(base_url: str) -> None:
    page = httpx.get(f"{base_url}/")

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", page.text), "no external scripts, styles or fonts"
    assert "fetch(base + path" in page.text


def test_page_runs_only_its_own_inline_script_and_cannot_be_framed(base_url: str) -> None:
    page = httpx.get(f"{base_url}/")

    policy = dict(
        part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";") if part.strip()
    )
    # exactly the page's own script and style, by hash: an injected <script> or inline handler would not run
    (script,) = re.findall(r"<script>(.*?)</script>", page.text, flags=re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert policy["script-src"] == f"'sha256-{digest}'"
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1200,900",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def upload_and_wait(driver: object, url: str, image: Path) -> tuple[list[str], int]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)  # type: ignore[attr-defined]
    driver.find_element(By.ID, "file").send_keys(str(image))  # type: ignore[attr-defined]
    wait = WebDriverWait(driver, 30)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#predictions li"))
    heatmap_ready = "const h = document.getElementById('heatmap'); return h.complete && h.naturalWidth > 0;"
    wait.until(lambda d: d.execute_script(heatmap_ready))
    labels = [
        li.find_element(By.CLASS_NAME, "label").text for li in driver.find_elements(By.CSS_SELECTOR, "#predictions li")
    ]  # type: ignore[attr-defined]
    width: int = driver.execute_script("return document.getElementById('heatmap').naturalWidth")  # type: ignore[attr-defined]
    return labels, width


@pytest.mark.parametrize("where", ["local", "lambda"])
def test_upload_shows_predictions_and_heatmap(
    browser: object, where: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # GIVEN the page served locally at / or by Lambda under the /prod stage
    url = request.getfixturevalue("local_server" if where == "local" else "lambda_url")
    image = tmp_path / "star.png"
    synthetic.sample("star", variant=1).resize((128, 128)).save(image)

    # WHEN a user picks an image
    labels, heatmap_width = upload_and_wait(browser, url, image)

    # THEN the top 5 appear with the right class first, and the heatmap loads
    assert len(labels) == 5 and labels[0] == "star"
    assert heatmap_width == 224
    from selenium.webdriver.common.by import By

    assert "cifar-cnn-synthetic" in browser.find_element(By.ID, "model").text  # type: ignore[attr-defined]


def test_screenshot(browser: object, local_server: str, tmp_path: Path) -> None:
    image = tmp_path / "heart.png"
    synthetic.sample("heart", variant=2).resize((128, 128)).save(image)
    upload_and_wait(browser, local_server, image)

    png = browser.get_screenshot_as_png()  # type: ignore[attr-defined]
    (tmp_path / "playground.png").write_bytes(png)

    with Image.open(io.BytesIO(png)) as shot:
        assert shot.size[0] >= 1000
        colours = shot.convert("RGB").resize((120, 90)).getcolors(maxcolors=120 * 90)
        assert colours is not None and len(colours) > 50, "a rendered page, not a blank screen"


def test_the_page_asks_for_the_api_key_and_sends_it(browser: object, handler_module: object, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.gateway import api_gateway

    image = tmp_path / "ring.png"
    synthetic.sample("ring", variant=1).resize((96, 96)).save(image)
    with api_gateway(handler_module.handler, api_key="s3cr3t-key") as url:  # type: ignore[attr-defined]
        # GIVEN the page and health are open, but classifying needs the key
        browser.get(url)  # type: ignore[attr-defined]
        browser.find_element(By.ID, "file").send_keys(str(image))  # type: ignore[attr-defined]
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: "HTTP 403" in d.find_element(By.ID, "status").text)
        # WHEN the user types the key and tries again
        browser.find_element(By.ID, "apikey").send_keys("s3cr3t-key")  # type: ignore[attr-defined]
        browser.execute_script("document.getElementById('apikey').dispatchEvent(new Event('change'))")  # type: ignore[attr-defined]
        browser.execute_script("document.getElementById('file').value = ''")  # type: ignore[attr-defined]
        browser.find_element(By.ID, "file").send_keys(str(image))  # type: ignore[attr-defined]
        # THEN the predictions come back
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#predictions li"))
        assert "ring" in browser.find_element(By.ID, "predictions").text  # type: ignore[attr-defined]
        # AND the key is kept for this tab only, never in storage other tabs and later visits can read
        stored = "return [sessionStorage.getItem('amaas-api-key'), localStorage.getItem('amaas-api-key')]"
        assert browser.execute_script(stored) == ["s3cr3t-key", None]  # type: ignore[attr-defined]


def known_boxes_detector(model_dir: Path) -> Path:
    """A detector of the ``boxes`` layout whose graph answers the same two detections for any image: a square
    at (4, 8)-(20, 24) of its 32 px input, score 0.9, and a circle below the default score threshold."""
    constants = {
        "found_boxes": np.array([[[4, 8, 20, 24], [0, 0, 32, 32]]], np.float32),
        "found_scores": np.array([[0.9, 0.1]], np.float32),
        "found_labels": np.array([[2, 1]], np.int64),
    }
    graph = helper.make_graph(
        [helper.make_node("Identity", [name], [name.removeprefix("found_")]) for name in constants],
        "known-boxes",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 2, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, [1, 2]),
        ],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model_dir / MODEL_FILE))
    manifest = Manifest(
        name="known-boxes", version="1", architecture="test", labels=("background", "circle", "square"),
        input=TensorSpec("input", (1, 3, 32, 32), "float32", "NCHW"),
        output=TensorSpec("boxes", (1, -1, 4), "float32"),
        extra_outputs=(TensorSpec("scores", (1, -1), "float32"), TensorSpec("labels", (1, -1), "int64")),
        task="detection", task_config={"layout": "boxes", "score_threshold": 0.3, "max_detections": 2},
        preprocessing=Preprocessing(
            resize=32, crop=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), resize_mode="stretch"
        ),
        files={MODEL_FILE: file_entry(model_dir / MODEL_FILE)},
    )  # fmt: skip
    write_manifest(model_dir, manifest)
    return model_dir


def test_the_page_draws_each_detection_where_it_is_in_the_original_image(browser: object, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.gateway import api_gateway

    # GIVEN a detector that finds a square at (4, 8)-(20, 24) of its 32x32 input, and a 320x160 grey photo
    model_dir = known_boxes_detector(tmp_path)
    image = tmp_path / "grey.png"
    Image.new("RGB", (320, 160), (128, 128, 128)).save(image)
    with api_gateway(Mangum(create_app(Settings(model_dir=model_dir)), lifespan="off")) as url:
        # WHEN the user picks the photo
        browser.get(url)  # type: ignore[attr-defined]
        browser.find_element(By.ID, "file").send_keys(str(image))  # type: ignore[attr-defined]
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: "object(s) found" in d.find_element(By.ID, "status").text)

    # THEN the one detection above the threshold is listed in the photo's own pixels (x * 10, y * 5)
    listed = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#predictions li")]  # type: ignore[attr-defined]
    assert len(listed) == 1 and "square [40, 40, 200, 120]" in listed[0]
    # AND drawn there at the photo's size, in its class colour: on its edges, not inside or outside it
    pixels = """
        const shown = document.getElementById('heatmap');
        const canvas = document.createElement('canvas');
        canvas.width = shown.naturalWidth; canvas.height = shown.naturalHeight;
        const draw = canvas.getContext('2d');
        draw.drawImage(shown, 0, 0);
        return [[canvas.width, canvas.height]].concat(
            arguments[0].map(([x, y]) => Array.from(draw.getImageData(x, y, 1, 1).data.slice(0, 3))));
    """
    points = [(40, 80), (199, 80), (120, 119), (120, 80), (30, 80), (210, 80), (120, 140)]
    size, *colours = browser.execute_script(pixels, points)  # type: ignore[attr-defined]
    assert size == [320, 160]
    square = [round(255 * c) for c in colorsys.hls_to_rgb(((2 * 67) % 360) / 360, 0.45, 0.9)]
    edges, inside_and_outside = colours[:3], colours[3:]
    for colour in edges:
        assert max(abs(a - b) for a, b in zip(colour, square, strict=True)) <= 3, (colour, square)
    assert all(colour == [128, 128, 128] for colour in inside_and_outside), inside_and_outside
