"""Real smile videos → the SmileSequences data set (see ``rt_smile.data.sequences``).

``ingest_videos(folder)`` runs, per video:

1. decode with PyAV (any pixel format, converted to rgb24; the stream's display rotation is
   applied so faces are upright), each frame timed by its pts × time_base;
2. MediaPipe face mesh in video mode (tracking, refined lips and eyes, 468 points; one
   detector per video, closed afterwards; native logs silenced). A frame without a face, or
   with one under ``DetectorConfig.min_iod_px`` between the eyes, is flagged ``valid=False``
   and its landmarks are interpolated linearly in time from the nearest valid frames (held
   at the ends). A video without any face is an error. One face is tracked per video
   (``DetectorConfig.max_faces``, ``face`` and ``task_model`` do not apply here);
3. each frame aligned to the canonical frame on its own stable points (``align_to_canonical``);
4. resampled to ``fps`` by linear interpolation in time, from the first frame's time to the
   last; an output frame is valid only if every source frame it mixes is valid.

Which files and labels (``list_videos``):

- videos are the files of ``folder`` itself (not sub-folders) ending in .mp4 .avi .mov .mkv
  .webm (any case), hidden files (``.name``) skipped, sorted by name;
- a label comes from the ``labels_csv`` row for the file when there is one, else from a
  UvA-NEMO name: ``*_spontaneous_smile_*`` → spontaneous, ``*_deliberate_smile_*`` (or
  ``*_posed_smile_*``) → posed. A video with neither is an error (``VideoLabelError``, naming
  the file): files are never dropped silently. The CSV may also name videos elsewhere
  (paths relative to ``folder``, or absolute); those are ingested too;
- the CSV is plain ``file,label`` rows (label spontaneous | posed | deliberate, any case), an
  optional ``file,label`` header, blank lines and ``#`` comments ignored;
- identity is the subject number before the first underscore (UvA-NEMO ``001_...`` → 1);
  files without one each get their own identity, numbered after the largest subject number
  in file-stem order.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from rt_smile.config import DetectorConfig
from rt_smile.data.sequences import SmileSequences
from rt_smile.errors import DetectorError, NoFaceError, RtSmileError
from rt_smile.face import topology as topo
from rt_smile.face.align import align_frames
from rt_smile.face.landmarks import _import_mediapipe, native_stderr_silenced

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
#: Accepted label names (any case) → index into ``CLASSES``.
LABEL_NAMES = {"spontaneous": 0, "posed": 1, "deliberate": 1}

_NEMO_LABEL = re.compile(r"(?:^|_)(spontaneous|deliberate|posed)_smile(?:_|$)", re.IGNORECASE)
_SUBJECT = re.compile(r"^(\d+)_")

Array = NDArray[np.float64]


class VideoError(RtSmileError):
    """Base class of video-ingestion errors."""


class VideoFolderError(VideoError):
    """The video folder is missing, not a folder, or holds no video."""


class VideoLabelError(VideoError):
    """A video has no label, a label is unknown, or the labels CSV is wrong."""


class VideoDecodeError(VideoError):
    """A video file cannot be decoded (corrupt, not a video, no video stream, no frames)."""


class VideoNoFaceError(VideoError, NoFaceError):
    """No face was found in any frame of a video."""


@dataclass(frozen=True)
class VideoEntry:
    """One video to ingest."""

    path: Path
    #: Index into ``CLASSES``.
    label: int
    identity: int


@dataclass(frozen=True)
class TrackedVideo:
    """Per decoded frame: time (s, from the first frame), landmarks (pixels), face found."""

    times: Array  # (T,)
    points: Array  # (T, 468, 2)
    valid: NDArray[np.bool_]  # (T,)


# --------------------------------------------------------------------------- files and labels


def parse_label(text: str) -> int:
    """``spontaneous`` → 0, ``posed`` or ``deliberate`` → 1 (any case); else ValueError."""
    key = text.strip().lower()
    if key not in LABEL_NAMES:
        raise ValueError(f"unknown label {text.strip()!r}")
    return LABEL_NAMES[key]


def label_from_name(name: str) -> int | None:
    """The class of a UvA-NEMO file name (``001_spontaneous_smile_1.mp4``), or None."""
    m = _NEMO_LABEL.search(Path(name).stem)
    return None if m is None else parse_label(m.group(1))


def find_videos(folder: Path) -> list[Path]:
    """The video files directly in ``folder``, sorted by name."""
    if not folder.exists():
        raise VideoFolderError(f"video folder not found: {folder}")
    if not folder.is_dir():
        raise VideoFolderError(f"not a folder: {folder} (pass the folder that holds the videos)")
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        for n, row in enumerate(csv.reader(f), start=1):
            cells = [c.strip() for c in row]
            if cells and cells[0] and not cells[0].startswith("#"):
                yield n, cells


def read_labels_csv(path: Path, folder: Path) -> dict[Path, int]:
    """``file,label`` rows → {video path: class index}; paths are relative to ``folder``."""
    if not path.is_file():
        raise VideoLabelError(f"labels CSV not found: {path}")
    out: dict[Path, int] = {}
    for n, cells in _csv_rows(path):
        where = f"{path}, line {n}"
        if len(cells) != 2:
            raise VideoLabelError(f"{where}: expected 'file,label', got {','.join(cells)!r}")
        if not out and [c.lower() for c in cells] == ["file", "label"]:
            continue
        try:
            label = parse_label(cells[1])
        except ValueError as exc:
            raise VideoLabelError(f"{where}: {exc}; use spontaneous, posed or deliberate") from exc
        video = folder / cells[0]
        if not video.is_file():
            raise VideoLabelError(f"{where}: video {cells[0]!r} not found in {folder}")
        key = video.resolve()
        if out.get(key, label) != label:
            raise VideoLabelError(f"{where}: {cells[0]!r} is listed twice with different labels")
        out[key] = label
    return out


def _identities(paths: list[Path]) -> list[int]:
    subjects = [_SUBJECT.match(p.stem) for p in paths]
    numbers = [int(m.group(1)) for m in subjects if m]
    others = sorted({p.stem for p, m in zip(paths, subjects, strict=True) if m is None})
    first = max(numbers, default=0) + 1
    extra = {stem: first + i for i, stem in enumerate(others)}
    return [int(m.group(1)) if m else extra[p.stem] for p, m in zip(paths, subjects, strict=True)]


def list_videos(folder: Path, labels_csv: Path | None = None) -> list[VideoEntry]:
    """The videos to ingest with their labels and identities (see the module docstring)."""
    folder = Path(folder)
    videos = find_videos(folder)
    csv_labels = read_labels_csv(Path(labels_csv), folder) if labels_csv is not None else {}
    known = {p.resolve() for p in videos}
    videos += sorted(p for p in csv_labels if p not in known)
    if not videos:
        raise VideoFolderError(f"no videos in {folder} (looked for {' '.join(VIDEO_SUFFIXES)} files)")
    labels = []
    for p in videos:
        label = csv_labels.get(p.resolve(), label_from_name(p.name))
        if label is None:
            raise VideoLabelError(
                f"no label for {p.name}: name it like UvA-NEMO (*_spontaneous_smile_*, "
                "*_deliberate_smile_*) or list it in a file,label CSV (--labels)"
            )
        labels.append(label)
    return [
        VideoEntry(p, lab, ident) for p, lab, ident in zip(videos, labels, _identities(videos), strict=True)
    ]


# --------------------------------------------------------------------------- decoding


def _upright(rgb: NDArray[np.uint8], rotation: float) -> NDArray[np.uint8]:
    """Apply a display rotation (degrees counter-clockwise, multiples of 90 honoured)."""
    k = round(rotation / 90.0) % 4
    return rgb if k == 0 else np.ascontiguousarray(np.rot90(rgb, k))


def _frame_rate(stream: Any) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 30.0


def decode_frames(path: Path) -> Iterator[tuple[float, NDArray[np.uint8]]]:
    """(time in seconds, upright RGB uint8 frame) for every frame of the first video stream."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path.name} has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            step, last = 1.0 / _frame_rate(stream), None
            for frame in container.decode(stream):
                base = frame.time_base or stream.time_base
                if frame.pts is not None and base:
                    t = float(frame.pts * base)
                else:  # no timestamp: one frame period after the previous frame
                    t = 0.0 if last is None else last + step
                last = t
                rgb = np.asarray(frame.to_ndarray(format="rgb24"), np.uint8)
                yield t, _upright(rgb, getattr(frame, "rotation", 0))  # PyAV >= 14
    except av.error.FFmpegError as exc:
        raise VideoDecodeError(f"cannot decode {path.name}: {exc}; is it a complete video file?") from exc


