"""Sequence metrics on aligned landmark sequences (IOD units): motion, diversity, novelty,
Fréchet distance, smoothness.

Motion is what a smile adds to a face: landmarks minus frame 0, over the lip and eye points,
after the per-frame similarity alignment on the stable points that every sequence in the data
format already has. Sequences of different lengths are compared over a common length, the
shorter one held at its last frame (sequences end neutral).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from rt_smile.face import topology as topo

Array = NDArray[np.float64]
#: Points whose motion the metrics look at: lips (inner and outer) and eyes.
MOTION_POINTS = np.array(sorted({*topo.LIPS, *topo.EYES}), dtype=np.int64)


def motion(seq: NDArray[np.floating], points: NDArray[np.int64] = MOTION_POINTS) -> Array:  # type: ignore[type-arg]
    """(T, P, 2) displacement of the motion points from frame 0."""
    s = np.asarray(seq, np.float64)[:, points]
    return s - s[:1]


def pad_to(m: Array, length: int) -> Array:
    """Hold the last frame until ``length`` frames (or cut to ``length``)."""
    if len(m) >= length:
        return m[:length]
    return np.concatenate([m, np.repeat(m[-1:], length - len(m), axis=0)])


def motion_distance(a: Array, b: Array) -> float:
    """Mean per-point distance (IOD) between two motions over their common (padded) length."""
    n = max(len(a), len(b))
    return float(np.linalg.norm(pad_to(a, n) - pad_to(b, n), axis=-1).mean())


def motion_magnitude(m: Array) -> float:
    """Mean per-point distance of a motion from no motion (IOD)."""
    return float(np.linalg.norm(m, axis=-1).mean())


def pairwise_mean_distance(motions: list[Array]) -> float:
    """Mean motion distance over all pairs (0 for fewer than two)."""
    d = [
        motion_distance(motions[i], motions[j])
        for i in range(len(motions))
        for j in range(i + 1, len(motions))
    ]
    return float(np.mean(d)) if d else 0.0


def nearest_distance(m: Array, pool: list[Array]) -> float:
    """Distance from ``m`` to its nearest motion in ``pool`` (novelty: 0 means a copy)."""
    return min(motion_distance(m, p) for p in pool)


def frechet_distance(a: Array, b: Array) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D) (as in FID)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    vals, vecs = np.linalg.eigh(cov_a)
    sqrt_a = (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T
    mid = sqrt_a @ cov_b @ sqrt_a
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((mid + mid.T) / 2), 0.0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt)


def jerk(seq: NDArray[np.floating], fps: float) -> float:  # type: ignore[type-arg]
    """Mean magnitude of the third time derivative of the motion points (IOD/s³)."""
    s = np.asarray(seq, np.float64)[:, MOTION_POINTS]
    if len(s) < 4:
        return 0.0
    return float(np.linalg.norm(np.diff(s, n=3, axis=0), axis=-1).mean() * fps**3)


def neutral_start_error(seq: NDArray[np.floating], neutral: NDArray[np.floating]) -> float:  # type: ignore[type-arg]
    """Mean distance (IOD) of the first frame from the neutral face it should start from."""
    return float(
        np.linalg.norm(np.asarray(seq[0], np.float64) - np.asarray(neutral, np.float64), axis=-1).mean()
    )
