"""The demo in a real browser: Debian's chromium and chromium-driver, driven by Selenium, open the page of
a tiny VAE, click Generate, wait for the image and check its pixels are not blank, upload an image to
Score and read the answer. Screenshots go to $HF_VAE_ARTIFACTS_DIR/demo (CI sets it to the run's output
folder; locally outputs/test-artifacts/demo).

Locally, without chromium / chromedriver, the test is skipped with that reason; where $CI is set it
fails instead: CI installs them (.ci/run) and the browser test must run there."""

from __future__ import annotations

import io
import os
import shutil
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio", reason="the demo needs the `demo` extra (gradio)")
pytest.importorskip("selenium", reason="the browser test needs selenium (requirements.lock)")

from hf_vae import VAEConfig, VAEModel  # noqa: E402
from hf_vae.demo.app import build_demo  # noqa: E402
from hf_vae.demo.session import DemoSession  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 120  # a busy 2-core machine: the first page load compiles nothing, but the model calls queue


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("HF_VAE_ARTIFACTS_DIR") or REPO / "outputs" / "test-artifacts") / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def browser():
    """A headless chromium driven by Debian's chromedriver, or skip (fail in CI) naming what is missing."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", binary), ("chromedriver (chromium-driver)", driver)) if path is None]
    if missing:
        reason = f"no {' and no '.join(missing)} installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI: {reason}; .ci/run installs them")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,1400"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_generate_and_score_in_chromium(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser()
    torch.manual_seed(0)
    model = VAEModel(VAEConfig(image_size=8, num_channels=1, hidden_channels=[8], num_res_blocks=0, latent_dim=4)).eval()
    demo = build_demo(DemoSession(model), title="tiny VAE")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    shots = artifacts_dir()
    wait = WebDriverWait(driver, TIMEOUT_S)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait.until(ready.element_to_be_clickable((By.ID, "generate-button"))).click()
        image = wait.until(ready.visibility_of_element_located((By.CSS_SELECTOR, "#generate-output img[src]")))
        driver.save_screenshot(str(shots / "generate.png"))
        # The image the page shows, as served: a grid of 16 samples, not a blank (one-colour) picture.
        with urllib.request.urlopen(image.get_attribute("src"), timeout=30) as answer:
            pixels = np.asarray(Image.open(io.BytesIO(answer.read())).convert("L"), dtype=np.float32)
        assert pixels.shape[0] > 8 and pixels.std() > 1.0 and len(np.unique(pixels)) > 10
        # And as drawn on screen (the element's own screenshot).
        drawn = np.asarray(Image.open(io.BytesIO(image.screenshot_as_png)).convert("L"), dtype=np.float32)
        assert drawn.std() > 1.0

        driver.find_element(By.XPATH, "//button[@role='tab' and contains(normalize-space(), 'Score')]").click()
        upload = tmp_path / "upload.png"
        Image.fromarray((np.random.default_rng(0).random((64, 48)) * 255).astype(np.uint8)).save(upload)
        file_input = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#score-input input[type=file]")))
        file_input.send_keys(str(upload))
        wait.until(ready.visibility_of_element_located((By.CSS_SELECTOR, "#score-input img")))
        wait.until(ready.element_to_be_clickable((By.ID, "score-button"))).click()
        wait.until(ready.text_to_be_present_in_element((By.ID, "score-output"), "nll_nats"))
        driver.save_screenshot(str(shots / "score.png"))
        text = driver.find_element(By.ID, "score-output").text
        assert "bits_per_dim" in text and "IWAE" in text
        assert (shots / "generate.png").stat().st_size > 0 and (shots / "score.png").stat().st_size > 0
    finally:
        driver.quit()
        demo.close()