# --------------------------------------------------------------------------- landmarks


class VideoFaceMesh:
    """MediaPipe face mesh in video mode (tracks one face across consecutive frames)."""

    def __init__(self, config: DetectorConfig = DetectorConfig()) -> None:
        if config.task_model:
            raise DetectorError(
                "video ingestion uses mediapipe's bundled face mesh; a .task model is not supported here"
            )
        mp = _import_mediapipe()
        if not hasattr(mp, "solutions"):
            raise DetectorError(f"mediapipe {mp.__version__} has no face_mesh; install 'mediapipe==0.10.21'")
        self._min_iod = config.min_iod_px
        with native_stderr_silenced():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=False,
                max_num_faces=1,
                refine_landmarks=config.refine_landmarks,
                min_detection_confidence=config.min_detection_confidence,
                min_tracking_confidence=0.5,
            )
            # opens the graph's calculators (which log to fd 2) while silenced
            self._mesh.process(np.zeros((64, 64, 3), np.uint8))

    def track(self, rgb: NDArray[np.uint8]) -> Array | None:
        """(468, 2) landmarks in pixels of the next frame, or None without a usable face."""
        h, w = rgb.shape[:2]
        with native_stderr_silenced():
            result = self._mesh.process(np.ascontiguousarray(rgb))
        if not result.multi_face_landmarks:
            return None
        face = result.multi_face_landmarks[0].landmark
        pts = np.array([[p.x * w, p.y * h] for p in face[: topo.NUM_LANDMARKS]], np.float64)
        iod = float(np.linalg.norm(pts[topo.RIGHT_EYE_OUTER] - pts[topo.LEFT_EYE_OUTER]))
        return pts if iod >= self._min_iod else None

    def close(self) -> None:
        self._mesh.close()


