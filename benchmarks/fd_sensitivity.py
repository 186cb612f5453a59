"""What the per-photo realism score (Fréchet distance in the evaluation classifier's feature
space) responds to, with the shipped weights.

    python benchmarks/fd_sensitivity.py [PHOTO ...]   # default: the bundled sample face

Per photo and class, against the same target half of the photo's reference as
``rt_smile.train.photo_eval.evaluate_photo`` (the data process applied to the photo's neutral
landmarks):

- ``floor``: the noise floor, the mean over ``FLOOR_DRAWS`` independent reference sets;
- ``smoothed_sigma_S``: those same sets smoothed in time by a Gaussian of S frames (all points;
  ``lips_...`` / ``eyes_...``: only the lip or eye points);
- ``stretched_F``: those same sets played F times as long (linear interpolation; the classifier
  cuts or pads every sequence to 150 frames); ``lips_stretched_F``: only the lips' motion, the
  length kept;
- ``generated``: the shipped model's modes (60 draws × K, in sets of the same size);
- ``..._eyes_frozen`` / ``..._lips_frozen``: the generated modes and the floor sets, with the
  target half too, after holding the eye (or lip) points at their first frame, so that only the
  other region's motion is scored.

Writes benchmarks/results/ablations/fd_sensitivity.json.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from photos import ablation_args, photo_neutral, reference, write_results

from rt_smile.config import DetectorConfig
from rt_smile.data.sequences import CLASSES
from rt_smile.face import topology as topo
from rt_smile.face.landmarks import make_detector
from rt_smile.io.checkpoint import load_cmmnet
from rt_smile.models.cmmnet import CMMNet
from rt_smile.train.classifier import features
from rt_smile.train.metrics import frechet_distance
from rt_smile.train.photo_eval import (
    Reference,
    disjoint_sets,
    floor_sets,
    generate_draws,
    photo_reference,
)

Seq = NDArray[np.float64]
Array = NDArray[np.float64]
Transform = Callable[[Seq], Seq]
DRAWS = 60
EYES = np.array(topo.EYES, dtype=np.int64)
LIPS = np.array(topo.LIPS, dtype=np.int64)


def _only(points: NDArray[np.int64] | None, change: Transform) -> Transform:
    """``change`` applied to ``points`` alone (all points when None), the length kept: a longer
    result is cut, a shorter one holds its last frame."""
    if points is None:
        return change

    def apply(seq: Seq) -> Seq:
        moved = change(seq)[: len(seq)]
        moved = np.concatenate([moved, np.repeat(moved[-1:], len(seq) - len(moved), 0)])
        out = seq.copy()
        out[:, points] = moved[:, points]
        return out

    return apply


def smoothed(sigma: float, points: NDArray[np.int64] | None = None) -> Transform:
    """Gaussian smoothing over time (edges held), ``sigma`` in frames, of ``points`` (all)."""
    r = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    kernel /= kernel.sum()

    def apply(seq: Seq) -> Seq:
        padded = np.concatenate([np.repeat(seq[:1], r, 0), seq, np.repeat(seq[-1:], r, 0)])
        windows = np.lib.stride_tricks.sliding_window_view(padded, len(kernel), axis=0)
        return np.tensordot(windows, kernel, ([-1], [0]))

    return _only(points, apply)


def stretched(factor: float, points: NDArray[np.int64] | None = None) -> Transform:
    """The motion of ``points`` played ``factor`` times as long (linear interpolation between
    frames). For all points (None) the sequence itself gets longer or shorter, and the classifier
    cuts or pads it to its 150 frames as any other; for some points the length is kept."""

    def apply(seq: Seq) -> Seq:
        t = np.clip(np.arange(round(len(seq) * factor)) / factor, 0, len(seq) - 1)
        i0 = np.floor(t).astype(int)
        i1 = np.minimum(i0 + 1, len(seq) - 1)
        a = (t - i0)[:, None, None]
        return seq[i0] * (1 - a) + seq[i1] * a

    return _only(points, apply)


def frozen(points: NDArray[np.int64]) -> Transform:
    """``points`` held at their first frame."""

    def apply(seq: Seq) -> Seq:
        out = seq.copy()
        out[:, points] = seq[:1, points]
        return out

    return apply


def _fd(ref: Reference, sets: list[list[Seq]], feats: Array, f: Transform | None = None) -> float:
    """Mean Fréchet distance of ``sets``, transformed by ``f``, to target features ``feats``."""
    g = f or (lambda s: s)
    return float(
        np.mean([frechet_distance(features(ref.classifier, [g(s) for s in x]), feats) for x in sets])
    )


def _perturbed(ref: Reference, floors: list[list[Seq]], feats: Array) -> dict[str, float]:
    """The floor sets, changed, against the unchanged target's features ``feats``."""
    changes = {f"smoothed_sigma_{sigma:g}": smoothed(sigma) for sigma in (1.0, 2.0)}
    for name, points in (("lips", LIPS), ("eyes", EYES)):
        changes[f"{name}_smoothed_sigma_1"] = smoothed(1.0, points)
    for factor in (0.9, 1.1):
        changes[f"stretched_{factor:g}"] = stretched(factor)
        changes[f"lips_stretched_{factor:g}"] = stretched(factor, LIPS)
    return {key: _fd(ref, floors, feats, f) for key, f in changes.items()}


def _class_report(
    ref: Reference, model: CMMNet, neutral: Seq, label: int, own: list[Seq], floors: list[list[Seq]]
) -> dict[str, float]:
    target = own[: len(own) // 2]
    feats = features(ref.classifier, target)
    multi, _ = generate_draws(model, neutral, label, DRAWS, ref.length, label)
    generated = disjoint_sets([s for modes in multi for s in modes], len(target))
    out = {"floor": _fd(ref, floors, feats), **_perturbed(ref, floors, feats)}
    out["generated"] = _fd(ref, generated, feats)
    for name, points in (("eyes", EYES), ("lips", LIPS)):  # the target held still the same way
        still = frozen(points)
        still_feats = features(ref.classifier, [still(s) for s in target])
        out[f"floor_{name}_frozen"] = _fd(ref, floors, still_feats, still)
        out[f"generated_{name}_frozen"] = _fd(ref, generated, still_feats, still)
    return {k: round(v, 2) for k, v in out.items()}


def _photo_report(ref: Reference, model: CMMNet, neutral: Seq) -> dict[str, dict[str, float]]:
    """Per class: the references of the photo are built once, as ``evaluate_photo`` builds them."""
    own = photo_reference(neutral)
    floors = floor_sets(neutral, len(own[0]) // 2, 0)
    return {
        name: _class_report(ref, model, neutral, k, own[k], [f[k] for f in floors])
        for k, name in enumerate(CLASSES)
    }


def main() -> None:
    photos, weights, out = ablation_args(__doc__, "fd_sensitivity.json")
    t0 = time.perf_counter()
    ref = reference(weights)
    detector = make_detector(DetectorConfig())
    model = load_cmmnet(weights)
    reports: list[dict[str, Any]] = []
    for path in photos:
        neutral = photo_neutral(path, detector)
        classes = _photo_report(ref, model, neutral)
        print(path.name, classes, flush=True)
        reports.append({"photo": path.name, "classes": classes})
    source = "SynthSmile (synthetic): per photo, the data process applied to the photo's neutral landmarks"
    write_results(out, "fd_sensitivity", weights, source, t0, reports)


if __name__ == "__main__":
    main()
