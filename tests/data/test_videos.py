"""Video ingestion on small smile videos made here: the sample face rendered through the translator
with a smile ramp, encoded to H.264 MP4 at 25 and 50 fps with UvA-NEMO names."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from numpy.typing import NDArray

from rt_smile.cli import main
from rt_smile.config import CropConfig, DetectorConfig
from rt_smile.data.expressions import apply_expression
from rt_smile.data.sequences import SmileSequences, load_sequences
from rt_smile.data.videos import (
    VideoDecodeError,
    VideoError,
    VideoFolderError,
    VideoLabelError,
    VideoNoFaceError,
    decode_frames,
    fill_gaps,
    ingest_videos,
    list_videos,
    resample,
)
from rt_smile.face.align import FaceCrop, crop_face
from rt_smile.face.landmarks import LandmarkDetector, detect_face
from rt_smile.models.translator import Translator, prepare_face

SIZE = 256
RENDER_FPS = 50
DURATION = 1.5  # seconds of the smile ramp
#: Frames of the 25 fps video replaced by flat grey (no face).
BLANK = (10, 11, 12)
SPONT = "001_spontaneous_smile_1.mp4"
POSED = "002_deliberate_smile_1.mp4"


def _encode(
    path: Path, frames: NDArray[np.uint8], fps: int, rotation: int = 0, pix_fmt: str = "yuv420p"
) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps), options={"crf": "16", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if rotation:
            stream.set_display_rotation(rotation)
        for rgb in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")))
        out.mux(stream.encode())
    return path


def _ramp(t: NDArray[np.float64]) -> NDArray[np.float64]:
    return 0.9 * np.sin(np.pi * np.clip(t / DURATION, 0.0, 1.0)) ** 2


def _lip_width(seq: NDArray[np.float32]) -> NDArray[np.float64]:
    return np.linalg.norm(seq[:, 61] - seq[:, 291], axis=1).astype(np.float64)


@pytest.fixture(scope="module")
def sample_crop(photo: NDArray[np.uint8], detector: LandmarkDetector) -> FaceCrop:
    return crop_face(photo, detect_face(photo, DetectorConfig(), detector), CropConfig(size=SIZE))


@pytest.fixture(scope="module")
def smile_frames(sample_crop: FaceCrop) -> NDArray[np.uint8]:
    """(75, 256, 256, 3): a 1.5 s smile at 50 fps (AU12 0 → 0.9 → 0, AU6 following 0.1 s later)."""
    t = np.arange(round(DURATION * RENDER_FPS)) / RENDER_FPS
    au12, au6 = _ramp(t), 0.6 * _ramp(t - 0.1)
    targets = np.stack(
        [
            apply_expression(sample_crop.landmarks, {"AU12": a, "AU6": b})[:468]
            for a, b in zip(au12, au6, strict=True)
        ]
    )
    prior, translator = prepare_face(sample_crop.image, sample_crop.landmarks), Translator(SIZE)
    out = []
    with torch.inference_mode():
        for i in range(0, len(targets), 25):
            frames = translator.render(prior, torch.from_numpy(targets[i : i + 25]).float())
            out.append((frames.permute(0, 2, 3, 1).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8))
    return np.concatenate(out)


@pytest.fixture(scope="module")
def videos_dir(tmp_path_factory: pytest.TempPathFactory, smile_frames: NDArray[np.uint8]) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    slow = smile_frames[::2].copy()
    slow[list(BLANK)] = 128
    _encode(folder / SPONT, slow, 25)
    _encode(folder / POSED, smile_frames, 50)
    (folder / "README.txt").write_text("not a video\n")
    return folder


@pytest.fixture(scope="module")
def ingested(videos_dir: Path) -> SmileSequences:
    return ingest_videos(videos_dir)


# --------------------------------------------------------------------------- the data set


def test_labels_identities_and_meta(ingested: SmileSequences, videos_dir: Path) -> None:
    assert ingested.labels.tolist() == [0, 1]  # spontaneous, posed (deliberate)
    assert ingested.identity.tolist() == [1, 2]
    assert ingested.fps == 30.0
    assert ingested.meta["source"] == "videos"
    assert ingested.meta["files"] == [SPONT, POSED]
    assert ingested.meta["folder"] == str(videos_dir) and ingested.meta["fps"] == 30.0
    assert ingested.points.shape[1:] == (468, 2) and ingested.points.dtype == np.float32


def test_both_frame_rates_become_30_fps(ingested: SmileSequences) -> None:
    last = (round(DURATION * RENDER_FPS) - 1) / RENDER_FPS  # time of the last frame, both videos
    for n in ingested.lengths():
        assert abs(n - last * 30) <= 1.0


def test_valid_is_false_exactly_around_the_blank_frames(ingested: SmileSequences) -> None:
    t = np.arange(ingested.lengths()[0]) / 30.0
    before, after = (BLANK[0] - 1) / 25, (BLANK[-1] + 1) / 25  # the faces around the gap
    expected = ~((t > before + 1e-9) & (t < after - 1e-9))
    valid = ingested.valid[ingested.offsets[0] : ingested.offsets[1]]
    assert valid.tolist() == expected.tolist()
    assert ingested.valid[ingested.offsets[1] :].all()


def test_points_are_aligned_and_follow_the_smile_ramp(ingested: SmileSequences) -> None:
    widths = []
    for i in range(len(ingested)):
        seq = ingested.sequence(i)
        iod = np.linalg.norm(seq[:, 33] - seq[:, 263], axis=1)
        assert np.all((iod > 0.9) & (iod < 1.1))  # fitted on all the stable points, not the eyes only
        assert np.abs((seq[:, 33] + seq[:, 263]) / 2).max() < 0.1
        w = _lip_width(seq)
        rise = w[len(w) // 2] - w[0]
        assert rise > 0.08, f"sequence {i}: the lip corners widen by only {rise:.3f} IOD"
        assert abs(w[-1] - w[0]) < 0.3 * rise
        widths.append(w)
    # the 25 and 50 fps videos show the same smile once both are at 30 fps
    n = min(len(w) for w in widths)
    valid = ingested.valid[:n]
    assert np.abs(widths[0][:n] - widths[1][:n])[valid].mean() < 0.02


def test_blank_frames_are_filled_by_interpolation(ingested: SmileSequences) -> None:
    seq = ingested.sequence(0)
    valid = ingested.valid[: len(seq)]
    gap = np.flatnonzero(~valid)
    lo, hi = gap[0] - 1, gap[-1] + 1
    w = (gap - lo) / (hi - lo)
    linear = seq[lo] * (1 - w[:, None, None]) + seq[hi] * w[:, None, None]
    assert np.abs(seq[gap] - linear).max() < 0.03  # interpolated between the faces around the gap


# --------------------------------------------------------------------------- files and labels


def test_labels_from_csv_and_names(tmp_path: Path) -> None:
    for name in ("clip_a.mp4", "clip_b.MOV", "007_take.mkv", "001_deliberate_smile_3.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / ".hidden.mp4").write_bytes(b"")
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "file,label\n# a comment\nclip_a.mp4,Spontaneous\n\nclip_b.MOV, deliberate\n007_take.mkv,posed\n"
    )
    entries = list_videos(tmp_path, csv)
    got = {e.path.name: (e.label, e.identity) for e in entries}
    assert got == {
        "001_deliberate_smile_3.mp4": (1, 1),  # from the UvA-NEMO name
        "007_take.mkv": (1, 7),
        "clip_a.mp4": (0, 8),  # no subject number: identities after the largest one
        "clip_b.MOV": (1, 9),
    }
    assert [e.path.name for e in entries] == sorted(got)


def test_cli_ingests_with_a_labels_csv(
    tmp_path: Path, smile_frames: NDArray[np.uint8], capfd: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _encode(folder / "take.mp4", smile_frames[:30:3], 10)
    (tmp_path / "labels.csv").write_text("take.mp4,posed\n")
    out = tmp_path / "v.npz"
    argv = ["dataset", "videos", str(folder), "--labels", str(tmp_path / "labels.csv"), "--out", str(out)]
    assert main(argv) == 0
    data = load_sequences(out)
    assert data.labels.tolist() == [1] and data.identity.tolist() == [1]
    assert data.meta["files"] == ["take.mp4"] and data.fps == 30.0
    assert len(data.points) == 28  # 0.9 s at 30 fps
    err = capfd.readouterr().err
    assert "TensorFlow" not in err and "W0000" not in err and "I0000" not in err  # native logs silenced


def test_cli_missing_folder_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dataset", "videos", str(tmp_path / "nope"), "--out", str(tmp_path / "v.npz")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not found" in err
    assert not (tmp_path / "v.npz").exists()


# --------------------------------------------------------------------------- bad input


def _bad_folder(tmp: Path, case: str, smile_frames: NDArray[np.uint8]) -> tuple[Path, Path | None]:
    folder = tmp / "videos"
    if case == "missing folder":
        return folder, None
    if case == "a file, not a folder":
        folder.write_bytes(b"")
        return folder, None
    folder.mkdir()
    csv = tmp / "labels.csv"
    if case == "no label":
        (folder / "holiday.mp4").write_bytes(b"")
    elif case == "csv names a missing file":
        (folder / "001_spontaneous_smile_1.mp4").write_bytes(b"")
        csv.write_text("gone.mp4,posed\n")
    elif case == "unknown label":
        (folder / "a.mp4").write_bytes(b"")
        csv.write_text("a.mp4,happy\n")
    elif case == "not a video":
        (folder / "003_spontaneous_smile_1.mp4").write_bytes(b"these are not frames\n" * 50)
    elif case == "truncated video":
        full = _encode(tmp / "full.mp4", smile_frames[:10], 25).read_bytes()
        (folder / "003_spontaneous_smile_1.mp4").write_bytes(full[:3000])
    elif case == "no face":
        _encode(folder / "004_deliberate_smile_1.mp4", np.full((4, 64, 64, 3), 128, np.uint8), 25)
    return folder, csv if csv.exists() else None


@pytest.mark.parametrize(
    ("case", "error", "names"),
    [
        ("missing folder", VideoFolderError, "videos"),
        ("a file, not a folder", VideoFolderError, "videos"),
        ("empty folder", VideoFolderError, "no videos"),
        ("no label", VideoLabelError, "holiday.mp4"),
        ("csv names a missing file", VideoLabelError, "gone.mp4"),
        ("unknown label", VideoLabelError, "happy"),
        ("not a video", VideoDecodeError, "003_spontaneous_smile_1.mp4"),
        ("truncated video", VideoDecodeError, "003_spontaneous_smile_1.mp4"),
        ("no face", VideoNoFaceError, "004_deliberate_smile_1.mp4"),
    ],
)
def test_bad_input_is_a_named_one_line_error(
    tmp_path: Path, smile_frames: NDArray[np.uint8], case: str, error: type[VideoError], names: str
) -> None:
    folder, csv = _bad_folder(tmp_path, case, smile_frames)
    with pytest.raises(error, match=names) as info:
        ingest_videos(folder, labels_csv=csv)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("fps", [0.0, -30.0, float("nan")])
def test_bad_frame_rate(tmp_path: Path, fps: float) -> None:
    with pytest.raises(VideoError, match="frame rate"):
        ingest_videos(tmp_path, fps=fps)


# --------------------------------------------------------------------------- decoding and time


@pytest.mark.skipif(
    not hasattr(av.video.stream.VideoStream, "set_display_rotation"), reason="writing rotation needs PyAV 18"
)
def test_decode_applies_rotation_and_any_pixel_format(tmp_path: Path) -> None:
    upright = np.zeros((64, 96, 3), np.uint8)
    upright[:16, :24] = 255  # a bright top-left corner
    stored = np.ascontiguousarray(np.rot90(upright, -1))[None].repeat(3, 0)  # kept turned clockwise
    path = _encode(tmp_path / "turned.mp4", stored, 25, rotation=90, pix_fmt="yuv444p")
    frames = list(decode_frames(path))
    assert [round(t, 3) for t, _ in frames] == [0.0, 0.04, 0.08]
    for _, rgb in frames:
        assert rgb.shape == (64, 96, 3) and rgb.dtype == np.uint8
        assert rgb[:16, :24].mean() > 200 and rgb[-16:, -24:].mean() < 40


def test_resample_is_linear_in_time_and_marks_mixed_frames() -> None:
    times = np.arange(11) / 50.0  # 0 .. 0.2 s
    points = np.zeros((11, 3, 2))
    points[:, :, 0] = times[:, None] * 10.0  # moves 10 units per second
    valid = np.ones(11, bool)
    valid[5] = False  # t = 0.1 s
    out, ok = resample(times, points, valid, 30.0)
    t_out = np.arange(7) / 30.0  # 0 .. 0.2 s
    assert np.allclose(out[:, :, 0], t_out[:, None] * 10.0)
    assert ok.tolist() == [True, True, True, False, True, True, True]  # 0.1 s: only frame 3 mixes in 5


def test_fill_gaps_interpolates_in_time_and_holds_the_ends() -> None:
    times = np.array([0.0, 0.1, 0.2, 0.4, 0.5])
    points = np.array([[[9.0, 9.0]], [[1.0, 1.0]], [[9.0, 9.0]], [[3.0, 5.0]], [[9.0, 9.0]]])
    valid = np.array([False, True, False, True, False])
    filled = fill_gaps(times, points, valid)
    expected = np.array([[1, 1], [1, 1], [5 / 3, 7 / 3], [3, 5], [3, 5]], np.float64)
    assert np.allclose(filled[:, 0], expected)
