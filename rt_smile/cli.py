"""The ``rt-smile`` command line: ``landmarks`` and ``pose``.

Every error rt_smile raises on purpose (``RtSmileError``), every failure to write an output and
every bad argument ends the command with one line ``rt-smile: error: <message>`` on stderr and
exit status 2; outputs are written atomically, so a failed run leaves no half-written file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import secrets
import sys
import time
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
from numpy.typing import NDArray

from rt_smile import __version__
from rt_smile.config import CropConfig, DetectorConfig
from rt_smile.errors import ExpressionError, RtSmileError
from rt_smile.face.landmarks import FaceLandmarks, detect_face, make_detector
from rt_smile.io.images import DEFAULT_MAX_PIXELS, load_image, save_png

if TYPE_CHECKING:
    from rt_smile.train.trainer import TrainConfig

logger = logging.getLogger(__name__)

PROG = "rt-smile"
#: The PHOTO argument that names the bundled sample face.
SAMPLE = "sample"
SAMPLE_ASSET = "astronaut.png"
EXIT_ERROR = 2


class CliError(RtSmileError):
    """A command-line usage error (bad argument value)."""


class OutputError(RtSmileError):
    """An output file could not be written."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block) and raise CliError."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see '{self.prog} --help')")


# --------------------------------------------------------------------------- argument types


