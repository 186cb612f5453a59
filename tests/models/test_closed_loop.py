"""Closed loop: mediapipe on the rendered frame finds the expression that was asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from rt_smile.face.landmarks import LandmarkDetector
from rt_smile.io.images import load_image
from rt_smile.train.fidelity import (
    REFERENCE_EXPRESSIONS,
    REGIONS,
    ClosedLoop,
    chin_drop,
    eyelid_gap_ratios,
    eyelid_vertical_parts,
    inner_lip_opening,
    lip_corner_shift,
)

FACES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "faces"


def _variant(photo: NDArray[Any]) -> NDArray[Any]:
    """Another view of the sample: mirrored, rotated 12°, scaled 1.3×."""
    m = cv2.getRotationMatrix2D((256, 256), 12, 1.3)
    return cv2.warpAffine(np.ascontiguousarray(photo[:, ::-1]), m, (512, 512), borderMode=cv2.BORDER_REFLECT)


def _check_smiles(loop: ClosedLoop) -> None:
    reference = loop.run("neutral", {})
    for name in ("neutral", "closed smile", "open smile"):
        result = loop.run(name, REFERENCE_EXPRESSIONS[name])
        assert result.mean_error <= 0.03, (name, result.summary())
        assert result.moved_error_ratio <= 0.5, (name, result.summary())
    assert lip_corner_shift(loop.run("AU12", {"AU12": 0.9}), reference) >= 0.08
    assert inner_lip_opening(loop.run("AU25+26", {"AU25": 0.7, "AU26": 0.4}), reference) >= 0.08


def _check_blink(loop: ClosedLoop) -> None:
    reference = loop.run("neutral", {})
    blink = loop.run("blink", REFERENCE_EXPRESSIONS["blink"])
    assert blink.mean_error <= 0.03 and blink.moved_error_ratio <= 0.5, blink.summary()
    right, left = eyelid_gap_ratios(blink, reference)
    assert right <= 0.30 and left <= 0.30, (right, left)


@pytest.mark.parametrize("size", [256, 512])
def test_sample_face(detector: LandmarkDetector, sample_file: Path, size: int) -> None:
    loop = ClosedLoop(load_image(sample_file), detector, size=size)
    _check_smiles(loop)
    _check_blink(loop)


def test_jaw_drop_moves_the_re_detected_chin(detector: LandmarkDetector, sample_file: Path) -> None:
    """AU26 moves the chin, and MediaPipe sees it move on the sample; the lower lip, which moves
    further, is re-detected within half its displacement (``region_errors``)."""
    loop = ClosedLoop(load_image(sample_file), detector)
    reference = loop.run("neutral", {})
    jaw = loop.run("AU26", {"AU26": 0.4})
    asked, found = chin_drop(jaw, reference)
    assert asked > 0.05 and found > 0.6 * asked, (asked, found)
    lip = list(REGIONS["lower lip"])
    moved = float(np.linalg.norm(jaw.target[lip] - jaw.neutral[lip], axis=1).mean() / jaw.iod)
    assert jaw.region_errors()["lower lip"]["error_iod"] < 0.5 * moved, (jaw.region_errors(), moved)


def test_sample_face_other_view(detector: LandmarkDetector, sample_file: Path) -> None:
    loop = ClosedLoop(_variant(load_image(sample_file)), detector)
    _check_smiles(loop)
    _check_blink(loop)


@pytest.mark.parametrize("size", [256, 512])
def test_a_neutral_face_of_another_identity_smiles(
    detector: LandmarkDetector, other_face: NDArray[Any], size: int
) -> None:
    """Lips closed and spectacles on (matplotlib's portrait of Grace Hopper): every smile is
    drawn, with no teeth of the photo's own to move."""
    _check_smiles(ClosedLoop(other_face, detector, size=size))


@pytest.mark.parametrize("size", [256, 512])
def test_a_neutral_face_of_another_identity_closes_its_eyes(
    detector: LandmarkDetector, other_face: NDArray[Any], size: int
) -> None:
    """The blink on Grace Hopper, as far as it holds there: MediaPipe finds the lids shut
    vertically (at most 30 % of the open gap) and the closed lids where they were asked for.
    The whole gap ratio is not asserted: MediaPipe keeps point 159 beside 145 on her right eye
    (0.32-0.36 of the open gap), and at 256² her left eye reads 0.36 open, 0.28 of it
    vertically (docs/translator.md, known gaps). Moved-point ratio 0.29-0.32 (the flat lid
    before: 0.46)."""
    loop = ClosedLoop(other_face, detector, size=size)
    reference = loop.run("neutral", {})
    blink = loop.run("blink", REFERENCE_EXPRESSIONS["blink"])
    assert blink.mean_error <= 0.03 and blink.moved_error_ratio <= 0.5, blink.summary()
    right, left = eyelid_vertical_parts(blink, reference)
    assert right <= 0.30 and left <= 0.30, (right, left)


@pytest.mark.skipif(not FACES.is_dir(), reason=f"{FACES} (shared photos of another identity) absent")
@pytest.mark.parametrize("name", ["obama2.jpg", "obama_rgba.png"])
def test_another_identity_smiles(detector: LandmarkDetector, name: str) -> None:
    _check_smiles(ClosedLoop(load_image(FACES / name), detector))
