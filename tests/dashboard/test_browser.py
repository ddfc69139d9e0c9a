"""End to end in a real browser: ``guardrail dashboard --token-file`` on a seeded store,
driven by Debian's headless chromium through Selenium. The login page first; then every page
opened by a direct link shows the same navigation and no Deploy button; one screenshot per
page (into the test's own folder); and a signed image uploaded on the Verify page."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from guardrail import Config, ReportStore
from guardrail.benchmarks import dashboard as bench

from .conftest import seed

PAGES = [("overview", "", "Overview"), ("generations", "generations", "Generations"),
         ("verify", "verify", "Verify a file"), ("audits", "audits", "Bias audits"),
         ("robustness", "robustness", "Robustness and detectors")]
#: the navigation every page shows, in order
NAVIGATION = ["Overview", "Generations", "Verify", "Bias audits", "Robustness and detectors"]

# CI installs Debian's chromium: there a missing browser is a failure, not a skip
pytestmark = pytest.mark.skipif(not bench.CHROMIUM.exists() and not os.environ.get("CI"),
                                reason=f"{bench.CHROMIUM} is absent (apt-get install chromium "
                                       "chromium-driver)")


class PhotoGenerator:
    """Stands in for an image model: returns a natural photograph (scikit-image's)."""

    from guardrail import Modality as _M
    from guardrail import ModelInfo as _I

    modality = _M.IMAGE
    info = _I(model_id="test:photo", revision="1")

    def generate(self, prompts, *, seed=None, params=None, hooks=None):
        import cv2

        from guardrail import Generated
        from guardrail.corpora import natural_images

        img = dict(natural_images())["skimage:astronaut"]
        return [Generated(content=cv2.resize(img, (384, 384))) for _ in prompts]


def signed_image(cfg: Config, store: ReportStore, out: Path) -> None:
    """One image through the real guard: watermarked, self-checked and C2PA-signed."""
    from guardrail.factory import init_keys, provenance_stages, watermark_stages
    from guardrail.guard import Guard

    init_keys(cfg)
    gen = PhotoGenerator()
    stages = [*watermark_stages(cfg, gen), *provenance_stages(cfg)]
    with Guard(gen, store=store, config=cfg, stages=stages) as g:
        res = g.generate("a test image", output=out, seed=3)
    assert res.status == "ok", [s.to_dict() for s in res.report.stages]
    assert res.report.stage("watermark").status.value == "ok"


@pytest.fixture
def server(tmp_path: Path):
    data = tmp_path / "data"
    url = f"sqlite:///{tmp_path / 'e2e.db'}"
    cfg = Config.load(overrides={"paths": {"data_dir": str(data)}})
    image = tmp_path / "signed.png"
    with ReportStore(url) as store:
        seed(store, tmp_path / "outputs")
        signed_image(cfg, store, image)
    with bench.dashboard_process(url, data, timeout=60) as (base, token):
        yield base, image, token


@pytest.fixture
def browser(tmp_path: Path):
    with bench.browser(tmp_path / "chromium") as drv:
        yield drv


def wait_text(drv, text: str, timeout: float = 45) -> None:
    """Wait until the page's text contains ``text`` (a page replaced while it is read - the
    login form giving way to the app - is read again)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(drv, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: text in d.find_element(By.TAG_NAME, "body").text)


def settle(drv, timeout: float = 30) -> None:
    """Wait until the app has finished running (no "running" status widget)."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not drv.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]'):
            break
        time.sleep(0.3)
    time.sleep(1.5)  # charts render after the script run


def navigation(drv) -> list[str]:
    from selenium.webdriver.common.by import By

    # the last line: the first is the icon's name (a Material Symbols ligature)
    return [e.text.strip().splitlines()[-1] for e in drv.find_elements(
        By.CSS_SELECTOR, '[data-testid="stSidebarNav"] [data-testid="stSidebarNavLink"]')
        if e.text.strip()]


def test_every_page_in_a_real_browser(server, browser, tmp_path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, image, token = server
    # a direct link without the login cookie: the server's login page, nothing else
    browser.get(f"{base}/audits")
    wait_text(browser, "Access token")
    assert "Bias audits" not in browser.find_element(By.TAG_NAME, "body").text
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, 'input[type="submit"]').click()
    wait_text(browser, "Bias audits")  # back on the page the link named
    assert browser.current_url == f"{base}/audits"
    # the first page this server runs is not the entry page: the navigation is still its own
    WebDriverWait(browser, 20).until(lambda d: navigation(d) == NAVIGATION)
    # the README's screenshots come from a real `guardrail demo --evaluations` run
    # (python -m guardrail.benchmarks.dashboard --screenshots); these are the test's own
    shots = tmp_path / "shots"
    shots.mkdir()
    for name, path, title in PAGES:
        browser.get(f"{base}/{path}")  # each page by its direct link
        wait_text(browser, title)
        if name == "overview":
            wait_text(browser, "Recent errors")
        settle(browser)
        body = browser.find_element(By.TAG_NAME, "body").text
        assert "Traceback" not in body and "Error running app" not in body, body[:2000]
        WebDriverWait(browser, 20).until(lambda d: navigation(d) == NAVIGATION)
        assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stAppDeployButton"]')
        assert "Deploy" not in body
        if name != "verify":
            browser.save_screenshot(str(shots / f"dashboard-{name}.png"))
    browser.get(f"{base}/verify")
    wait_text(browser, "Verify a file")
    assert "Files on the dashboard's machine are not read" in browser.find_element(
        By.TAG_NAME, "body").text  # no server path field without a verify folder
    upload = browser.find_element(By.CSS_SELECTOR, 'input[type="file"]')
    upload.send_keys(str(image))
    wait_text(browser, "AI-generated: signed by")
    settle(browser)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "AI-generated: signed by guardrail development signer, watermark verified" in body
    assert "Content Credentials: TRUSTED" in body
    assert "watermark guardrail-image-v2 v2: verified" in body, body[-3000:]
    assert "record: match" in body
    browser.save_screenshot(str(shots / "dashboard-verify.png"))