def track_video(path: Path, config: DetectorConfig = DetectorConfig()) -> TrackedVideo:
    """Decode ``path`` and find the face in every frame (see the module docstring)."""
    times: list[float] = []
    points: list[Array | None] = []
    mesh = VideoFaceMesh(config)
    try:
        for t, rgb in decode_frames(path):
            if times and t <= times[-1]:
                logger.debug("%s: frame at %.4f s is not after %.4f s; dropped", path.name, t, times[-1])
                continue
            times.append(t)
            points.append(mesh.track(rgb))
    finally:
        mesh.close()
    if not times:
        raise VideoDecodeError(f"{path.name} has no decodable frames; is it a complete video file?")
    valid = np.array([p is not None for p in points])
    if not valid.any():
        raise VideoNoFaceError(
            f"no face found in any of the {len(times)} frames of {path.name}; "
            "remove it or use a video with one frontal face"
        )
    rel = np.array(times) - times[0]
    filled = np.zeros((len(rel), topo.NUM_LANDMARKS, 2))
    filled[valid] = np.stack([p for p in points if p is not None])
    return TrackedVideo(rel, fill_gaps(rel, filled, valid), valid)


# --------------------------------------------------------------------------- time


def _bracket(t_src: Array, t_query: Array) -> tuple[NDArray[np.intp], NDArray[np.intp], Array]:
    """Source frames (lo, hi) around each query time and the weight of hi (clamped at the ends)."""
    if len(t_src) == 1:
        zero = np.zeros(len(t_query), np.intp)
        return zero, zero, np.zeros(len(t_query))
    lo = np.clip(np.searchsorted(t_src, t_query, side="right") - 1, 0, len(t_src) - 2)
    hi = lo + 1
    w = np.clip((t_query - t_src[lo]) / (t_src[hi] - t_src[lo]), 0.0, 1.0)
    return lo, hi, w


