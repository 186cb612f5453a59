"""The unseen-photo survey benchmark, run on a folder made from the bundled sample."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import Inputs, sample_path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "closed_loop_survey.py"


def test_survey_counts_the_photos_with_one_face(tmp_path: Path, inputs: Inputs) -> None:
    """The sample (which passes every check) is counted; the two-faces image and the photo
    whose face is too small are left out with a line each; a non-image is not read."""
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(sample_path(), folder / "sample.png")
    shutil.copy(inputs.two_faces, folder / "two.png")
    shutil.copy(inputs.small_face, folder / "small.png")
    shutil.copy(inputs.text, folder / "notes.txt")
    out = tmp_path / "survey.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(folder), "--out", str(out), "--source", "test"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "left out two.png: 2 faces" in run.stderr
    assert "left out small.png: 1 faces, IOD" in run.stderr
    result = json.loads(out.read_text())
    assert [r["photo"] for r in result["photos"]] == ["sample.png"]
    assert [r["photo"] for r in result["left_out"]] == ["small.png", "two.png"]
    row = result["photos"][0]
    assert all(row["passes"].values()), row["passes"]
    assert abs(row["yaw_deg"]) < 10.0
    assert result["summary"]["all"]["photos"] == 1 and result["summary"]["all"]["all checks"] == 1
    assert result["closed_eyes_in_photos"] == []  # the sample's eyes are open
    assert out.with_suffix(".png").stat().st_size > 10_000
