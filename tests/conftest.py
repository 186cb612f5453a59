"""Shared fixtures: the bundled sample photo, one real MediaPipe detector per configuration for the
whole session, and bad or unusual input files that the tests make themselves from the sample."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from rt_smile.config import DetectorConfig
from rt_smile.face.landmarks import FaceLandmarks, LandmarkDetector, make_detector
from rt_smile.io.images import load_image

#: Photos of other faces for manual-style checks; never copied into the repository.
SHARED_FACES = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces").resolve()

#: Head region of the sample photo (rows, columns) used to compose several faces in one image.
HEAD = (slice(20, 280), slice(110, 340))
#: Columns of the non-square view used for the EXIF-rotation case.
EXIF_COLUMNS = slice(40, 440)
#: Downscale factor that leaves the sample's face detectable but under 24 px between the eyes.
SMALL_SCALE = 0.35
#: Scale of the second, smaller copy in the two-faces image.
SECOND_FACE_SCALE = 0.7


def sample_path() -> Path:
    return Path(str(resources.files("rt_smile.assets").joinpath("astronaut.png")))


@pytest.fixture(scope="session")
def sample_file() -> Path:
    """The bundled sample photo's path."""
    return sample_path()


def other_face_path() -> Path:
    """A photo of another identity that every install has: matplotlib's sample portrait of
    Grace Hopper (US Navy, public domain). Neutral, lips closed, spectacles. Used for checks only;
    the project publishes no renders of it."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


@pytest.fixture(scope="session")
def other_face() -> NDArray[np.uint8]:
    """``other_face_path`` loaded as RGB."""
    return load_image(other_face_path())


@pytest.fixture(scope="session")
def photo() -> NDArray[np.uint8]:
    """The bundled sample photo, 512×512 RGB."""
    return load_image(sample_path())


# --------------------------------------------------------------------------- detectors

DetectorKey = tuple[bool, bool, int, float]


class SharedDetector:
    """A real detector that outlives the code under test (``close`` is a no-op)."""

    def __init__(self, inner: LandmarkDetector) -> None:
        self.inner = inner

    def detect_all(self, rgb: NDArray[np.uint8]) -> list[FaceLandmarks]:
        return self.inner.detect_all(rgb)

    def close(self) -> None:
        pass


@pytest.fixture(scope="session")
def detector_pool() -> Iterator[Callable[[DetectorConfig], LandmarkDetector]]:
    """``get(config)``: one real MediaPipe detector per detector-relevant configuration, shared by
    the whole session (creating one costs ~0.3 s; detecting ~5-50 ms)."""
    pool: dict[DetectorKey, LandmarkDetector] = {}

    def get(config: DetectorConfig) -> LandmarkDetector:
        if config.task_model:
            return make_detector(config)
        key = (config.refine_landmarks, config.iris, config.max_faces, config.min_detection_confidence)
        if key not in pool:
            pool[key] = make_detector(config)
        return SharedDetector(pool[key])

    yield get
    for det in pool.values():
        det.close()


@pytest.fixture(scope="session")
def detector(detector_pool: Callable[[DetectorConfig], LandmarkDetector]) -> LandmarkDetector:
    """The default face-mesh detector (468 points, refined lips and eyes)."""
    return detector_pool(DetectorConfig())


# --------------------------------------------------------------------------- input files


def turned(face: FaceLandmarks, degrees: float) -> FaceLandmarks:
    """``face``'s landmarks turned by ``degrees`` about the vertical axis through their centre,
    depth and all (seen orthographically): a face turned from the camera, for the checks that
    read the head's yaw from the landmarks."""
    a = np.deg2rad(degrees)
    cx = face.points[:, 0].mean()
    x, z = face.points[:, 0] - cx, face.depth - face.depth.mean()
    points = np.column_stack([cx + np.cos(a) * x + np.sin(a) * z, face.points[:, 1]])
    return FaceLandmarks(points, -np.sin(a) * x + np.cos(a) * z, face.image_size)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(width: int, height: int, with_data: bool = True) -> bytes:
    """A valid 1-bit grayscale PNG of zeros (a few kB on disk, ``width × height`` pixels), or,
    when ``with_data`` is false, its header and the first 16 bytes of pixel data only (so any
    decoder that gets past the header fails: what refuses it must not decode)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    out = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
    if not with_data:
        return out + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    return out + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def _save(path: Path, rgb: NDArray[np.uint8], **kwargs: object) -> Path:
    Image.fromarray(rgb).save(path, **kwargs)  # type: ignore[arg-type]
    return path


def _side_by_side(big: NDArray[np.uint8], scale: float) -> NDArray[np.uint8]:
    small = np.asarray(cv2.resize(big, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), np.uint8)
    pad = np.full((big.shape[0], small.shape[1], 3), 200, np.uint8)
    top = (big.shape[0] - small.shape[0]) // 2
    pad[top : top + small.shape[0]] = small
    return np.ascontiguousarray(np.hstack([big, pad]))


@dataclass(frozen=True)
class Inputs:
    """Files made from the sample photo, by case."""

    folder: Path
    text: Path  # not an image at all
    truncated_png: Path
    corrupt_png: Path  # compressed data overwritten with garbage
    truncated_jpeg: Path
    huge_png: Path  # 10000×10000, valid, a few kB
    huge_header_png: Path  # says 10000×10000, has no pixel data
    gray_png: Path
    rgba_png: Path  # transparent band across the bottom
    rgb16_png: Path
    gray16_png: Path
    exif_jpeg: Path  # pixels rotated 90° CCW, EXIF orientation 6 rotates them back
    flat_grey: Path
    background: Path  # a part of the sample photo without a face
    two_faces: Path  # the sample's head and a smaller copy of it
    small_face: Path  # inter-ocular distance under 24 px


def _corrupt(data: bytes) -> bytes:
    start = data.index(b"IDAT") + 4 + 64
    body = bytearray(data)
    body[start : start + 4096] = np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes()
    return bytes(body)


def _make_inputs(folder: Path, photo: NDArray[np.uint8]) -> Inputs:
    png = sample_path().read_bytes()
    jpeg = folder / "full.jpg"
    _save(jpeg, photo, quality=92)
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    (folder / "corrupt.png").write_bytes(_corrupt(png))
    (folder / "truncated.jpg").write_bytes(jpeg.read_bytes()[:4000])
    (folder / "huge.png").write_bytes(huge_png(10_000, 10_000))
    (folder / "huge_header.png").write_bytes(huge_png(10_000, 10_000, with_data=False))
    (folder / "notes.txt").write_text("these are not the pixels you are looking for\n")
    _save(folder / "gray.png", np.asarray(Image.fromarray(photo).convert("L")))
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    rgba[-40:, :, 3] = 0
    _save(folder / "rgba.png", rgba)
    cv2.imwrite(str(folder / "rgb16.png"), photo[:, :, ::-1].astype(np.uint16) * 257)
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(folder / "gray16.png"), gray.astype(np.uint16) * 257)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    upright = np.ascontiguousarray(photo[:, EXIF_COLUMNS])
    _save(folder / "exif.jpg", np.ascontiguousarray(np.rot90(upright)), quality=95, exif=exif)
    _save(folder / "grey.png", np.full((256, 256, 3), 128, np.uint8))
    _save(folder / "background.png", np.ascontiguousarray(photo[0:250, 330:512]))
    _save(folder / "two_faces.png", _side_by_side(photo[HEAD], SECOND_FACE_SCALE))
    small = cv2.resize(photo, None, fx=SMALL_SCALE, fy=SMALL_SCALE, interpolation=cv2.INTER_AREA)
    _save(folder / "small_face.png", np.asarray(small, np.uint8))
    f = folder
    return Inputs(
        folder=f,
        text=f / "notes.txt",
        truncated_png=f / "truncated.png",
        corrupt_png=f / "corrupt.png",
        truncated_jpeg=f / "truncated.jpg",
        huge_png=f / "huge.png",
        huge_header_png=f / "huge_header.png",
        gray_png=f / "gray.png",
        rgba_png=f / "rgba.png",
        rgb16_png=f / "rgb16.png",
        gray16_png=f / "gray16.png",
        exif_jpeg=f / "exif.jpg",
        flat_grey=f / "grey.png",
        background=f / "background.png",
        two_faces=f / "two_faces.png",
        small_face=f / "small_face.png",
    )


@pytest.fixture(scope="session")
def inputs(tmp_path_factory: pytest.TempPathFactory, photo: NDArray[np.uint8]) -> Inputs:
    """Every test input file, made once per session under a temporary folder."""
    return _make_inputs(tmp_path_factory.mktemp("inputs"), photo)