def _expression(text: str) -> dict[str, float]:
    from rt_smile.data.expressions import parse_expression

    try:
        return parse_expression(text)
    except ExpressionError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _png_path(text: str) -> Path:
    if Path(text).suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"expected a .png file name, got {text!r}")
    return Path(text)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _unit_interval(text: str) -> float:
    """A float in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number from 0 up to (not including) 1, got {text!r}")
    return value


def _add_detection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "photo",
        nargs="?",
        default=SAMPLE,
        metavar="PHOTO",
        help="face photo (PNG, JPEG, WebP, ...); omitted or 'sample': the bundled sample face",
    )
    p.add_argument(
        "--face",
        choices=("single", "largest"),
        default="single",
        help="with several faces: 'single' refuses the photo, 'largest' takes the largest face",
    )
    p.add_argument(
        "--task-model",
        metavar="F.task",
        default=None,
        help="use a MediaPipe Tasks FaceLandmarker model file instead of the bundled face mesh",
    )
    p.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse photos with more pixels than this (default {DEFAULT_MAX_PIXELS})",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        dest="sub_verbose",
        help="log progress (repeat for debug output)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Real-time smile animation: face landmarks and expressions from one photo.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log progress (repeat for debug output)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    lm = sub.add_parser(
        "landmarks",
        help="detect the face-mesh landmarks of a photo",
        description="Detect the 468 face-mesh landmarks (478 with --iris).",
    )
    _add_detection_args(lm)
    lm.add_argument(
        "--json",
        type=Path,
        metavar="F.json",
        help='write {"image_size": [w, h], "iod": px, "landmarks": [[x, y], ...]}',
    )
    lm.add_argument(
        "--plot",
        type=_png_path,
        metavar="F.png",
        help="write the photo with the landmarks and feature outlines drawn on it",
    )
    lm.add_argument("--iris", action="store_true", help="also return the 10 iris points")
    lm.set_defaults(run=run_landmarks)

    pose = sub.add_parser(
        "pose",
        help="render the face of a photo with an expression",
        description="Apply action-unit intensities to the face's own landmarks and render the "
        "aligned face crop (or the whole photo with --full-frame) with that expression.",
    )
    _add_detection_args(pose)
    pose.add_argument(
        "--au",
        type=_expression,
        default={},
        metavar="AU=V,...",
        help="action-unit intensities in 0..1, e.g. AU12=0.8,AU25=0.4 (AU6, AU7, AU12, AU25, AU26, "
        "AU45; AU6L/AU6R, ... act on the subject's own left/right); omitted: neutral",
    )
    pose.add_argument(
        "--size",
        type=int,
        choices=(256, 512),
        default=256,
        help="side of the rendered face crop in pixels (default 256)",
    )
    pose.add_argument("--out", type=_png_path, required=True, metavar="FRAME.png", help="the rendered frame")
    pose.add_argument(
        "--landmarks-out",
        type=Path,
        metavar="T.json",
        help='write the target landmarks: {"image_size": [w, h], "landmarks": '
        "[[x, y], ...]} in pixels of FRAME.png",
    )
    pose.add_argument(
        "--full-frame", action="store_true", help="paste the rendered face back into the whole photo"
    )
    pose.set_defaults(run=run_pose)
    _add_dataset_parser(sub)
    _add_train_parser(sub)
    _add_generate_parser(sub)
    _add_evaluate_parser(sub)
    _add_serve_parser(sub)
    _add_export_parser(sub)
    _add_build_parser(sub)
    _add_bench_parser(sub)
    return parser


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (1..65535)")
    return value


def _add_serve_parser(sub: Any) -> None:
    sv = sub.add_parser(
        "serve",
        help="stream K live smiling versions of a face to a browser (WebRTC)",
        description="Serve the page and WebRTC streams. Open http://HOST:PORT/, keep the sample "
        "face or upload a photo, and watch K live smiles. Binds 127.0.0.1 by default; any other host "
        "needs --token (clients send 'Authorization: Bearer TOKEN') or --insecure.",
    )
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sv.add_argument("--port", type=_port, default=8080, help="TCP port (default 8080)")
    sv.add_argument("--size", type=int, choices=(256, 512), default=256, help="video side in pixels (256)")
    sv.add_argument(
        "--ice-server",
        action="append",
        default=[],
        metavar="URL",
        help="STUN/TURN server for the server's peers and the page, e.g. stun:stun.example.org:3478 "
        "or turn:turn.example.org:3478?transport=tcp (repeatable; TURN credentials with "
        "--ice-username/--ice-credential). Needed behind NAT or where UDP is blocked.",
    )
    sv.add_argument("--ice-username", help="username for the TURN servers")
    sv.add_argument("--ice-credential", help="credential for the TURN servers")
    sv.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on /api/*")
    sv.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without a token")
    sv.add_argument("--max-sessions", type=_positive_int, default=4, help="concurrent live faces (4)")
    sv.add_argument(
        "--episode-every",
        type=float,
        default=6.0,
        metavar="S",
        help="mean seconds between automatic smiles (0: only on demand; default 6)",
    )
    sv.add_argument("--weights", type=Path, metavar="F.safetensors", help="default: the shipped weights")
    sv.add_argument(
        "--backend",
        choices=("auto", "torch", "onnxruntime", "hybrid", "tensorrt"),
        default="torch",
        help="what runs the per-frame step (default torch: CUDA when present, else CPU; auto picks "
        "the fastest available and logs why; see docs/backends.md)",
    )
    sv.set_defaults(run=run_serve)


def _add_export_parser(sub: Any) -> None:
    ex = sub.add_parser(
        "export",
        help="export the per-frame graphs to ONNX",
        description="Write generator_step.onnx (recurrent state as inputs and outputs), "
        "vae_decode.onnx and translator_SIZE.onnx, each with a dynamic batch axis; check each "
        "against torch with onnxruntime and against TensorRT 10's ONNX operator support.",
    )
    ex.add_argument("--out", type=Path, required=True, metavar="DIR")
    ex.add_argument("--size", type=int, choices=(256, 512), default=256, help="translator crop size (256)")
    ex.add_argument("--weights", type=Path, metavar="F.safetensors", help="default: the shipped weights")
    ex.set_defaults(run=run_export)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or a comma list of them, got {text!r}")
    return values


def _size_list(text: str) -> tuple[int, ...]:
    sizes = _int_list(text)
    if any(s not in (256, 512) for s in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be 256 or 512, got {text!r}")
    return sizes


def _backend_list(text: str) -> tuple[str, ...]:
    from rt_smile.runtime.backends import BACKENDS

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in (*BACKENDS, "auto", "all")]
    if not names or unknown:
        choices = ", ".join(("all", "auto", *BACKENDS))
        raise argparse.ArgumentTypeError(f"unknown backend {text!r}; choose from {choices} (or a comma list)")
    return names


def _add_backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", type=Path, metavar="F.safetensors", help="default: the shipped weights")
    p.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="ONNX graphs and engines (default: $RT_SMILE_CACHE or ~/.cache/rt_smile)",
    )
    p.add_argument("--onnx", type=Path, metavar="DIR", help="use the graphs 'rt-smile export' wrote here")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="torch's device (auto)")
    p.add_argument(
        "--max-batch", type=_positive_int, default=64, help="TensorRT: largest batch of the profile (64)"
    )
    p.add_argument(
        "--precision",
        choices=("fp16", "fp32"),
        default="fp16",
        help="TensorRT: precision of the recurrent engines (fp16; the translator's is always fp32)",
    )


def _add_build_parser(sub: Any) -> None:
    b = sub.add_parser(
        "build",
        help="build TensorRT FP16 engines of the per-frame graphs",
        description="Export the graphs if needed, then build a TensorRT engine of each (FP16, one "
        "optimization profile of batch 1..--max-batch) into the engine cache; an engine built for "
        "another GPU or TensorRT version, or corrupt, is rebuilt. Needs an NVIDIA GPU and "
        "pip install 'rt_smile[trt]'.",
    )
    b.add_argument("--size", type=_size_list, default=(256,), help="crop sizes, e.g. 256,512 (256)")
    _add_backend_args(b)
    b.set_defaults(run=run_build)


def _add_bench_parser(sub: Any) -> None:
    b = sub.add_parser(
        "bench",
        help="per-stage and per-step latency of each backend",
        description="Time the generator step, the VAE decode, the translator and the whole per-frame "
        "step (p50/p99, fps, parity against torch FP32 on the CPU) for each backend, K, batch and "
        "size. Each of --backend, --modes, --batch and --size takes one value or a comma list.",
    )
    b.add_argument("--backend", type=_backend_list, default=("all",), help="all (available), auto, or a list")
    b.add_argument("--modes", type=_int_list, default=(1, 4), help="K modes per session (1,4)")
    b.add_argument("--batch", type=_int_list, default=(1, 4), help="sessions per step (1,4)")
    b.add_argument("--size", type=_size_list, default=(256, 512), help="crop sizes (256,512)")
    b.add_argument("--quick", action="store_true", help="short run: 40 repeats, at most 1.5 s per case")
    b.add_argument("--threads", type=_positive_int, help="CPU threads for every backend (default: all cores)")
    b.add_argument("--json", type=Path, metavar="F", help="write the results as JSON")
    b.add_argument("--plot", type=_png_path, metavar="F.png", help="default: beside --json")
    _add_backend_args(b)
    b.set_defaults(run=run_bench)


def _add_evaluate_parser(sub: Any) -> None:
    ev = sub.add_parser(
        "evaluate",
        help="evaluate CMM-Net on held-out identities",
        description="Class fidelity, diversity, realism (Fréchet distance), novelty, "
        "neutral start and smoothness of generated smiles on held-out identities, with "
        "the K = 1 and nearest-neighbour baselines.",
    )
    ev.add_argument("--weights", type=Path, metavar="F.safetensors", help="default: the shipped weights")
    ev.add_argument(
        "--data",
        type=Path,
        metavar="F.npz",
        help="data set (default: the SynthSmile the weights were trained on)",
    )
    ev.add_argument("--conditions", type=_positive_int, default=100, help="held-out conditions (100)")
    ev.add_argument("--json", type=Path, required=True, metavar="F.json", help="write the results here")
    ev.set_defaults(run=run_evaluate)


def _add_generate_parser(sub: Any) -> None:
    gen = sub.add_parser(
        "generate",
        help="turn one neutral photo into K smile videos",
        description="Generate K different smile videos of the face in PHOTO: a neutral "
        "start, one smile episode of the requested class, then the idle face.",
    )
    _add_detection_args(gen)
    gen.add_argument(
        "--class",
        dest="smile_class",
        default="spontaneous",
        metavar="CLASS",
        help="spontaneous (default) or posed",
    )
    gen.add_argument("--modes", type=int, default=4, help="K, the number of different smiles (1..16)")
    gen.add_argument("--seconds", type=float, default=4.0, help="video length in seconds (default 4)")
    gen.add_argument("--size", type=int, choices=(256, 512), default=256, help="face crop side (256)")
    gen.add_argument("--seed", type=int, default=0, help="random seed (same seed, same videos)")
    gen.add_argument(
        "--weights",
        type=Path,
        metavar="F.safetensors",
        help="CMM-Net weights (default: the weights shipped in the package)",
    )
    gen.add_argument("--full-frame", action="store_true", help="paste the face back into the whole photo")
    gen.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="new folder: mode_K.mp4, grid.mp4, grid.gif, landmarks.json, trajectories.png",
    )
    gen.add_argument(
        "--overwrite",
        action="store_true",
        help="replace DIR if it exists (only once the new videos are complete)",
    )
    gen.set_defaults(run=run_generate)


def _add_train_parser(sub: Any) -> None:
    train = sub.add_parser(
        "train",
        help="train CMM-Net (VAE, conditional LSTM, multi-mode generator)",
        description="Train CMM-Net on SynthSmile (generated in memory) or on a data "
        "set file; seeded and resumable (rerun the same command to continue).",
    )
    train.add_argument(
        "--data",
        type=Path,
        metavar="F.npz",
        help="data set from 'rt-smile dataset'; default: SynthSmile with --n/--identities",
    )
    train.add_argument("--n", type=_positive_int, default=2000, help="SynthSmile sequences (default 2000)")
    train.add_argument("--identities", type=_positive_int, default=500, help="SynthSmile identities (500)")
    train.add_argument(
        "--seed", type=int, default=0, help="training seed, and data seed unless --data-seed (default 0)"
    )
    train.add_argument(
        "--data-seed",
        type=int,
        default=None,
        help="SynthSmile data seed (default: --seed); set it to train another seed on the same data "
        "and held-out identities (not used with --data)",
    )
    train.add_argument("--vae-steps", type=_positive_int, default=3000)
    train.add_argument("--gen-steps", type=_positive_int, default=1500)
    train.add_argument(
        "--gen-lr-schedule",
        choices=("constant", "cosine"),
        default="constant",
        help="the generator's learning rate over its steps: constant, or a half cosine down to "
        "5%% of it at the last step (default constant)",
    )
    train.add_argument(
        "--gen-average",
        type=_unit_interval,
        default=0.0,
        metavar="DECAY",
        help="save a moving average of the generator's weights over its steps, with this decay "
        "per step (0.995: about the last 200 steps), instead of the last step's (default 0: off)",
    )
    train.add_argument("--modes", type=_positive_int, default=4, help="K, the number of smile modes (4)")
    train.add_argument(
        "--hidden",
        type=_positive_int,
        default=256,
        help="width of the conditional LSTM and the multi-mode generator (default 256)",
    )
    train.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="output folder: cmmnet.safetensors, train_log.json, train_loss.png, train_state.pt",
    )
    train.add_argument(
        "--relax",
        type=float,
        default=0.25,
        help="weight of the non-winning modes in the winner-takes-all loss (0.25)",
    )
    train.add_argument(
        "--diversity-weight", type=float, default=1.0, help="weight of the diversity hinge (1.0)"
    )
    train.add_argument(
        "--w-class",
        type=float,
        default=0.0,
        help="weight of the class term: a frozen latent-motion classifier's cross-entropy on every "
        "mode (0: off)",
    )
    train.add_argument(
        "--noise-candidates",
        type=_positive_int,
        default=1,
        metavar="M",
        help="noise draws per training sequence, training on the nearest (implicit maximum "
        "likelihood; M > 1 also holds one noise vector per sequence); default 1",
    )
    train.add_argument(
        "--candidate-match",
        choices=("conditional", "modes"),
        default="conditional",
        help="what picks the nearest noise candidate: the conditional LSTM's unroll, or the best of "
        "the K modes (default conditional)",
    )
    train.add_argument(
        "--noise-dim", type=_positive_int, default=16, help="size of the generator's noise vector (16)"
    )
    train.add_argument(
        "--energy-draws",
        type=_positive_int,
        default=1,
        metavar="M",
        help="noise draws per training sequence for the energy score of all their modes against the "
        "data (M > 1 also holds one noise vector per sequence); default 1: off",
    )
    train.add_argument(
        "--gen-batch", type=_positive_int, default=64, help="training sequences per generator step (64)"
    )
    train.add_argument(
        "--motion-face",
        choices=("own", "template"),
        default="own",
        help="the face the generator learns to move: each sequence's own (default), or every "
        "sequence retargeted onto the canonical template face (photos' motion is then retargeted)",
    )
    train.add_argument(
        "--diversity-space",
        choices=("code", "landmarks"),
        default="code",
        help="where the diversity hinge measures the modes' distance: the VAE's code space "
        "(default), or their decoded lip and eye motion",
    )
    train.add_argument(
        "--mode-noise",
        type=_non_negative_int,
        default=0,
        metavar="D",
        help="size of each mode's own noise vector; D > 0 trains the generator as a conditional VAE "
        "so that the K modes are K independent smiles (default 0: the modes differ by their "
        "embeddings only)",
    )
    train.add_argument(
        "--mode-style",
        action="store_true",
        help="tell each mode the style of its smile (lip-corner rise and fall times, peak, parting, "
        "first blink), measured on the training smile it learns and drawn with its noise at run "
        "time (needs --mode-noise)",
    )
    train.add_argument(
        "--conditional-weight",
        type=float,
        default=0.5,
        help="weight of the conditional LSTM's own regression on the data (0.5)",
    )
    train.add_argument(
        "--kl-weight", type=float, default=2e-3, help="weight of the mode noise's KL term (0.002)"
    )
    train.add_argument(
        "--vae-decoder",
        choices=("mlp", "linear"),
        default="mlp",
        help="the landmark VAE's decoder: an MLP (default) or one linear map, whose straight code "
        "paths decode to straight landmark paths",
    )
    train.add_argument(
        "--no-anchors", action="store_true", help="do not keep the training faces' codes as anchors"
    )
    train.add_argument("--restart", action="store_true", help="ignore a training state in DIR")
    train.set_defaults(run=run_train)


def _add_dataset_parser(sub: Any) -> None:
    ds = sub.add_parser(
        "dataset",
        help="make a smile landmark data set (synthetic or from videos)",
        description="Make a smile landmark data set (.npz, see rt_smile.data.sequences).",
    )
    dsub = ds.add_subparsers(dest="dataset_command", metavar="SOURCE", required=True)
    synth = dsub.add_parser(
        "synth",
        help="generate SynthSmile, the procedural smile data set",
        description="Generate SynthSmile: seeded, deterministic, synthetic smile "
        "landmark sequences of two classes (spontaneous, posed) at 30 fps.",
    )
    synth.add_argument("--n", type=_positive_int, default=1000, help="number of sequences (default 1000)")
    synth.add_argument(
        "--identities",
        type=_positive_int,
        default=None,
        help="number of distinct identities (default: n / 10)",
    )
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--out", type=Path, required=True, metavar="F.npz", help="output data set")
    synth.add_argument(
        "--plot", type=_png_path, metavar="F.png", help="also plot example trajectories per class"
    )
    synth.set_defaults(run=run_dataset_synth)
    videos = dsub.add_parser(
        "videos",
        help="ingest a folder of face videos",
        description="Decode every video of DIR (PyAV), find landmarks per frame "
        "(MediaPipe, video mode), align, resample to 30 fps, flag frames without "
        "a face. Labels from UvA-NEMO file names (*_spontaneous_smile_*, "
        "*_deliberate_smile_*) or a file,label CSV.",
    )
    videos.add_argument("folder", type=Path, metavar="DIR", help="folder of videos")
    videos.add_argument(
        "--labels", type=Path, metavar="CSV", help="file,label CSV (label: spontaneous|posed)"
    )
    videos.add_argument("--out", type=Path, required=True, metavar="F.npz", help="output data set")
    videos.add_argument("--fps", type=float, default=30.0, help="output frame rate (default 30)")
    videos.set_defaults(run=run_dataset_videos)


# --------------------------------------------------------------------------- helpers


def read_photo(photo: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> NDArray[np.uint8]:
    """Load PHOTO, or the bundled sample face when it is 'sample'."""
    if photo == SAMPLE:
        data = resources.files("rt_smile.assets").joinpath(SAMPLE_ASSET).read_bytes()
        return load_image(data, max_pixels=max_pixels)
    return load_image(photo, max_pixels=max_pixels)


def _detector_config(args: argparse.Namespace, iris: bool = False) -> DetectorConfig:
    return DetectorConfig(face=args.face, task_model=args.task_model, iris=iris)


def find_face(rgb: NDArray[np.uint8], config: DetectorConfig) -> FaceLandmarks:
    """Detect the one face of ``rgb`` under ``config``'s policy."""
    detector = make_detector(config)
    try:
        return detect_face(rgb, config, detector)
    finally:
        detector.close()


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix); rename it onto ``path`` when the
    block succeeds, delete it when it fails. OSErrors become one-line OutputErrors."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(payload, separators=(",", ":")) + "\n", encoding="utf-8")


