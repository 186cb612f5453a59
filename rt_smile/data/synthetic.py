"""SynthSmile: a seeded, deterministic, procedural data set of smile landmark sequences.

Synthetic data, made by the project because no smile data set can be downloaded here. Each
sequence shows one identity (a smooth deformation of MediaPipe's canonical face) making one smile
episode, at 30 fps, starting and ending neutral, with small head-pose motion, natural blinks and
landmark jitter; frames are then aligned exactly as ingested videos are (per-frame similarity on
the stable points), so both sources share one format (``rt_smile.data.sequences``).

Smile dynamics follow the smile-dynamics literature, as class-level distributions:
- posed (deliberate) smiles reach a larger amplitude and a higher maximum onset speed and are
  shorter (Schmidt et al. 2006, 2009);
- spontaneous smiles are slower and smaller at onset, last longer, more often have several
  apexes, and more often involve the eyes (AU6 cheek raise; Ambadar, Cohn and Reed 2009);
- asymmetry findings are mixed, so left/right asymmetry is drawn per sample with the same
  distribution for both classes.
The full generative model is documented in docs/synthsmile.md.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rt_smile.data.expressions import ExpressionBasis
from rt_smile.data.sequences import CLASSES, SmileSequences
from rt_smile.face import topology as topo
from rt_smile.face.align import align_frames, canonical_template

logger = logging.getLogger(__name__)

Array = NDArray[np.float64]
#: Action units driven by the generator, in the order of the intensity tracks.
TRACKS = ("AU12R", "AU12L", "AU6R", "AU6L", "AU7R", "AU7L", "AU25", "AU26", "AU45R", "AU45L")


@dataclass(frozen=True)
class SynthConfig:
    """SynthSmile generation."""

    #: Number of sequences.
    n_sequences: int = 1000
    #: Number of identities (default: one per 10 sequences, at least 2).
    n_identities: int | None = None
    #: Master seed; sequence i depends only on (seed, i).
    seed: int = 0
    #: Frame rate.
    fps: float = 30.0
    #: Standard deviation of the per-landmark jitter, in IOD (MediaPipe-like detection noise).
    jitter_iod: float = 0.002
    #: Standard deviation of head yaw/pitch/roll, degrees.
    pose_deg: tuple[float, float, float] = (6.0, 5.0, 3.0)


@dataclass(frozen=True)
class ClassDynamics:
    """Ranges (uniform low, high) of one class's smile parameters; durations in seconds."""

    amplitude: tuple[float, float]
    onset: tuple[float, float]
    apex: tuple[float, float]
    offset: tuple[float, float]
    #: Probability that the cheeks rise (AU6), and its intensity relative to the smile.
    p_cheek: float
    cheek_ratio: tuple[float, float]
    #: Probability of a second apex (a smile that rises again before it fades).
    p_second_apex: float


DYNAMICS = {
    "spontaneous": ClassDynamics(
        amplitude=(0.45, 0.8),
        onset=(0.55, 1.1),
        apex=(0.8, 2.0),
        offset=(0.8, 1.6),
        p_cheek=0.8,
        cheek_ratio=(0.6, 1.0),
        p_second_apex=0.35,
    ),
    "posed": ClassDynamics(
        amplitude=(0.75, 1.0),
        onset=(0.25, 0.5),
        apex=(0.4, 1.1),
        offset=(0.4, 0.8),
        p_cheek=0.35,
        cheek_ratio=(0.3, 0.7),
        p_second_apex=0.05,
    ),
}


def _smoothstep(x: Array) -> Array:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def episode_profile(t: Array, start: float, onset: float, apex: float, offset: float) -> Array:
    """Intensity in 0..1: neutral, S-shaped onset, apex, S-shaped offset, neutral."""
    rise = _smoothstep((t - start) / onset)
    fall = 1.0 - _smoothstep((t - start - onset - apex) / offset)
    return np.minimum(rise, fall)


