"""Face landmarks with MediaPipe: the 0.10.21 face mesh, or a Tasks ``.task`` model."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from rt_smile.config import DetectorConfig
from rt_smile.errors import (
    DetectorError,
    FaceTooSmallError,
    MultipleFacesError,
    NoFaceError,
)
from rt_smile.face.topology import LEFT_EYE_OUTER, RIGHT_EYE_OUTER

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceLandmarks:
    """One detected face: landmarks in source-image pixels."""

    #: (N, 2) x, y in pixels (N = 468, or 478 with iris points).
    points: NDArray[np.float64]
    #: (N,) relative depth, in pixels (MediaPipe's z scaled by image width).
    depth: NDArray[np.float64]
    #: (width, height) of the image the points refer to.
    image_size: tuple[int, int]

    @property
    def iod(self) -> float:
        """Inter-ocular distance: between the outer eye corners (points 33 and 263)."""
        return float(np.linalg.norm(self.points[RIGHT_EYE_OUTER] - self.points[LEFT_EYE_OUTER]))


class LandmarkDetector(Protocol):
    """Finds every face in an RGB uint8 image."""

    def detect_all(self, rgb: NDArray[np.uint8]) -> list[FaceLandmarks]: ...

    def close(self) -> None: ...


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the duration (glog and TensorFlow Lite write
    there directly from C++, ignoring Python's logging)."""
    with _STDERR_LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(devnull)
            os.close(saved)


def _import_mediapipe() -> Any:
    try:
        with native_stderr_silenced():
            import mediapipe as mp
    except ImportError as exc:
        raise DetectorError("mediapipe is not installed: pip install 'mediapipe==0.10.21'") from exc
    return mp


def _from_normalized(xyz: NDArray[np.float64], w: int, h: int) -> FaceLandmarks:
    pts = xyz[:, :2] * np.array([w, h], dtype=np.float64)
    return FaceLandmarks(points=pts, depth=xyz[:, 2] * w, image_size=(w, h))


class FaceMeshDetector:
    """MediaPipe 0.10.21 ``solutions.face_mesh`` (models inside the wheel), static-image mode."""

    def __init__(self, config: DetectorConfig = DetectorConfig()) -> None:
        mp = _import_mediapipe()
        if not hasattr(mp, "solutions"):
            raise DetectorError(
                f"mediapipe {mp.__version__} has no face_mesh solution; install "
                "'mediapipe==0.10.21' or pass a FaceLandmarker .task model file"
            )
        with native_stderr_silenced():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True,
                max_num_faces=config.max_faces,
                refine_landmarks=config.refine_landmarks,
                min_detection_confidence=config.min_detection_confidence,
            )
            # The graph opens its calculators (and TensorFlow Lite logs to fd 2) in worker threads
            # that may outlive the constructor; one blank frame waits for them while silenced.
            self._mesh.process(np.zeros((64, 64, 3), np.uint8))
        self._n = 478 if config.iris and config.refine_landmarks else 468

    def detect_all(self, rgb: NDArray[np.uint8]) -> list[FaceLandmarks]:
        h, w = rgb.shape[:2]
        with native_stderr_silenced():
            result = self._mesh.process(np.ascontiguousarray(rgb))
        faces = result.multi_face_landmarks or []
        out = []
        for face in faces:
            xyz = np.array([[p.x, p.y, p.z] for p in face.landmark], dtype=np.float64)
            out.append(_from_normalized(xyz[: self._n], w, h))
        return out

    def close(self) -> None:
        self._mesh.close()


class TaskLandmarkerDetector:
    """MediaPipe Tasks ``FaceLandmarker`` from a user-supplied ``.task`` model file."""

    def __init__(self, model_path: str | Path, config: DetectorConfig = DetectorConfig()) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise DetectorError(f"FaceLandmarker model not found: {path}")
        mp = _import_mediapipe()
        vision = mp.tasks.vision
        options = vision.FaceLandmarkerOptions(
            base_options=mp.tasks.BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE,
            num_faces=config.max_faces,
            min_face_detection_confidence=config.min_detection_confidence,
        )
        try:
            with native_stderr_silenced():
                self._landmarker = vision.FaceLandmarker.create_from_options(options)
        except (RuntimeError, ValueError) as exc:
            raise DetectorError(f"{path} is not a valid FaceLandmarker .task model: {exc}") from exc
        self._mp = mp
        self._n = 478 if config.iris and config.refine_landmarks else 468

    def detect_all(self, rgb: NDArray[np.uint8]) -> list[FaceLandmarks]:
        h, w = rgb.shape[:2]
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        with native_stderr_silenced():
            result = self._landmarker.detect(image)
        out = []
        for face in result.face_landmarks:
            xyz = np.array([[p.x, p.y, p.z] for p in face], dtype=np.float64)
            out.append(_from_normalized(xyz[: self._n], w, h))
        return out

    def close(self) -> None:
        self._landmarker.close()


def make_detector(config: DetectorConfig = DetectorConfig()) -> LandmarkDetector:
    """The Tasks detector when ``config.task_model`` is set, else the bundled face mesh."""
    if config.task_model:
        return TaskLandmarkerDetector(config.task_model, config)
    return FaceMeshDetector(config)


def choose_face(faces: list[FaceLandmarks], config: DetectorConfig) -> FaceLandmarks:
    """Apply the one-face policy and the minimum-size rule to a detector's output."""
    if not faces:
        raise NoFaceError("no face found in the image; use a frontal photo with one clear face")
    if len(faces) > 1 and config.face == "single":
        raise MultipleFacesError(
            f"{len(faces)} faces found; crop the photo to one face or choose the largest (--face largest)"
        )
    face = max(faces, key=lambda f: f.iod)
    if face.iod < config.min_iod_px:
        raise FaceTooSmallError(
            f"the face is too small to animate: eye corners {face.iod:.1f} px apart, "
            f"at least {config.min_iod_px:.0f} px needed; use a larger or closer photo"
        )
    return face


def detect_face(
    rgb: NDArray[np.uint8],
    config: DetectorConfig = DetectorConfig(),
    detector: LandmarkDetector | None = None,
) -> FaceLandmarks:
    """Landmarks of the one face in ``rgb`` (see ``choose_face`` for the policy)."""
    own = detector is None
    det = make_detector(config) if detector is None else detector
    try:
        return choose_face(det.detect_all(rgb), config)
    finally:
        if own:
            det.close()
