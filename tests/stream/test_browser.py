"""A real browser: headless Chromium (Debian's, driven by playwright) loads the page from a live
server, uploads the sample face, starts K = 2 and decodes frames on both tiles; a smile
triggered over the data channel visibly changes the frames."""

from __future__ import annotations

import base64
import io
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

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


def _mouth_widths(shots: list[str], detector: LandmarkDetector) -> list[float]:
    """Lip-corner distance (points 61-291) in IOD on each PNG snapshot (a data URL) of one tile,
    by MediaPipe: it grows with a smile and ignores video-compression noise."""
    widths = []
    for url in shots:
        png = base64.b64decode(url.split(",", 1)[1])
        rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        face = detect_face(rgb, detector=detector)
        widths.append(float(np.linalg.norm(face.points[61] - face.points[291]) / face.iod))
    return widths


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

    # Snapshots are taken in the page at a fixed cadence, so the detection time here cannot
    # make them miss a smile's apex.
    idle = [_mouth_widths(shots, detector) for shots in page.evaluate("window.rtSmile.record(8, 100)")]
    page.click("#smile")
    during = [_mouth_widths(shots, detector) for shots in page.evaluate("window.rtSmile.record(30, 100)")]
    for i in range(2):
        idle_change = max(idle[i]) - min(idle[i])
        smile_change = max(during[i]) - float(np.median(idle[i]))
        assert smile_change > max(0.04, 3 * idle_change), (i, idle[i], during[i])
    assert "smile" in page.text_content("#status")
    page.click("#stop")
    assert still_live.wait_idle(baseline) == baseline
