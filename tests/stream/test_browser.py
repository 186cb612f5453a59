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

from rt_smile.config import EngineConfig
from rt_smile.face.landmarks import LandmarkDetector, detect_face
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
    """Smiles only on demand, no blinks or head motion: snapshots compare the smile alone."""
    config = EngineConfig(episode_every=0.0, blink_every=1e6, head_roll_deg=0.0, head_shift_iod=0.0)
    server = start_server(TEST_CONFIG, config)
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


def _rgb(pixels: list[int], size: int) -> NDArray[np.uint8]:
    return np.asarray(pixels, np.uint8).reshape(size, size, 4)[..., :3].copy()


def _mouth_width(page: Any, tile: int, detector: LandmarkDetector) -> float:
    """Lip-corner distance (points 61-291) in IOD on a canvas snapshot of ``tile``, by MediaPipe:
    it grows with a smile and ignores video-compression noise."""
    face = detect_face(_rgb(page.evaluate(f"window.rtSmile.snapshot({tile})"), 256), detector=detector)
    return float(np.linalg.norm(face.points[61] - face.points[291]) / face.iod)


def test_browser_shows_two_live_tiles_and_a_triggered_smile(
    still_live: LiveServer, page: Any, sample_file: Path, detector: LandmarkDetector
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

    before = [_mouth_width(page, i, detector) for i in range(2)]
    page.wait_for_timeout(700)
    still = [_mouth_width(page, i, detector) for i in range(2)]
    page.click("#smile")
    during: list[list[float]] = [[], []]
    for _ in range(6):  # snapshots over the first 2 s of the smile
        page.wait_for_timeout(300)
        for i in range(2):
            during[i].append(_mouth_width(page, i, detector))
    for i in range(2):
        idle_change = abs(still[i] - before[i])
        smile_change = max(during[i]) - still[i]
        assert smile_change > max(0.04, 3 * idle_change), (i, idle_change, during[i], still[i])
    assert "smile" in page.text_content("#status")
    page.click("#stop")
    assert still_live.wait_idle(baseline) == baseline