def _identity_shape(rng: np.random.Generator) -> Array:
    """A neutral face: the canonical face with smooth random proportions (aligned frame)."""
    base = canonical_template()
    width = 1.0 + rng.normal(0.0, 0.04)
    height = 1.0 + rng.normal(0.0, 0.05)
    shape = base * np.array([width, height])
    centers = base[rng.choice(len(base), size=6, replace=False)]
    for c in centers:
        w = np.exp(-np.sum((base - c) ** 2, axis=1) / (2 * 0.25**2))
        shape += w[:, None] * rng.normal(0.0, 0.025, size=2)
    mouth = np.isin(np.arange(len(base)), topo.LIPS)
    shape[mouth, 0] *= 1.0 + rng.normal(0.0, 0.05)  # mouth width
    return shape


def _blinks(t: Array, rng: np.random.Generator) -> Array:
    """Eyelid closure track: spontaneous blinks about every 3 s, ~0.3 s each."""
    track = np.zeros_like(t)
    time = rng.uniform(0.2, 2.5)
    while time < t[-1]:
        depth = rng.uniform(0.8, 1.0)
        track = np.maximum(track, depth * episode_profile(t, time, 0.08, rng.uniform(0.02, 0.08), 0.15))
        time += rng.exponential(3.0) + 0.5
    return track


def _smile_tracks(t: Array, cls: str, start: float, rng: np.random.Generator) -> tuple[Array, float]:
    """(T, len(TRACKS)) intensities of one smile episode, and its end time."""
    d = DYNAMICS[cls]
    amp = rng.uniform(*d.amplitude)
    onset, apex, offset = (rng.uniform(*r) for r in (d.onset, d.apex, d.offset))
    smile = amp * episode_profile(t, start, onset, apex, offset)
    if rng.random() < d.p_second_apex:
        dip = 0.25 * amp * episode_profile(t, start + onset + 0.3 * apex, 0.3, 0.1, 0.3)
        smile = np.clip(smile - dip + 0.6 * dip * (t > start + onset + 0.5 * apex), 0.0, 1.0)
    asym = rng.normal(0.0, 0.1)
    lag = rng.normal(0.0, 0.04)  # one side starts a little later
    other = amp * episode_profile(t, start + lag, onset, apex, offset) if abs(lag) > 0.01 else smile
    tracks = np.zeros((len(t), len(TRACKS)))
    tracks[:, 0] = np.clip(smile * (1 - asym), 0, 1)
    tracks[:, 1] = np.clip(other * (1 + asym), 0, 1)
    if rng.random() < d.p_cheek:
        ratio = rng.uniform(*d.cheek_ratio)
        tracks[:, 2], tracks[:, 3] = ratio * tracks[:, 0], ratio * tracks[:, 1]
        tracks[:, 4] = tracks[:, 5] = 0.3 * ratio * smile
    if rng.random() < 0.55:  # lips part (teeth show) in about half of the smiles
        tracks[:, 6] = rng.uniform(0.2, 0.8) * smile
    if rng.random() < 0.2:
        tracks[:, 7] = rng.uniform(0.1, 0.4) * smile
    return tracks, start + onset + apex + offset


def _head_pose(t: Array, rng: np.random.Generator, sd_deg: tuple[float, float, float]) -> Array:
    """(T, 3) yaw, pitch, roll in radians: a random offset plus a slow random drift."""
    base = rng.normal(0.0, 1.0, 3) * np.array(sd_deg)
    walk = np.cumsum(rng.normal(0.0, 1.0, (len(t), 3)), axis=0)
    kernel = np.hanning(15)
    walk = np.stack([np.convolve(w, kernel / kernel.sum(), mode="same") for w in walk.T], 1)
    walk *= 0.3 * np.array(sd_deg) / max(float(np.abs(walk).max()), 1e-6)
    return np.deg2rad(base + walk)


