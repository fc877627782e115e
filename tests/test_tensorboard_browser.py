"""TensorBoard without an account, as a researcher meets it: `tensorboard --logdir` over a run's folder, opened in
a browser, draws the run's curves. A 200 from the server says little (the page is a JavaScript app that fetches
the scalars afterwards and draws them), so headless Chromium, driven by Playwright, renders the page and its
screenshots are checked for the drawn line. Screenshots are taken in real time until the line appears: a single
shot after a virtual-time budget (`chromium --screenshot`) caught the card before its scalars arrived, on a
loaded machine at every budget tried (CI, stop 35). Slow tier; skipped where no Chromium is installed (.ci/run
installs Debian's)."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from conftest import compose_config
from sweeps import screenshot
from training import train

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    screenshot.chromium() is None, reason="no Chromium on PATH: install Debian's (`apt-get install -y chromium`), as .ci/run does")]

# The Time Series dashboard's first run colour (#425066): its line, and the dot beside the run's name.
RUN_COLOUR = np.array([66, 80, 102])
# forceSVG: the chart as SVG paths; its default WebGL renderer draws from a worker that headless Chromium's
# screenshot does not wait for (seen here: the card, its axes and values, no line).
URL = "http://127.0.0.1:{port}/?forceSVG=true&tagFilter={tag}#timeseries"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tensorboard(tmp_path_factory):
    """A 4-epoch run's folder served by TensorBoard on localhost, once its scalars are loaded."""
    study = tmp_path_factory.mktemp("study")
    train(compose_config("epochs=4", "tensorboard=true", "lr=0.01", "hidden=8"), study / "run")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(study), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while True:  # TensorBoard reads the logdir after it starts listening
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/scalars/tags", timeout=5) as r:
                    if "valid/mse" in json.load(r).get("run/tensorboard", {}):
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"TensorBoard did not serve run/tensorboard's scalars: {server.stderr.read1().decode()[-2000:]}"
                            if server.poll() is not None else "TensorBoard served no scalars within 90 s")
            time.sleep(1)
        yield port, tmp_path_factory.mktemp("shots")
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, off the network (Playwright's own browsers are downloads)."""
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=screenshot.chromium(), args=screenshot.FLAGS[1:])
        yield chromium
        chromium.close()


def shots(browser, url: str, folder, name: str, seconds: float):
    """Screenshots of `url` as [H, W, 3] arrays of 0-255 ints, one about every half second for `seconds`, each with
    the path of the PNG that keeps the latest one (to look at when a check fails)."""
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    try:
        page.goto(url)
        deadline = time.monotonic() + seconds
        while True:
            png = page.screenshot(path=folder / f"{name}.png")
            last = time.monotonic() > deadline
            yield np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int), folder / f"{name}.png"
            if last:
                return
            time.sleep(0.5)
    finally:
        page.close()


def line_columns(image: np.ndarray) -> int:
    """How many pixel columns hold the run's colour: a line across 4 epochs spans hundreds; the legend's dot
    beside the run's name, about ten."""
    near = np.abs(image - RUN_COLOUR).sum(axis=2) <= 30
    return int(near.any(axis=0).sum())


def test_tensorboard_in_a_browser_draws_the_runs_validation_curve(tensorboard, browser):
    port, folder = tensorboard
    # Here the line shows 3-4 s after the page is opened; 120 s leaves room for a loaded machine.
    columns = 0
    for image, path in shots(browser, URL.format(port=port, tag="valid%2Fmse"), folder, "valid", 120):
        columns = line_columns(image)
        if columns >= 100:
            break
    assert columns >= 100, f"no drawn valid/mse line within 120 s: {path} has {columns} columns of {RUN_COLOUR}"
    # The same check on a page whose filter matches no tag: no chart, so no line in any shot (the check can tell).
    for image, path in shots(browser, URL.format(port=port, tag="no_such_tag"), folder, "empty", 10):
        assert line_columns(image) < 30, f"the run's colour outside a chart: {line_columns(image)} columns (last shot: {path})"
