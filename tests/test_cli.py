"""The ``rt-smile`` command line, run in-process (with the session's real detectors) and, for the
no-noise guarantee, as a separate process."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

import rt_smile.cli as cli
from rt_smile.config import DetectorConfig
from rt_smile.face import topology as topo
from rt_smile.face.landmarks import LandmarkDetector, detect_face
from rt_smile.io.images import load_image
from tests.conftest import HEAD, SHARED_FACES, Inputs, sample_path, turned


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


Run = Callable[..., Result]


@pytest.fixture
def run(
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    detector_pool: Callable[[DetectorConfig], LandmarkDetector],
) -> Run:
    """``run(*argv)``: ``rt-smile`` in-process; fd-level capture, so native output shows too."""
    monkeypatch.setattr(cli, "make_detector", detector_pool)
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", root.level)  # main() sets the root level

    def _run(*argv: str | Path) -> Result:
        capfd.readouterr()
        code = cli.main([str(a) for a in argv])
        captured = capfd.readouterr()
        return Result(code, captured.out, captured.err)

    return _run


def _one_error_line(result: Result, *fragments: str) -> str:
    assert result.code == 2, result
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("rt-smile: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.err
    return lines[0]


def _no_leftovers(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]


def _read_json(path: Path) -> dict[str, object]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def _points(data: dict[str, object]) -> NDArray[np.float64]:
    return np.asarray(data["landmarks"], np.float64)


# --------------------------------------------------------------------------- landmarks


def test_landmarks_on_the_sample(run: Run, tmp_path: Path) -> None:
    res = run("landmarks", "--json", tmp_path / "lm.json", "--plot", tmp_path / "lm.png")
    assert res.code == 0, res
    assert res.err == ""
    assert res.out.splitlines()[0].startswith("468 landmarks, IOD ")
    assert "image 512x512" in res.out
    data = _read_json(tmp_path / "lm.json")
    assert set(data) == {"image_size", "iod", "landmarks"}
    assert data["image_size"] == [512, 512]
    pts = _points(data)
    assert pts.shape == (468, 2)
    assert ((pts >= 0) & (pts < 512)).all()
    assert isinstance(data["iod"], float)
    assert data["iod"] == pytest.approx(np.linalg.norm(pts[33] - pts[263]), abs=0.01)
    with Image.open(tmp_path / "lm.png") as img:
        assert img.size == (512, 512)
    _no_leftovers(tmp_path)


def test_landmarks_word_sample_and_path_agree(run: Run, tmp_path: Path) -> None:
    assert run("landmarks", "sample", "--json", tmp_path / "a.json").code == 0
    assert run("landmarks", sample_path(), "--json", tmp_path / "b.json").code == 0
    assert _read_json(tmp_path / "a.json") == _read_json(tmp_path / "b.json")


def test_landmarks_iris(run: Run, tmp_path: Path) -> None:
    res = run("landmarks", "--iris", "--json", tmp_path / "lm.json")
    assert res.code == 0
    assert res.out.startswith("478 landmarks")
    assert _points(_read_json(tmp_path / "lm.json")).shape == (478, 2)


@pytest.mark.parametrize(
    ("case", "size"),
    [
        ("gray_png", [512, 512]),
        ("rgba_png", [512, 512]),
        ("rgb16_png", [512, 512]),
        ("gray16_png", [512, 512]),
        ("exif_jpeg", [400, 512]),
    ],
)
def test_landmarks_on_converted_photos(
    run: Run, inputs: Inputs, tmp_path: Path, case: str, size: list[int]
) -> None:
    res = run("landmarks", getattr(inputs, case), "--json", tmp_path / "lm.json")
    assert res.code == 0, res
    data = _read_json(tmp_path / "lm.json")
    assert data["image_size"] == size
    p = _points(data)
    assert (p[[33, 263], 1].mean()) < p[1, 1] < p[[13, 14], 1].mean()  # eyes, nose, mouth


def test_landmarks_largest_of_two_faces(run: Run, inputs: Inputs, tmp_path: Path) -> None:
    res = run("landmarks", inputs.two_faces, "--face", "largest", "--json", tmp_path / "lm.json")
    assert res.code == 0, res
    assert _points(_read_json(tmp_path / "lm.json"))[:, 0].max() < HEAD[1].stop - HEAD[1].start


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("case", "extra", "fragments"),
    [
        ("text", (), ("notes.txt", "not a readable image")),
        ("truncated_png", (), ("truncated.png", "corrupt or truncated")),
        ("corrupt_png", (), ("corrupt.png", "corrupt or truncated")),
        ("truncated_jpeg", (), ("truncated.jpg", "corrupt or truncated")),
        ("huge_png", (), ("10000x10000", "over the cap")),
        ("huge_header_png", (), ("10000x10000", "over the cap")),
        ("flat_grey", (), ("no face found",)),
        ("background", (), ("no face found",)),
        ("two_faces", (), ("2 faces found", "--face largest")),
        ("small_face", (), ("too small", "at least 24 px")),
        ("gray_png", ("--max-pixels", "1000"), ("over the cap of 1000",)),
    ],
)
@pytest.mark.parametrize("command", ["landmarks", "pose"])
def test_bad_input_is_one_line(
    run: Run,
    inputs: Inputs,
    tmp_path: Path,
    command: str,
    case: str,
    extra: tuple[str, ...],
    fragments: tuple[str, ...],
) -> None:
    out = ("--out", tmp_path / "x.png") if command == "pose" else ("--json", tmp_path / "x.json")
    res = run(command, getattr(inputs, case), *extra, *out)
    _one_error_line(res, *fragments)
    assert res.out == ""
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (("pose", "--au", "AU99=0.5"), ("argument --au", "unknown action unit 'AU99'")),
        (("pose", "--au", "AU12=1.5"), ("argument --au", "AU12=1.5", "within 0..1")),
        (("pose", "--au", "AU12=-0.1"), ("within 0..1",)),
        (("pose", "--au", "AU12"), ("expected NAME=VALUE",)),
        (("pose", "--au", "AU12=lots"), ("not a number",)),
        (("pose", "--size", "300"), ("argument --size", "invalid choice")),
        (("pose", "--out", "frame.jpg"), ("argument --out", "expected a .png file name")),
        (("pose", "--au", "AU12=0.5"), ("required", "--out")),
        (("pose", "--face", "all"), ("argument --face", "invalid choice")),
        (("landmarks", "--max-pixels", "many"), ("--max-pixels", "positive integer")),
        (("landmarks", "--bogus"), ("unrecognized arguments: --bogus",)),
        (("smile",), ("invalid choice: 'smile'",)),
        ((), ("required: COMMAND",)),
    ],
)
def test_bad_arguments_are_one_line(
    run: Run, tmp_path: Path, argv: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    if argv[:1] == ("pose",) and "--out" not in argv and "required" not in fragments:
        argv = (*argv, "--out", str(tmp_path / "x.png"))
    _one_error_line(run(*argv), *fragments)
    assert list(tmp_path.iterdir()) == []


def test_missing_photo_and_task_model(run: Run, tmp_path: Path) -> None:
    _one_error_line(run("landmarks", tmp_path / "nope.jpg"), "not found", "nope.jpg")
    _one_error_line(run("landmarks", tmp_path), "directory")
    _one_error_line(run("landmarks", "--task-model", tmp_path / "f.task"), "model not found")
    (tmp_path / "bogus.task").write_text("not a model")
    res = run("pose", "--task-model", tmp_path / "bogus.task", "--out", tmp_path / "f.png")
    _one_error_line(res, "not a valid FaceLandmarker .task model")


def test_unwritable_output_is_one_line(run: Run, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_error_line(run("landmarks", "--json", blocker / "lm.json"), "cannot write", "lm.json")
    _one_error_line(run("pose", "--out", blocker / "f.png"), "cannot write", "f.png")
    os.mkdir(tmp_path / "taken.json")
    res = run("pose", "--out", tmp_path / "f.png", "--landmarks-out", tmp_path / "taken.json")
    _one_error_line(res, "cannot write", "taken.json")
    assert (tmp_path / "taken.json").is_dir()
    _no_leftovers(tmp_path)


def test_atomic_output_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "frame.png"
    with pytest.raises(RuntimeError), cli.atomic_output(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert list((tmp_path / "sub").iterdir()) == []
    with cli.atomic_output(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["frame.png"]


# --------------------------------------------------------------------------- pose


@pytest.mark.parametrize("size", [256, 512])
def test_pose_crop(run: Run, tmp_path: Path, size: int) -> None:
    frame, lm = tmp_path / "out" / "smile.png", tmp_path / "out" / "smile.json"
    res = run("pose", "--au", "AU12=0.9,AU6=0.5", "--size", str(size), "--out", frame, "--landmarks-out", lm)
    assert res.code == 0, res
    assert res.err == ""
    assert f"({size}x{size})" in res.out
    with Image.open(frame) as img:
        assert img.size == (size, size)
        assert img.mode == "RGB"
    data = _read_json(lm)
    assert set(data) == {"image_size", "landmarks"}
    assert data["image_size"] == [size, size]
    pts = _points(data)
    assert pts.shape == (468, 2)
    assert ((pts >= 0) & (pts < size)).all()
    _no_leftovers(tmp_path / "out")


def test_pose_targets_are_the_expression_applied_to_the_detection(run: Run, tmp_path: Path) -> None:
    assert run("pose", "--out", tmp_path / "n.png", "--landmarks-out", tmp_path / "n.json").code == 0
    assert (
        run(
            "pose", "--au", "AU12=0.9", "--out", tmp_path / "s.png", "--landmarks-out", tmp_path / "s.json"
        ).code
        == 0
    )
    neutral, smile = _points(_read_json(tmp_path / "n.json")), _points(_read_json(tmp_path / "s.json"))
    iod = np.linalg.norm(neutral[33] - neutral[263])
    corners = [topo.RIGHT_LIP_CORNER, topo.LEFT_LIP_CORNER]
    lift = (neutral[corners, 1] - smile[corners, 1]) / iod
    assert (lift > 0.08).all()  # both lip corners go up
    assert np.linalg.norm(smile[list(topo.STABLE)] - neutral[list(topo.STABLE)], axis=1).max() < 0.02 * iod
    # The neutral render is the aligned crop itself.
    assert abs(float(np.linalg.norm(neutral[33] - neutral[263])) - 256 / 3) < 0.15 * 256 / 3


def test_pose_full_frame(
    run: Run, tmp_path: Path, photo: NDArray[np.uint8], detector: LandmarkDetector
) -> None:
    res = run("pose", "--full-frame", "--out", tmp_path / "f.png", "--landmarks-out", tmp_path / "f.json")
    assert res.code == 0, res
    with Image.open(tmp_path / "f.png") as img:
        assert img.size == (512, 512)
        rendered = np.asarray(img.convert("RGB"))
    data = _read_json(tmp_path / "f.json")
    assert data["image_size"] == [512, 512]
    # Neutral: the targets are the photo's own landmarks, and the photo is barely changed.
    detected = detect_face(photo, DetectorConfig(), detector).points
    assert np.abs(_points(data) - detected).max() < 0.01
    mse = np.mean((rendered.astype(float) - photo.astype(float)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 35

    res = run(
        "pose",
        "--full-frame",
        "--au",
        "AU25=0.7,AU26=0.4",
        "--out",
        tmp_path / "o.png",
        "--landmarks-out",
        tmp_path / "o.json",
    )
    assert res.code == 0, res
    pts = _points(_read_json(tmp_path / "o.json"))
    assert ((pts >= 0) & (pts < 512)).all()
    opening = pts[14, 1] - pts[13, 1] - (detected[14, 1] - detected[13, 1])
    assert opening > 0.08 * np.linalg.norm(detected[33] - detected[263])


def test_pose_on_a_non_square_photo(run: Run, inputs: Inputs, tmp_path: Path) -> None:
    res = run(
        "pose",
        inputs.exif_jpeg,
        "--full-frame",
        "--au",
        "AU45=1",
        "--out",
        tmp_path / "f.png",
        "--landmarks-out",
        tmp_path / "f.json",
    )
    assert res.code == 0, res
    with Image.open(tmp_path / "f.png") as img:
        assert img.size == (400, 512)
    data = _read_json(tmp_path / "f.json")
    assert data["image_size"] == [400, 512]
    pts = _points(data)
    assert ((pts >= 0) & (pts < [400, 512])).all()


@pytest.mark.skipif(not SHARED_FACES.is_dir(), reason=f"shared face photos not present ({SHARED_FACES})")
def test_pose_on_another_face(run: Run, tmp_path: Path) -> None:
    res = run("pose", SHARED_FACES / "obama2.jpg", "--au", "AU12=0.8", "--out", tmp_path / "o.png")
    assert res.code == 0, res


def test_verbose_logs_timings(run: Run, caplog: pytest.LogCaptureFixture) -> None:
    assert run("landmarks").code == 0
    assert not [r for r in caplog.records if r.name == "rt_smile.cli"]
    assert run("landmarks", "-v").code == 0
    assert any(r.getMessage().startswith("detect: ") for r in caplog.records)


# --------------------------------------------------------------------------- real processes


def _process(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rt_smile", *map(str, argv)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_process_pose_prints_no_noise(tmp_path: Path) -> None:
    proc = _process(
        "pose",
        "--au",
        "AU12=0.9,AU25=0.5",
        "--out",
        "out/smile.png",
        "--landmarks-out",
        "out/smile.json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.splitlines() == ["wrote out/smile.png (256x256)", "wrote out/smile.json"]


def test_process_error_is_one_line(tmp_path: Path, inputs: Inputs) -> None:
    proc = _process("landmarks", inputs.background, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "rt-smile: error: no face found in the image; use a frontal photo with one clear face"
    ]


def test_process_help_and_version(tmp_path: Path) -> None:
    proc = _process("--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "landmarks" in proc.stdout and "pose" in proc.stdout
    proc = _process("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("rt-smile ")


def test_dataset_synth_writes_data_and_plot(tmp_path, capsys) -> None:
    from rt_smile.cli import main
    from rt_smile.data.sequences import load_sequences

    out, plot = tmp_path / "synth.npz", tmp_path / "synth.png"
    assert main(["dataset", "synth", "--n", "12", "--seed", "1", "--out", str(out), "--plot", str(plot)]) == 0
    data = load_sequences(out)
    assert len(data) == 12 and plot.stat().st_size > 10_000


def test_dataset_synth_bad_count_is_one_line(tmp_path, capsys) -> None:
    from rt_smile.cli import main

    assert main(["dataset", "synth", "--n", "0", "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "positive integer" in err[0]
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("extra, data_seed", [([], 3), (["--data-seed", "5"], 5)])
def test_train_data_seed_defaults_to_the_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: list[str], data_seed: int
) -> None:
    import rt_smile.train.trainer as trainer
    from rt_smile.data.synthetic import SynthConfig

    drawn: list[int] = []

    def generate(config: SynthConfig) -> str:
        drawn.append(config.seed)
        return "data"

    monkeypatch.setattr(trainer, "generate", generate)
    seen = []

    class Fake:
        def __init__(self, config: trainer.TrainConfig, data: object, out: Path, command: str) -> None:
            seen.append((config.seed, config.data_seed, data))

        def run(self, progress: bool, resume: bool) -> Path:
            return out / "cmmnet.safetensors"

    monkeypatch.setattr(trainer, "Trainer", Fake)
    out = tmp_path / "run"
    assert cli.main(["train", "--seed", "3", "--out", str(out), *extra]) == 0
    assert seen == [(3, data_seed, "data")] and drawn == [data_seed]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mode-style"], "a mode style needs mode noise"),
        (
            ["--mode-noise", "4", "--noise-candidates", "4", "--candidate-match", "modes"],
            "cannot be combined",
        ),
    ],
)
def test_train_options_that_do_not_go_together_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert cli.main(["train", "--out", str(tmp_path / "run"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists(), "nothing is written"


def test_train_hidden_sets_the_lstm_width(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = cli.build_parser().parse_args(["train", "--hidden", "192", "--out", str(tmp_path / "run")])
    assert cli._train_config(args).hidden == 192
    assert cli.main(["train", "--hidden", "0", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "positive integer" in err[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("bad", ["1", "-0.1", "x"])
def test_train_gen_average_sets_the_decay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    args = cli.build_parser().parse_args(["train", "--gen-average", "0.995", "--out", str(tmp_path / "run")])
    assert cli._train_config(args).gen_average == 0.995
    default = cli.build_parser().parse_args(["train", "--out", str(tmp_path / "run")])
    assert cli._train_config(default).gen_average == 0.0, "off by default"
    assert cli.main(["train", "--gen-average", bad, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "from 0 up to (not including) 1" in err[0]
    assert not (tmp_path / "run").exists()


def test_pose_warns_of_a_turned_face(detector: LandmarkDetector, caplog: pytest.LogCaptureFixture) -> None:
    """``pose`` renders a face turned beyond 15° (the sample's landmarks turned by 25°) with one
    warning that names the angle; the sample itself, without."""
    from rt_smile.cli import render_pose

    caplog.set_level(logging.WARNING, logger="rt_smile.face.align")
    photo = load_image(sample_path())
    found = detect_face(photo, detector=detector)
    render_pose(photo, found, {"AU12": 0.5}, 256, full_frame=False)
    assert not caplog.records
    frame, _ = render_pose(photo, turned(found, 25.0), {"AU12": 0.5}, 256, full_frame=False)
    assert frame.shape == (256, 256, 3)
    (record,) = caplog.records
    assert record.getMessage().startswith("the face is turned 2") and "15° of frontal" in record.getMessage()