def _project(shape2d: Array, depth: Array, pose: Array) -> Array:
    """Rotate (x, y, depth) by yaw/pitch/roll and project orthographically: (T, N, 2)."""
    yaw, pitch, roll = pose[:, 0], pose[:, 1], pose[:, 2]
    x, y = shape2d[..., 0], shape2d[..., 1]
    z = np.broadcast_to(-depth, x.shape)  # canonical depth points to the viewer; y is down here
    x1 = x * np.cos(yaw)[:, None] + z * np.sin(yaw)[:, None]
    z1 = -x * np.sin(yaw)[:, None] + z * np.cos(yaw)[:, None]
    y1 = y * np.cos(pitch)[:, None] - z1 * np.sin(pitch)[:, None]
    cr, sr = np.cos(roll)[:, None], np.sin(roll)[:, None]
    return np.stack([x1 * cr - y1 * sr, x1 * sr + y1 * cr], -1)


def _centred_depth() -> Array:
    depth = topo.canonical_depth_iod()
    return depth - depth.mean()


def sample_sequence(
    rng: np.random.Generator, identity: Array, basis: ExpressionBasis, cls: str, config: SynthConfig
) -> tuple[NDArray[np.float32], Array]:
    """One sequence: aligned landmarks (T, 468, 2) and its intensity tracks (T, len(TRACKS))."""
    start = rng.uniform(0.1, 0.5)
    # draw the episode first on a long time axis, then cut after its end plus a neutral tail
    t_long = np.arange(int(8.0 * config.fps)) / config.fps
    tracks, end = _smile_tracks(t_long, cls, start, rng)
    n = min(len(t_long), int(np.ceil((end + rng.uniform(0.2, 0.5)) * config.fps)) + 1)
    t = t_long[:n]
    tracks = tracks[:n]
    blink = _blinks(t, rng)
    tracks[:, 8] = np.maximum(tracks[:, 8], blink)
    tracks[:, 9] = np.maximum(tracks[:, 9], blink)
    fields = np.stack([basis.fields[name] for name in TRACKS])  # (U, 468, 2)
    shapes = identity[None] + np.einsum("tu,unc->tnc", np.clip(tracks, 0, 1), fields)
    frames = _project(shapes, _centred_depth(), _head_pose(t, rng, config.pose_deg))
    aligned = align_frames(frames + detection_jitter(frames.shape, config.jitter_iod, rng))
    return aligned.astype(np.float32), tracks


def detection_jitter(
    shape: tuple[int, ...], sigma_iod: float, rng: np.random.Generator
) -> NDArray[np.float64]:
    """SynthSmile's landmark noise for frames of ``shape`` (T, N, 2): Gaussian per landmark and
    frame (``sigma_iod``), each frame averaged with the previous one (mildly correlated in time,
    as a detector's noise is)."""
    jitter = rng.normal(0.0, sigma_iod, shape)
    return 0.5 * (jitter + np.roll(jitter, 1, axis=0))


def observed(
    seq: NDArray[np.floating],  # type: ignore[type-arg]
    rng: np.random.Generator,
    sigma_iod: float = SynthConfig.jitter_iod,
) -> NDArray[np.float64]:
    """An aligned sequence (T, 468, 2) as SynthSmile observes its smiles: with its detection
    jitter, then aligned again frame by frame (for comparing jitter-free generated sequences
    with the data like for like)."""
    frames = np.asarray(seq, np.float64)
    return align_frames(frames + detection_jitter(frames.shape, sigma_iod, rng))


def _progress(iterable: range, enabled: bool) -> range:
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc="SynthSmile", unit="seq")  # type: ignore[return-value]


