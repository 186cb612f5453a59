"""MediaPipe landmarks on real images: the one-face policy, the size rule, unusual formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from rt_smile.config import DetectorConfig
from rt_smile.errors import DetectorError, FaceTooSmallError, MultipleFacesError, NoFaceError
from rt_smile.face import topology as topo
from rt_smile.face.landmarks import FaceLandmarks, LandmarkDetector, detect_face, make_detector
from rt_smile.io.images import load_image
from tests.conftest import EXIF_COLUMNS, HEAD, SHARED_FACES, Inputs


@pytest.fixture(scope="module")
def sample_face(photo: NDArray[np.uint8], detector: LandmarkDetector) -> FaceLandmarks:
    return detect_face(photo, DetectorConfig(), detector)


def _upright(face: FaceLandmarks) -> None:
    """Eyes above the nose tip above the mouth, the subject's right eye on the image's left."""
    p = face.points
    eyes_y = (p[topo.RIGHT_EYE_OUTER, 1] + p[topo.LEFT_EYE_OUTER, 1]) / 2
    mouth_y = (p[topo.UPPER_INNER_LIP_MID, 1] + p[topo.LOWER_INNER_LIP_MID, 1]) / 2
    assert eyes_y < p[1, 1] < mouth_y
    assert p[topo.RIGHT_EYE_OUTER, 0] < p[topo.LEFT_EYE_OUTER, 0]
    assert p[topo.RIGHT_LIP_CORNER, 0] < p[topo.LEFT_LIP_CORNER, 0]


def _mean_offset_iod(a: FaceLandmarks, b: NDArray[np.float64]) -> float:
    return float(np.linalg.norm(a.points - b, axis=1).mean() / a.iod)


def test_sample_face(sample_face: FaceLandmarks) -> None:
    assert sample_face.points.shape == (468, 2)
    assert sample_face.depth.shape == (468,)
    assert sample_face.image_size == (512, 512)
    assert 50 < sample_face.iod < 70
    _upright(sample_face)
    # The face is in the upper middle of the portrait.
    assert 150 < sample_face.points[:, 0].mean() < 300
    assert 60 < sample_face.points[:, 1].mean() < 200


def test_iris_points(photo: NDArray[np.uint8], detector_pool) -> None:
    config = DetectorConfig(iris=True)
    face = detect_face(photo, config, detector_pool(config))
    assert face.points.shape == (478, 2)
    # Each iris centre lies between its eye's corners.
    for centre, (outer, inner) in ((468, (33, 133)), (473, (263, 362))):
        xs = sorted([face.points[outer, 0], face.points[inner, 0]])
        assert xs[0] < face.points[centre, 0] < xs[1]


def test_own_detector_is_created_and_closed(photo: NDArray[np.uint8]) -> None:
    assert detect_face(photo).points.shape == (468, 2)


@pytest.mark.parametrize("case", ["flat_grey", "background"])
def test_no_face(inputs: Inputs, detector: LandmarkDetector, case: str) -> None:
    rgb = load_image(getattr(inputs, case))
    with pytest.raises(NoFaceError, match="no face found"):
        detect_face(rgb, DetectorConfig(), detector)


def test_two_faces_single_is_an_error(inputs: Inputs, detector: LandmarkDetector) -> None:
    rgb = load_image(inputs.two_faces)
    with pytest.raises(MultipleFacesError, match=r"2 faces found.*\(--face largest\)"):
        detect_face(rgb, DetectorConfig(face="single"), detector)


def test_two_faces_largest_takes_the_big_one(
    inputs: Inputs, detector: LandmarkDetector, sample_face: FaceLandmarks
) -> None:
    rgb = load_image(inputs.two_faces)
    face = detect_face(rgb, DetectorConfig(face="largest"), detector)
    width = HEAD[1].stop - HEAD[1].start
    assert face.points[:, 0].max() < width  # the left, full-size copy
    shifted = sample_face.points - [HEAD[1].start, HEAD[0].start]
    assert _mean_offset_iod(face, shifted) < 0.03
    _upright(face)


def test_face_too_small(inputs: Inputs, detector: LandmarkDetector) -> None:
    rgb = load_image(inputs.small_face)
    faces = detector.detect_all(rgb)
    assert len(faces) == 1 and faces[0].iod < 24  # found, but too small
    with pytest.raises(FaceTooSmallError, match=r"2\d\.\d px apart, at least 24 px"):
        detect_face(rgb, DetectorConfig(), detector)
    # The rule is the configured minimum, not a detector limit.
    assert detect_face(rgb, DetectorConfig(min_iod_px=15), detector).iod < 24


@pytest.mark.parametrize("case", ["gray_png", "rgba_png", "rgb16_png", "gray16_png"])
def test_converted_photos_give_the_same_landmarks(
    inputs: Inputs, detector: LandmarkDetector, sample_face: FaceLandmarks, case: str
) -> None:
    face = detect_face(load_image(getattr(inputs, case)), DetectorConfig(), detector)
    assert _mean_offset_iod(face, sample_face.points) < 0.03


def test_exif_rotated_jpeg_landmarks_are_upright(
    inputs: Inputs, detector: LandmarkDetector, sample_face: FaceLandmarks
) -> None:
    face = detect_face(load_image(inputs.exif_jpeg), DetectorConfig(), detector)
    assert face.image_size == (400, 512)
    _upright(face)
    assert _mean_offset_iod(face, sample_face.points - [EXIF_COLUMNS.start, 0]) < 0.03


def test_missing_task_model_is_a_detector_error(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match="model not found"):
        make_detector(DetectorConfig(task_model=str(tmp_path / "face_landmarker.task")))


def test_invalid_task_model_is_a_detector_error(tmp_path: Path) -> None:
    bogus = tmp_path / "face_landmarker.task"
    bogus.write_bytes(b"not a model")
    with pytest.raises(DetectorError, match="not a valid FaceLandmarker"):
        make_detector(DetectorConfig(task_model=str(bogus)))


@pytest.mark.skipif(not SHARED_FACES.is_dir(), reason=f"shared face photos not present ({SHARED_FACES})")
def test_other_faces(detector: LandmarkDetector) -> None:
    jpeg = detect_face(load_image(SHARED_FACES / "obama2.jpg"), DetectorConfig(), detector)
    rgba = detect_face(load_image(SHARED_FACES / "obama_rgba.png"), DetectorConfig(), detector)
    assert jpeg.image_size == rgba.image_size == (626, 1200)
    for face in (jpeg, rgba):
        assert face.iod > 100
        _upright(face)
    assert _mean_offset_iod(jpeg, rgba.points) < 0.03
