"""The real-blink benchmark, run on a video made from the bundled sample."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
from numpy.typing import NDArray

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
    assert row["closed_runs_left_out"]["longer than a blink"] == 1
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


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_real_blinks", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _gaps(
    closed: list[tuple[int, int]], missing: tuple[int, ...] = (), frames: int = 100
) -> NDArray[np.float64]:
    """(T, 2, 2) lid gaps: 0.1 IOD open (0.02 along the eye), 0.005 across in ``closed`` runs,
    NaN in ``missing`` frames."""
    gaps = np.tile(np.array([[0.1, 0.1], [0.1, 0.1]]), (frames, 1, 1))
    for start, end in closed:
        gaps[start:end] = [[0.02, 0.005], [0.02, 0.005]]
    gaps[list(missing)] = np.nan
    return gaps


def test_blinks_next_to_the_ends_or_a_lost_face_are_left_out() -> None:
    """At 25 fps: a 4-frame blink in the middle is measured (0.02 of a 0.1 gap); a 20-frame run
    is a look down; runs at the first frame, the last frame or beside a frame without a face
    may be cut short and are left out; so is a blink with no open-eyed frame near it."""
    real_blinks = _module().real_blinks
    blinks, left_out = real_blinks(_gaps([(40, 44)]), 25.0)
    assert [b["frames"] for b in blinks] == [[40, 43]] and blinks[0]["gap_ratio"] == [0.2, 0.2]
    assert sum(left_out.values()) == 0
    blinks, left_out = real_blinks(_gaps([(0, 3), (30, 50), (60, 63), (97, 100)], missing=(63,)), 25.0)
    assert blinks == []
    assert left_out == {
        "longer than a blink": 1,
        "at the video's ends or a frame without a face": 3,
        "no open frames near": 0,
    }
    half_open = _gaps([(99, 103)], frames=200)
    half_open[55:99, :, 1] = half_open[103:147, :, 1] = 0.05  # half the open gap across the eye
    blinks, left_out = real_blinks(half_open, 25.0)
    assert blinks == [] and left_out["no open frames near"] == 1