def write_png(path: Path, rgb: NDArray[np.uint8]) -> None:
    with atomic_output(path) as tmp:
        save_png(tmp, rgb)


def _points_json(points: NDArray[np.float64]) -> list[list[float]]:
    return [[round(float(x), 3), round(float(y), 3)] for x, y in points]


class _Timer:
    def __init__(self) -> None:
        self._t = time.perf_counter()

    def lap(self, what: str) -> None:
        now = time.perf_counter()
        logger.info("%s: %.1f ms", what, 1000 * (now - self._t))
        self._t = now


# --------------------------------------------------------------------------- commands


def run_landmarks(args: argparse.Namespace) -> int:
    timer = _Timer()
    rgb = read_photo(args.photo, args.max_pixels)
    timer.lap("load")
    face = find_face(rgb, _detector_config(args, iris=args.iris))
    timer.lap("detect")
    w, h = face.image_size
    print(f"{len(face.points)} landmarks, IOD {face.iod:.1f} px, image {w}x{h}")
    if args.json is not None:
        write_json(
            args.json,
            {"image_size": [w, h], "iod": round(face.iod, 3), "landmarks": _points_json(face.points)},
        )
        print(f"wrote {args.json}")
    if args.plot is not None:
        from rt_smile.io.plots import plot_landmarks

        with atomic_output(args.plot) as tmp:
            plot_landmarks(rgb, face.points, tmp)
        timer.lap("plot")
        print(f"wrote {args.plot}")
    return 0


