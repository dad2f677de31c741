"""The playground page in a real headless Chromium (Debian's chromium + chromium-driver, driven by selenium):
upload an image, see the predictions and the heatmap, locally and under an API Gateway stage prefix."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

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