def generate(config: SynthConfig = SynthConfig(), progress: bool = False) -> SmileSequences:
    """Generate the data set; identical output for identical config (seeded, deterministic)."""
    if config.n_sequences < 1:
        raise ValueError("n_sequences must be at least 1")
    n_ids = config.n_identities or max(2, config.n_sequences // 10)
    root = np.random.SeedSequence(config.seed)
    id_rngs = [np.random.default_rng(s) for s in root.spawn(n_ids + 1)]
    order_rng = id_rngs.pop()
    identities = [_identity_shape(r) for r in id_rngs]
    bases = [ExpressionBasis.for_aligned(s) for s in identities]
    who = order_rng.permutation(np.arange(config.n_sequences) % n_ids)
    labels = np.arange(config.n_sequences) % len(CLASSES)
    seq_rngs = [
        np.random.default_rng(s) for s in np.random.SeedSequence([config.seed, 1]).spawn(config.n_sequences)
    ]
    seqs: list[NDArray[np.float32]] = []
    for i in _progress(range(config.n_sequences), progress):
        pts, _ = sample_sequence(seq_rngs[i], identities[who[i]], bases[who[i]], CLASSES[labels[i]], config)
        seqs.append(pts)
    lengths = np.array([len(s) for s in seqs], np.int64)
    meta = {"source": "SynthSmile (synthetic)", "config": asdict(config), "tracks": list(TRACKS)}
    return SmileSequences(
        points=np.concatenate(seqs),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        labels=labels.astype(np.int64),
        identity=who.astype(np.int64),
        valid=np.ones(int(lengths.sum()), bool),
        fps=config.fps,
        meta=meta,
    )


def lip_corner_width(seq: NDArray[np.floating[Any]]) -> Array:
    """Distance between the lip corners (61-291) per frame, IOD units of the aligned frame."""
    return np.asarray(np.linalg.norm(seq[:, topo.RIGHT_LIP_CORNER] - seq[:, topo.LEFT_LIP_CORNER], axis=1))


def smile_measures(data: SmileSequences) -> dict[str, dict[str, float]]:
    """Per class means of: amplitude (lip-corner widening, IOD), maximum onset speed (IOD/s),
    duration (s), and share of smiles whose eyes narrow with the smile (AU6: at the widest smile
    the lower lids have risen by more than 0.01 IOD)."""
    out: dict[str, dict[str, float]] = {}
    for k, name in enumerate(CLASSES):
        amp, speed, dur, eyes = [], [], [], []
        for i in np.flatnonzero(data.labels == k):
            seq = data.sequence(int(i)).astype(np.float64)
            w = lip_corner_width(seq) - lip_corner_width(seq)[0]
            amp.append(w.max())
            speed.append(np.max(np.diff(w)) * data.fps)
            active = np.flatnonzero(w > 0.2 * w.max())
            dur.append((active[-1] - active[0] + 1) / data.fps if len(active) else 0.0)
            lid = seq[:, topo.RIGHT_EYELID[1], 1] + seq[:, topo.LEFT_EYELID[1], 1]
            eyes.append(float((lid[0] - lid[int(np.argmax(w))]) / 2 > 0.01))
        out[name] = {
            "sequences": float(len(amp)),
            "amplitude_iod": float(np.mean(amp)),
            "max_onset_speed_iod_per_s": float(np.mean(speed)),
            "duration_s": float(np.mean(dur)),
            "eyes_involved_share": float(np.mean(eyes)),
        }
    return out


def plot_trajectories(data: SmileSequences, path: str | Path, per_class: int = 8) -> None:
    """Example trajectories per class: lip-corner widening, inner-lip opening, eyelid gap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(CLASSES), 3, figsize=(11, 5.5), sharex=True, sharey="col")
    for row, name in enumerate(CLASSES):
        for i in np.flatnonzero(data.labels == row)[:per_class]:
            seq = data.sequence(int(i)).astype(np.float64)
            t = np.arange(len(seq)) / data.fps
            w = lip_corner_width(seq)
            mouth = np.linalg.norm(seq[:, 13] - seq[:, 14], axis=1)
            lid = np.linalg.norm(seq[:, 159] - seq[:, 145], axis=1)
            for ax, y in zip(axes[row], (w - w[0], mouth, lid), strict=True):
                ax.plot(t, y, lw=1)
        axes[row, 0].set_ylabel(f"{name}\n(IOD)")
    for ax, title in zip(
        axes[0], ("lip-corner widening", "inner-lip opening 13-14", "eyelid gap 159-145"), strict=True
    ):
        ax.set_title(title, fontsize=10)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    fig.suptitle(f"SynthSmile (synthetic): {per_class} example sequences per class", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
