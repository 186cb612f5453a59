"""benchmarks/translator.py's ``--against``: another git revision's translator, loaded beside
the working tree's."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from rt_smile.face.align import FaceCrop
from rt_smile.face.landmarks import LandmarkDetector
from rt_smile.io.images import load_image
from rt_smile.train.fidelity import ClosedLoop
from tests.conftest import sample_path

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_translator_bench", ROOT / "benchmarks" / "translator.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


needs_git = pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout")


@needs_git
def test_a_revisions_translator_renders_beside_the_working_trees(detector: LandmarkDetector) -> None:
    """HEAD's translator, configuration and TracedStage come from git, as modules of their own
    (not the package's), and render the sample's smile: a frame in [0, 1] that moves the face."""
    bench = _bench()
    revision = bench.Revision("HEAD")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    assert revision.commit == head.stdout.strip()
    crop: FaceCrop = ClosedLoop(load_image(sample_path()), detector).crop
    stage, prior = revision.stage(crop.image, crop.landmarks, 256)
    assert type(stage).__module__ != "rt_smile.runtime.backends.torch_backend"
    targets = [bench._targets(crop.landmarks, 1, s) for s in range(2)]
    with torch.inference_mode():
        frames = [stage(prior.image, prior.flow_basis, prior.neutral, t, prior.palette) for t in targets]
    assert frames[0].shape == (1, 3, 256, 256)
    assert float(frames[0].min()) >= 0.0 and float(frames[0].max()) <= 1.0
    still = crop.image.astype(np.float32) / 255.0
    moved = np.abs(frames[0][0].permute(1, 2, 0).numpy() - still).max()
    assert moved > 0.1, "the smile moves the face"


@needs_git
def test_an_unknown_revision_is_a_one_line_error() -> None:
    with pytest.raises(SystemExit, match="git rev-parse --verify no-such-revision"):
        _bench().Revision("no-such-revision")


@needs_git
def test_several_revisions_are_timed_in_the_same_rounds() -> None:
    """``--against`` takes several revisions: each is one more mode of every case, timed in the
    same rounds as the working tree's eager and traced translator."""
    bench = _bench()
    revisions = [bench.Revision("HEAD"), bench.Revision("@")]  # two names (a CI clone may be shallow)
    rows = bench.run_case(load_image(sample_path()), 256, 1, repeats=10, warmup=1, against=revisions)
    assert [r["mode"] for r in rows] == ["eager", "traced", "traced@HEAD", "traced@@"]
    assert all(r["repeats"] == 10 and r["p50_ms"] > 0 for r in rows)


def test_a_revision_named_twice_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _bench()
    monkeypatch.setattr("sys.argv", ["translator.py", "--against", "HEAD", "HEAD"])
    with pytest.raises(SystemExit, match="--against names a revision twice: HEAD HEAD"):
        bench.main()
