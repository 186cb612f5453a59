"""The real-blink benchmark, run on a video made from the bundled sample."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from rt_smile.face.landmarks import LandmarkDetector
from rt_smile.io.images import load_image
from rt_smile.io.video import write_mp4
from rt_smile.train.fidelity import ClosedLoop
from tests.conftest import sample_path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "real_blinks.py"


def test_finds_the_blinks_of_a_video(tmp_path: Path, detector: LandmarkDetector) -> None:
    """A video of the sample whose eyes shut for 3 frames (a blink), then for 15 (too long for
    one: a look down): one blink is found where it was put, the long run is counted apart, and
    the closed loop's own blink on an open-eyed frame is measured beside it."""
    loop = ClosedLoop(load_image(sample_path()), detector)
    open_eyes, _ = loop.render({})
    shut, _ = loop.render({"AU45": 1.0})
    frames = [open_eyes] * 20 + [shut] * 3 + [open_eyes] * 20 + [shut] * 15 + [open_eyes] * 10
    video = write_mp4(tmp_path / "blinks.mp4", np.stack(frames), fps=25)
    out = tmp_path / "blinks.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(video), "--frames", "1", "--sizes", "256", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    (row,) = json.loads(out.read_text())["videos"]
    assert row["frames"] == len(frames) and row["frames_without_face"] == 0
    assert row["closed_runs_too_long"] == 1
    (blink,) = row["real"]["blinks"]
    assert blink["frames"] == [20, 22], blink
    assert max(blink["gap_ratio"]) <= 0.30 and max(blink["vertical_part"]) <= 0.30, blink
    (ours,) = row["ours"]["blinks"]
    assert frames[ours["frame"]] is open_eyes
    assert max(ours["gap_ratio"]) <= 0.30, ours
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_a_missing_video_is_a_one_line_error(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "none.mp4"), "--out", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "no such video" in run.stderr
    assert not (tmp_path / "x.json").exists()