def render_pose(
    rgb: NDArray[np.uint8],
    face: FaceLandmarks,
    intensities: dict[str, float],
    size: int,
    full_frame: bool,
) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
    """The rendered frame and its 468 target landmarks in the frame's pixels."""
    import torch

    from rt_smile.data.expressions import apply_expression
    from rt_smile.face.align import crop_face, frame_of, paste_back, warn_if_turned
    from rt_smile.face.topology import NUM_LANDMARKS
    from rt_smile.models.translator import Translator, prepare_face

    timer = _Timer()
    crop_config = CropConfig(size=size)
    crop = crop_face(rgb, face, crop_config)
    warn_if_turned(frame_of(face).yaw_deg)
    neutral = crop.landmarks[:NUM_LANDMARKS]
    target = apply_expression(neutral, intensities, crop.depth)
    prior = prepare_face(crop.image, neutral)
    timer.lap("crop and prepare")
    with torch.no_grad():
        out = Translator(size).render(prior, torch.from_numpy(target).float()[None])
    frame = (out[0].permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    timer.lap("render")
    if not full_frame:
        return np.ascontiguousarray(frame), target
    photo = paste_back(rgb, crop, frame, feather=crop_config.feather)
    return photo, crop.to_crop.inverse().apply(target)


def run_pose(args: argparse.Namespace) -> int:
    timer = _Timer()
    rgb = read_photo(args.photo, args.max_pixels)
    timer.lap("load")
    face = find_face(rgb, _detector_config(args))
    timer.lap("detect")
    frame, target = render_pose(rgb, face, args.au, args.size, args.full_frame)
    h, w = frame.shape[:2]
    write_png(args.out, frame)
    print(f"wrote {args.out} ({w}x{h})")
    if args.landmarks_out is not None:
        write_json(args.landmarks_out, {"image_size": [w, h], "landmarks": _points_json(target)})
        print(f"wrote {args.landmarks_out}")
    return 0


def _write_dataset(path: Path, data: Any) -> None:
    from rt_smile.data.sequences import save_sequences

    save_sequences(path, data)
    lengths = data.lengths()
    print(f"wrote {path}: {len(data)} sequences, {int(lengths.sum())} frames at {data.fps:g} fps")


def run_dataset_synth(args: argparse.Namespace) -> int:
    from rt_smile.data.synthetic import SynthConfig, generate, plot_trajectories

    config = SynthConfig(n_sequences=args.n, n_identities=args.identities, seed=args.seed)
    data = generate(config, progress=True)
    _write_dataset(args.out, data)
    if args.plot is not None:
        with atomic_output(args.plot) as tmp:
            plot_trajectories(data, tmp)
        print(f"wrote {args.plot}")
    return 0


def run_dataset_videos(args: argparse.Namespace) -> int:
    from rt_smile.data.videos import ingest_videos

    data = ingest_videos(args.folder, labels_csv=args.labels, fps=args.fps, progress=True)
    _write_dataset(args.out, data)
    return 0


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """``rt-smile train``'s options → a ``TrainConfig`` (a CliError for options that do not go
    together)."""
    from rt_smile.train.trainer import TrainConfig

    try:
        return TrainConfig(
            n_sequences=args.n,
            n_identities=args.identities,
            data_seed=args.seed if args.data_seed is None else args.data_seed,
            seed=args.seed,
            vae_steps=args.vae_steps,
            gen_steps=args.gen_steps,
            gen_lr_schedule=args.gen_lr_schedule,
            gen_average=args.gen_average,
            modes=args.modes,
            hidden=args.hidden,
            relax=args.relax,
            w_diversity=args.diversity_weight,
            w_class=args.w_class,
            anchors=not args.no_anchors,
            noise_candidates=args.noise_candidates,
            noise_dim=args.noise_dim,
            candidate_match=args.candidate_match,
            energy_draws=args.energy_draws,
            gen_batch=args.gen_batch,
            motion_face=args.motion_face,
            diversity_space=args.diversity_space,
            mode_noise_dim=args.mode_noise,
            mode_style=args.mode_style,
            w_kl=args.kl_weight,
            w_conditional=args.conditional_weight,
            vae_decoder=args.vae_decoder,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from exc


def run_train(args: argparse.Namespace) -> int:
    import shlex

    from rt_smile.data.sequences import load_sequences
    from rt_smile.train.trainer import Trainer, synth_data

    config = _train_config(args)
    data = load_sequences(args.data) if args.data is not None else synth_data(config)
    command = "rt-smile " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        weights = Trainer(config, data, args.out, command).run(progress=True, resume=not args.restart)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    print(f"wrote {weights}, {args.out / 'train_log.json'}, {args.out / 'train_loss.png'}")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from rt_smile.face.align import frame_of
    from rt_smile.io.checkpoint import load_cmmnet
    from rt_smile.runtime.generate import (
        FPS,
        Generation,
        check_output,
        check_request,
        generate_landmarks,
        render_modes,
        write_generation,
    )

    check_request(args.smile_class, args.modes, args.seconds)
    check_output(args.out, args.overwrite)
    model = load_cmmnet(args.weights)
    rgb = read_photo(args.photo, args.max_pixels)
    face = find_face(rgb, _detector_config(args))
    neutral = frame_of(face).aligned
    frames = max(1, round(args.seconds * FPS))
    seqs = generate_landmarks(model, neutral, args.smile_class, args.modes, frames, args.seed)
    video, landmarks = render_modes(rgb, face, seqs, args.size, args.full_frame, progress=True)
    files = write_generation(
        args.out, Generation(video, landmarks, FPS, args.smile_class), overwrite=args.overwrite
    )
    print(f"wrote {args.out}: " + ", ".join(f.name for f in files))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from rt_smile.data.sequences import load_sequences
    from rt_smile.io.checkpoint import default_weights_path, load_cmmnet, read_info
    from rt_smile.train.evaluate import EvalConfig, evaluate
    from rt_smile.train.trainer import TrainConfig, synth_data

    weights = args.weights or default_weights_path()
    model = load_cmmnet(weights)
    known = TrainConfig.__dataclass_fields__
    train_config = TrainConfig(
        **{k: v for k, v in read_info(weights).get("train_config", {}).items() if k in known}
    )
    data = load_sequences(args.data) if args.data is not None else synth_data(train_config)
    train, test = data.split_by_identity(train_config.test_fraction, train_config.split_seed)
    report = evaluate(model, train, test, EvalConfig(conditions=args.conditions))
    report["weights"] = str(weights)
    report["data_source"] = data.meta.get("source", "?")
    write_json(args.json, report)
    for m in report["methods"]:
        print(
            f"{m['method']:32s} class {m['class_accuracy']:.3f}  FD {m['frechet_distance']:.3f}  "
            f"novelty {m['novelty_iod']:.4f} (with the data's jitter {m['novelty_observed_iod']:.4f})  "
            f"start {m['neutral_start_iod']:.4f}  jerk {m['jerk_ratio']:.2f}"
        )
    print(f"FD noise floor {report['frechet_noise_floor']:.3f}; diversity {report['diversity']}")
    print(f"wrote {args.json}")
    return 0


def _ice_servers(args: argparse.Namespace) -> tuple[tuple[str, str | None, str | None], ...]:
    for url in args.ice_server:
        if not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
            raise CliError(f"--ice-server {url!r}: expected a stun:, stuns:, turn: or turns: URL")
    return tuple(
        (u, args.ice_username, args.ice_credential) if u.startswith("turn") else (u, None, None)
        for u in args.ice_server
    )


def run_serve(args: argparse.Namespace) -> int:
    import asyncio

    from rt_smile.config import EngineConfig, ServerConfig
    from rt_smile.io.checkpoint import load_cmmnet
    from rt_smile.runtime.engine import SmileEngine
    from rt_smile.stream.server import check_bind, serve

    if not (math.isfinite(args.episode_every) and args.episode_every >= 0):
        raise CliError(f"--episode-every must be a number of seconds >= 0, got {args.episode_every}")
    config = ServerConfig(
        host=args.host,
        port=args.port,
        token=args.token,
        insecure=args.insecure,
        ice_servers=_ice_servers(args),
    )
    check_bind(config)
    engine_config = EngineConfig(
        size=args.size, max_sessions=args.max_sessions, episode_every=args.episode_every
    )
    from rt_smile.runtime.backends import BackendOptions, make_backend

    model = load_cmmnet(args.weights)
    backend = make_backend(args.backend, model, BackendOptions(size=args.size, weights=args.weights))
    logger.info("serving with backend %s on %s", backend.info.name, backend.info.device)
    engine = SmileEngine(model, engine_config, backend)
    try:
        asyncio.run(serve(engine, config))
    except KeyboardInterrupt:
        print(f"{PROG}: stopped", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- entry point


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)


def _fail(message: str) -> int:
    first = " ".join(message.split()) or "failed"
    print(f"{PROG}: error: {first}", file=sys.stderr)
    return EXIT_ERROR


def run_export(args: argparse.Namespace) -> int:
    from rt_smile.io.checkpoint import load_cmmnet

    try:
        from trt_build.export import export_all
    except ImportError as exc:
        raise CliError(f"export needs onnx: pip install 'rt_smile[onnx]' ({exc})") from exc
    model = load_cmmnet(args.weights)
    try:
        done = export_all(model, args.size, args.out)
    except ImportError as exc:
        raise CliError(str(exc)) from exc
    except OSError as exc:
        raise CliError(f"cannot write to {args.out}: {exc}") from exc
    for e in done:
        verdict = "ok" if not e.tensorrt_problems else "; ".join(e.tensorrt_problems[:3])
        print(f"{e.path}  parity {e.parity:.2e}  TensorRT 10 parser: {verdict}")
    return 0 if all(not e.tensorrt_problems for e in done) else 1


def _backend_options(args: argparse.Namespace, size: int = 256, threads: int = 0) -> Any:
    from rt_smile.runtime.backends import BackendOptions

    return BackendOptions(
        size=size, device=args.device, threads=threads, cache=args.cache, weights=args.weights,
        onnx=args.onnx, max_batch=args.max_batch, precision=args.precision,
    )  # fmt: skip


def run_build(args: argparse.Namespace) -> int:
    from rt_smile.io.checkpoint import load_cmmnet
    from rt_smile.runtime.backends import build_all_engines

    model = load_cmmnet(args.weights)
    for size in args.size:
        options = _backend_options(args, size)
        for stage, path in build_all_engines(model, options).items():
            print(f"{size}² {stage}: {path}")
    return 0


def _bench_backends(names: tuple[str, ...], device: str) -> tuple[str, ...]:
    from rt_smile.runtime.backends import available_backends, choose_auto

    out: list[str] = []
    for name in names:
        if name == "all":
            out += available_backends(device)
        elif name == "auto":
            chosen, reason = choose_auto(device)
            print(f"backend auto → {chosen}: {reason}", file=sys.stderr)
            out.append(chosen)
        else:
            out.append(name)
    return tuple(dict.fromkeys(out))


def run_bench(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from rt_smile.io.bench_plot import plot_bench
    from rt_smile.io.checkpoint import load_cmmnet
    from rt_smile.runtime.bench import BenchPlan, Timing, format_table, run_bench
    from rt_smile.runtime.machine import machine_info

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    backends = _bench_backends(args.backend, args.device)
    plan = BenchPlan(backends, args.modes, args.batch, args.size, Timing.quick() if args.quick else Timing())
    model = load_cmmnet(args.weights)
    total = len(plan.cases()) * len(backends)
    with tqdm(total=total, desc="bench", unit="case", disable=None) as bar:

        def progress(what: str) -> None:
            bar.set_postfix_str(what)
            bar.update(1)

        rows = run_bench(model, plan, _backend_options(args, threads=threads), progress)
    print(format_table(rows))
    payload = {"machine": machine_info(), "quick": args.quick, "results": rows}
    if args.json:
        write_json(args.json, payload)
        print(f"wrote {args.json}")
    plot = args.plot or (args.json.with_suffix(".png") if args.json else None)
    if plot:
        with atomic_output(plot) as tmp:
            plot_bench(
                rows, tmp, f"rt-smile bench on {payload['machine']['gpu'] or payload['machine']['cpu']}"
            )
        print(f"wrote {plot}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rt-smile``; returns the exit status (0, or 2 after a one-line error)."""
    try:
        args = build_parser().parse_args(argv)
        _configure_logging(args.verbose + getattr(args, "sub_verbose", 0))
        return int(args.run(args))
    except RtSmileError as exc:
        return _fail(str(exc))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
