"""A real browser: headless Chromium (Debian's, driven by playwright) loads the page from a live
server, uploads the sample face, starts K = 2 and decodes frames on both tiles; a smile
triggered over the data channel visibly changes the frames."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from rt_smile.runtime.engine import EngineConfig
from tests.stream.conftest import TEST_CONFIG, LiveServer, start_server, stop_server

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not CHROMIUM.exists():
    if os.environ.get("RT_SMILE_REQUIRE_BROWSER"):
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install chromium")
    pytest.skip("Debian chromium is not installed (CI installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def still_live() -> Iterator[LiveServer]:
    """Smiles only on demand and no idle head motion, so that snapshots compare the smile alone."""
    server = start_server(TEST_CONFIG, EngineConfig(episode_every=0.0, head_roll_deg=0.0, head_shift_iod=0.0))
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def _mouth(pixels: list[int], size: int) -> NDArray[np.float64]:
    rgba = np.asarray(pixels, np.float64).reshape(size, size, 4)
    return rgba[int(0.58 * size) : int(0.86 * size), int(0.3 * size) : int(0.7 * size), :3]


def test_browser_shows_two_live_tiles_and_a_triggered_smile(
    still_live: LiveServer, page: Any, sample_file
) -> None:
    baseline = still_live.counts()
    page.goto(still_live.url + "/")
    page.wait_for_function("document.querySelectorAll('#modes option').length > 0")
    page.set_input_files("#photo", str(sample_file))
    page.wait_for_function(
        "document.getElementById('face-status').textContent.includes('astronaut')", timeout=20000
    )
    page.select_option("#modes", "2")
    page.select_option("#smile-class", "posed")
    started = time.monotonic()
    page.click("#start")
    page.wait_for_function(
        "window.rtSmile.frames().length === 2 && Math.min(...window.rtSmile.frames()) >= 60", timeout=10000
    )
    assert time.monotonic() - started < 10.0
    assert page.evaluate("window.rtSmile.sizes()") == [[256, 256], [256, 256]]
    page.wait_for_function("!document.getElementById('smile').disabled", timeout=5000)

    before = [_mouth(page.evaluate(f"window.rtSmile.snapshot({i})"), 256) for i in range(2)]
    page.wait_for_timeout(700)
    still = [_mouth(page.evaluate(f"window.rtSmile.snapshot({i})"), 256) for i in range(2)]
    page.click("#smile")
    page.wait_for_timeout(1200)
    during = [_mouth(page.evaluate(f"window.rtSmile.snapshot({i})"), 256) for i in range(2)]
    for i in range(2):
        idle_change = np.abs(still[i] - before[i]).mean()
        smile_change = np.abs(during[i] - still[i]).mean()
        assert smile_change > max(2.0, 4 * idle_change), (i, idle_change, smile_change)
    assert "smile" in page.text_content("#status")
    page.click("#stop")
    assert still_live.wait_idle(baseline) == baseline
