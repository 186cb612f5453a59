"""Offline generation: one neutral photo → K smile videos of that person (``rt-smile generate``).

photo → face landmarks → aligned neutral shape → CMM-Net (class, noise) → K landmark sequences
(displacements added to the photo's own neutral landmarks, so every mode starts exactly from
it) → translator → frames.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from rt_smile.config import CropConfig
from rt_smile.data.sequences import CLASSES
from rt_smile.errors import RtSmileError
from rt_smile.face.align import crop_face, frame_of, paste_back, warn_if_turned
from rt_smile.face.landmarks import FaceLandmarks
from rt_smile.face.topology import NUM_LANDMARKS
from rt_smile.models.cmmnet import CMMNet
from rt_smile.models.translator import Translator, prepare_face
from rt_smile.runtime.motion import FaceMotion
from rt_smile.runtime.step import groups_for

logger = logging.getLogger(__name__)

FPS = 30.0
MAX_MODES = 16
MAX_SECONDS = 120.0


class GenerationError(RtSmileError, ValueError):
    """Bad generation request (class, number of modes, duration, output folder)."""


@dataclass(frozen=True)
class Generation:
    """K generated videos of one face."""

    #: (K, T, S, S, 3) RGB frames (crop, or the full photo with ``full_frame``).
    frames: NDArray[np.uint8]
    #: (K, T, 468, 2) target landmarks in pixels of the frames.
    landmarks: NDArray[np.float64]
    fps: float
    smile_class: str


def check_request(smile_class: str, modes: int, seconds: float) -> None:
    """Raise GenerationError for an unknown class, K out of 1..16 or a bad duration."""
    if smile_class not in CLASSES:
        raise GenerationError(f"unknown smile class {smile_class!r}; choose {' or '.join(CLASSES)}")
    if not 1 <= modes <= MAX_MODES:
        raise GenerationError(f"--modes must be within 1..{MAX_MODES}, got {modes}")
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS):
        raise GenerationError(f"--seconds must be within (0, {MAX_SECONDS:g}], got {seconds}")


def generate_landmarks(
    model: CMMNet, neutral_aligned: NDArray[np.float64], smile_class: str, modes: int, frames: int, seed: int
) -> NDArray[np.float64]:
    """(K, T, 468, 2) aligned landmark sequences. Modes beyond the model's own K come from
    further noise draws (each group of the model's modes gets its own noise)."""
    groups = groups_for(modes, model.modes)
    gen = torch.Generator().manual_seed(seed)
    noise, mode_noise = model.sample_noise(groups, frames, generator=gen)
    motion = FaceMotion.for_face(model, neutral_aligned)
    start = torch.from_numpy(motion.start).float()[None].expand(groups, -1, -1)
    cls = torch.full((groups,), CLASSES.index(smile_class), dtype=torch.long)
    with torch.no_grad():
        seqs = model.generate(start, cls, noise, mode_noise)  # (groups, Kmodel, T, 468, 2)
    return motion.onto(seqs.flatten(0, 1)[:modes].double().numpy())


def render_modes(
    photo: NDArray[np.uint8],
    face: FaceLandmarks,
    sequences: NDArray[np.float64],
    size: int,
    full_frame: bool = False,
    progress: bool = False,
) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
    """Frames (K, T, ...) and target landmarks (K, T, 468, 2) in frame pixels."""
    crop = crop_face(photo, face, CropConfig(size=size))
    frame = frame_of(face)
    warn_if_turned(frame.yaw_deg)
    to_crop = crop.to_crop.matrix[:, :2] @ frame.to_image  # aligned → crop pixels
    disp = sequences - frame.aligned  # (K, T, 468, 2) aligned units
    targets = crop.landmarks[None, None, :NUM_LANDMARKS] + disp @ to_crop.T
    prior = prepare_face(crop.image, crop.landmarks)
    translator = Translator(size)
    k, t = targets.shape[:2]
    out = np.zeros((k, t, size, size, 3), np.uint8)
    steps = range(t)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="render", unit="frame")  # type: ignore[assignment]
    with torch.inference_mode():
        for i in steps:
            batch = translator.render(prior, torch.from_numpy(targets[:, i]).float())
            out[:, i] = (batch.permute(0, 2, 3, 1).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
    if not full_frame:
        return out, targets
    inv = crop.to_crop.inverse()
    pasted = np.stack([np.stack([paste_back(photo, crop, f) for f in mode]) for mode in out])
    return pasted, inv.apply(targets)


def check_output(out: Path, overwrite: bool = False) -> None:
    """Refuse an ``out`` that is not a new or empty folder (unless ``overwrite`` and it is a
    folder), or whose parent cannot be written; call it before the heavy work."""
    if out.exists() and not out.is_dir():
        raise GenerationError(f"{out} exists and is not a folder; choose another --out")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise GenerationError(f"{out} exists and is not an empty folder; remove it or choose another --out")
    shutil.rmtree(prepare_output(out))


def prepare_output(out: Path) -> Path:
    """A fresh temporary folder beside ``out``."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise GenerationError(f"cannot write to {out.parent}: {exc.strerror or exc}") from exc


def write_generation(out: Path, gen: Generation, plot: bool = True, overwrite: bool = False) -> list[Path]:
    """mode_k.mp4, grid.mp4, grid.gif, landmarks.json, trajectories.png — into a temporary folder
    renamed to ``out`` only when everything is written (replacing ``out`` with ``overwrite``)."""
    from rt_smile.io.video import grid, write_gif, write_mp4

    check_output(out, overwrite)
    tmp = prepare_output(out)
    try:
        for k, frames in enumerate(gen.frames):
            write_mp4(tmp / f"mode_{k}.mp4", frames, gen.fps)
        tiled = grid(list(gen.frames))
        write_mp4(tmp / "grid.mp4", tiled, gen.fps)
        write_gif(tmp / "grid.gif", tiled[::2], gen.fps / 2, max_side=384)
        h, w = gen.frames.shape[2:4]
        payload = {
            "fps": gen.fps,
            "image_size": [int(w), int(h)],
            "smile_class": gen.smile_class,
            "modes": np.round(gen.landmarks, 3).tolist(),
        }
        (tmp / "landmarks.json").write_text(json.dumps(payload))
        if plot:
            plot_modes(gen, tmp / "trajectories.png")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return sorted(out.iterdir())


def plot_modes(gen: Generation, path: Path) -> None:
    """Lip-corner width, inner-lip opening and eyelid gap of every mode over time (pixels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lm = gen.landmarks
    t = np.arange(lm.shape[1]) / gen.fps
    measures = {
        "lip-corner width 61-291": np.linalg.norm(lm[:, :, 61] - lm[:, :, 291], axis=-1),
        "inner-lip opening 13-14": np.linalg.norm(lm[:, :, 13] - lm[:, :, 14], axis=-1),
        "eyelid gap 159-145": np.linalg.norm(lm[:, :, 159] - lm[:, :, 145], axis=-1),
    }
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, (title, values) in zip(axes, measures.items(), strict=True):
        for k, v in enumerate(values):
            ax.plot(t, v, label=f"mode {k}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("time (s)")
    axes[0].set_ylabel("pixels")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{gen.smile_class} smile, {len(lm)} modes", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
