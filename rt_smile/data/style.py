"""A smile's style: the few numbers of its timing and size, measured on its landmarks.

A generator trained by regression averages over what its inputs leave open. Timing a fast onset
from a noisy code gives the mean of many onsets, which rises more slowly than any of them. So a
multi-mode generator can be told, beside its noise, the style of the smile each mode makes
(``MultiModeConfig.style_dim``): these measures of the training smile it reconstructs, and at
run time those of a training smile of the class, drawn with its noise (``set_noise_prior``).

All measures come from the landmarks alone (any data set, SynthSmile or videos):

- the lip corners' widening (61-291 distance minus frame 0's, IOD): its peak, the times it first
  crosses 10, 50 and 90 % of the peak on the way up and last crosses 90 and 10 % on the way down;
- the lips' parting at its widest (13-14 gap minus frame 0's, IOD);
- the first blink: 1 and its time if the eyelid gaps (159-145, 386-374) close below half of frame
  0's, else 0 and 0.

Times are in seconds, with sub-frame (linear) crossings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from rt_smile.data.synthetic import lip_corner_width
from rt_smile.face import topology as topo

Array = NDArray[np.float64]

#: Names of the style measures, in order.
STYLE_NAMES = (
    "peak_iod",
    "rise_10_s",
    "rise_50_s",
    "rise_90_s",
    "fall_90_s",
    "fall_10_s",
    "parting_iod",
    "blinks",
    "blink_s",
)
STYLE_DIM = len(STYLE_NAMES)
#: An eyelid gap below this fraction of frame 0's counts as a blink.
BLINK_CLOSED = 0.5


def _rise(curve: Array, level: float) -> float:
    """First (sub-frame) index where ``curve`` reaches ``level`` (its last index if never)."""
    above = np.flatnonzero(curve >= level)
    if len(above) == 0:
        return float(len(curve) - 1)
    i = int(above[0])
    if i == 0:
        return 0.0
    lo, hi = curve[i - 1], curve[i]
    return i - 1 + float((level - lo) / max(hi - lo, 1e-12))


def _fall(curve: Array, level: float) -> float:
    """Last (sub-frame) index where ``curve`` is still at or above ``level``, before it drops."""
    return len(curve) - 1 - _rise(curve[::-1], level)


def smile_style(seq: NDArray[np.floating[Any]], fps: float) -> Array:
    """(T, 468, 2) aligned landmarks → (STYLE_DIM,) style measures (see the module docs)."""
    seq = np.asarray(seq, dtype=np.float64)
    width = lip_corner_width(seq)
    widen = width - width[0]
    peak = float(widen.max())
    ref = max(peak, 1e-6)
    times = [_rise(widen, f * ref) for f in (0.1, 0.5, 0.9)] + [_fall(widen, f * ref) for f in (0.9, 0.1)]
    apex = int(widen.argmax())
    gap = np.linalg.norm(seq[:, topo.UPPER_INNER_LIP_MID] - seq[:, topo.LOWER_INNER_LIP_MID], axis=1)
    parting = float(gap[apex] - gap[0])
    lids = [np.linalg.norm(seq[:, a] - seq[:, b], axis=1) for a, b in (topo.RIGHT_EYELID, topo.LEFT_EYELID)]
    eyes = (lids[0] / max(lids[0][0], 1e-6) + lids[1] / max(lids[1][0], 1e-6)) / 2.0
    closed = np.flatnonzero(eyes < BLINK_CLOSED)
    blink = (1.0, float(closed[0]) / fps) if len(closed) else (0.0, 0.0)
    return np.array([peak, *(t / fps for t in times), parting, *blink])


def style_table(seqs: list[NDArray[np.floating[Any]]], fps: float) -> tuple[Array, Array, Array]:
    """Styles of ``seqs`` standardised: (N, STYLE_DIM) values, and the per-measure mean and
    spread they were standardised with."""
    raw = np.stack([smile_style(s, fps) for s in seqs])
    mean, spread = raw.mean(0), raw.std(0)
    spread = np.where(spread > 1e-9, spread, 1.0)
    return (raw - mean) / spread, mean, spread