def _mix(values: Array, lo: NDArray[np.intp], hi: NDArray[np.intp], w: Array) -> Array:
    shape = (-1,) + (1,) * (values.ndim - 1)
    w = w.reshape(shape)
    return np.asarray(values[lo] * (1.0 - w) + values[hi] * w, np.float64)


def fill_gaps(times: Array, points: Array, valid: NDArray[np.bool_]) -> Array:
    """Points of invalid frames interpolated in time from the nearest valid ones (held at the
    ends); ``times`` (T,), ``points`` (T, N, 2), ``valid`` (T,) with at least one True."""
    out = np.array(points, np.float64)
    if valid.all():
        return out
    t_ok = times[valid]
    lo, hi, w = _bracket(t_ok, times[~valid])
    out[~valid] = _mix(out[valid], lo, hi, w)
    return out


def resample(
    times: Array, points: Array, valid: NDArray[np.bool_], fps: float
) -> tuple[Array, NDArray[np.bool_]]:
    """(points, valid) at ``fps`` from the first to the last source time; an output frame is
    valid when every source frame it mixes (non-zero weight) is valid."""
    n = math.floor((times[-1] - times[0]) * fps + 1e-6) + 1
    t_out = times[0] + np.arange(n) / fps
    lo, hi, w = _bracket(times, t_out)
    eps = 1e-9
    ok = (valid[lo] | (w >= 1.0 - eps)) & (valid[hi] | (w <= eps))
    return _mix(points, lo, hi, w), ok


# --------------------------------------------------------------------------- data set


def ingest_video(
    path: Path, fps: float = 30.0, detector_config: DetectorConfig = DetectorConfig()
) -> tuple[Array, NDArray[np.bool_]]:
    """One video → ((T, 468, 2) aligned points at ``fps``, (T,) valid)."""
    tracked = track_video(path, detector_config)
    points, valid = resample(tracked.times, align_frames(tracked.points), tracked.valid, fps)
    missing = int((~tracked.valid).sum())
    logger.info(
        "%s: %d frames in %.2f s, %d without a face; %d frames at %g fps",
        path.name,
        len(tracked.times),
        tracked.times[-1],
        missing,
        len(points),
        fps,
    )
    if missing > len(tracked.times) // 4:
        logger.warning(
            "%s: no face in %d of %d frames (interpolated)", path.name, missing, len(tracked.times)
        )
    return points, valid


def _relative(path: Path, folder: Path) -> str:
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path)


def _check_fps(fps: float) -> None:
    if not math.isfinite(fps) or fps <= 0:
        raise VideoError(f"the output frame rate must be a positive number, got {fps}")


def ingest_videos(
    folder: Path,
    labels_csv: Path | None = None,
    fps: float = 30.0,
    detector_config: DetectorConfig = DetectorConfig(),
    progress: bool = False,
) -> SmileSequences:
    """A folder of face videos → SmileSequences at ``fps`` (see the module docstring).

    Raises VideoFolderError, VideoLabelError (checked before any decoding), VideoDecodeError,
    VideoNoFaceError, DetectorError; every message names the file and what to do.
    """
    _check_fps(fps)
    folder = Path(folder)
    entries = list_videos(folder, labels_csv)
    seqs: list[Array] = []
    valid: list[NDArray[np.bool_]] = []
    with logging_redirect_tqdm() if progress else contextlib.nullcontext():  # logs above the bar
        for entry in tqdm(entries, desc="videos", unit="video", disable=not progress):
            pts, ok = ingest_video(entry.path, fps, detector_config)
            seqs.append(pts)
            valid.append(ok)
    lengths = np.array([len(s) for s in seqs], np.int64)
    return SmileSequences(
        points=np.concatenate(seqs).astype(np.float32),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        labels=np.array([e.label for e in entries], np.int64),
        identity=np.array([e.identity for e in entries], np.int64),
        valid=np.concatenate(valid),
        fps=float(fps),
        meta={
            "source": "videos",
            "folder": str(folder),
            "files": [_relative(e.path, folder) for e in entries],
            "fps": float(fps),
            "labels_csv": None if labels_csv is None else str(labels_csv),
        },
    )
