"""rt-smile generate: files, frame counts, coordinates, determinism, bad input.

Uses a small untrained CMM-Net whose decoder is perturbed so that the landmarks really move
(the trained model's quality is measured by ``rt-smile evaluate``, not here).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from safetensors.torch import save_file

from rt_smile.cli import main
from rt_smile.face.align import canonical_template
from rt_smile.face.landmarks import LandmarkDetector, detect_face
from rt_smile.io.checkpoint import WeightsError, load_cmmnet, save_cmmnet
from rt_smile.io.video import read_video
from rt_smile.models.cmmnet import CMMNet


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = CMMNet()
    template = torch.from_numpy(canonical_template()).float()
    model.vae.set_normalization(template, torch.full_like(template, 0.02))
    with torch.no_grad():
        model.vae.to_coords.weight.normal_(0.0, 0.1)
    return save_cmmnet(tmp_path_factory.mktemp("w") / "tiny.safetensors", model.eval(), {"test": True})


def _tiny_run(weights: Path, out: Path) -> list[str]:
    """Two modes, one second, seed 3."""
    return [
        "generate",
        "--weights",
        str(weights),
        "--modes",
        "2",
        "--seconds",
        "1",
        "--seed",
        "3",
        "--out",
        str(out),
    ]


@pytest.fixture(scope="module")
def generated(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "out"
    assert main(_tiny_run(weights, out)) == 0
    return out


def _decode(path: Path) -> tuple[list[NDArray[np.uint8]], float]:
    frames, rate = read_video(path)
    return list(frames), rate


def test_files_frames_and_fps(generated: Path) -> None:
    names = sorted(p.name for p in generated.iterdir())
    assert names == ["grid.gif", "grid.mp4", "landmarks.json", "mode_0.mp4", "mode_1.mp4", "trajectories.png"]
    for k in range(2):
        frames, fps = _decode(generated / f"mode_{k}.mp4")
        assert len(frames) == 30 and fps == pytest.approx(30.0)
        assert frames[0].shape == (256, 256, 3)
    grid, _ = _decode(generated / "grid.mp4")
    assert len(grid) == 30
    data = json.loads((generated / "landmarks.json").read_text())
    assert data["fps"] == 30.0 and data["image_size"] == [256, 256]
    assert np.asarray(data["modes"]).shape == (2, 30, 468, 2)


def test_landmarks_json_matches_the_video(generated: Path, detector: LandmarkDetector) -> None:
    data = json.loads((generated / "landmarks.json").read_text())
    lm = np.asarray(data["modes"])
    frames, _ = _decode(generated / "mode_1.mp4")
    iod = float(np.linalg.norm(lm[1, 0, 33] - lm[1, 0, 263]))
    errs = []
    for t in (0, 15, 29):
        found = detect_face(frames[t], detector=detector).points[:468]
        errs.append(np.linalg.norm(found - lm[1, t], axis=1).mean() / iod)
    assert max(errs) <= 0.05, errs
    assert np.abs(lm[1] - lm[1, :1]).max() > 1.0, "the landmarks should move over time"


def test_same_seed_same_landmarks(weights: Path, generated: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    assert main(_tiny_run(weights, out)) == 0
    a = json.loads((generated / "landmarks.json").read_text())["modes"]
    b = json.loads((out / "landmarks.json").read_text())["modes"]
    assert a == b


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--class", "happy"], "unknown smile class"),
        (["--modes", "0"], "--modes must be within"),
        (["--modes", "1000"], "--modes must be within"),
        (["--seconds", "0"], "--seconds must be within"),
        (["--seconds", "-2"], "--seconds must be within"),
    ],
)
def test_bad_requests_are_one_line(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "o"
    assert main(["generate", "--weights", str(weights), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_output_folder_problems(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    assert main(["generate", "--weights", str(weights), "--out", str(full)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert sorted(p.name for p in full.iterdir()) == ["keep.txt"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["generate", "--weights", str(weights), "--out", str(blocker / "sub")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_bad_weights(weights: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError, match="not a safetensors"):
        load_cmmnet(corrupt)
    with pytest.raises(WeightsError, match="not found"):
        load_cmmnet(tmp_path / "missing.safetensors")
    model = load_cmmnet(weights)
    old = tmp_path / "old.safetensors"
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(old), metadata={"format": "rt_smile.cmmnet", "model_version": "0", "config": "{}"})
    with pytest.raises(WeightsError, match="model version 0"):
        load_cmmnet(old)
    assert main(["generate", "--weights", str(corrupt), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_every_mode_starts_from_the_photo(generated: Path, detector: LandmarkDetector) -> None:
    from rt_smile.config import CropConfig
    from rt_smile.face.align import crop_face
    from rt_smile.io.images import load_image

    photo = load_image(Path(__file__).resolve().parents[2] / "rt_smile" / "assets" / "astronaut.png")
    crop = crop_face(photo, detect_face(photo, detector=detector), CropConfig(size=256))
    lm = np.asarray(json.loads((generated / "landmarks.json").read_text())["modes"])
    iod = float(np.linalg.norm(crop.landmarks[33] - crop.landmarks[263]))
    for k in range(lm.shape[0]):
        assert np.linalg.norm(lm[k, 0] - crop.landmarks[:468], axis=1).mean() / iod <= 0.01


def test_shipped_weights_make_distinct_class_specific_smiles() -> None:
    from rt_smile.data.synthetic import SynthConfig, generate, lip_corner_width
    from rt_smile.runtime.motion import FaceMotion, generate_on_faces
    from rt_smile.train.metrics import motion, motion_magnitude, pairwise_mean_distance

    model = load_cmmnet()  # the weights shipped in the package
    faces = generate(SynthConfig(n_sequences=6, n_identities=6, seed=99))  # unseen identities
    on_faces = [FaceMotion.for_face(model, faces.sequence(i)[0]) for i in range(6)]
    noise, mode_noise = model.sample_noise(6, 120, generator=torch.Generator().manual_seed(0))
    peak = {}
    for cls in (0, 1):
        seqs, _ = generate_on_faces(model, on_faces, torch.full((6,), cls), noise, mode_noise)
        ratios = []
        for modes in seqs:
            motions = [motion(s) for s in modes]
            magnitude = float(np.mean([motion_magnitude(m) for m in motions]))
            assert magnitude > 0.008, "the modes should smile"
            ratios.append(pairwise_mean_distance(motions) / magnitude)
        assert np.mean(ratios) >= 0.25, ("the modes should differ", ratios)
        peak[cls] = float(np.mean([np.diff(lip_corner_width(s)).max() for modes in seqs for s in modes]))
    assert peak[1] > peak[0], "posed smiles reach a higher lip-corner speed than spontaneous ones"
