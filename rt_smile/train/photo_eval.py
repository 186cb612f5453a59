"""Quality checks of generated smiles for one real photo (the photo → landmarks path of
``rt-smile generate``).

There is no held-out data of the person in a photo, so the reference for a photo is the data
process itself applied to the photo's own face: SynthSmile sequences of each class generated from
the photo's aligned neutral landmarks (``photo_reference``). Held-out data of many identities is
no reference for one face: the smiles of one face are a narrower distribution, and even the data
process's own sequences of that face lie far from the pooled held-out set (both distances are
reported).

For a photo and a class, many noise draws × K modes are generated from the photo's neutral and
scored by the evaluation classifier: class of every mode; diversity between the K modes of one
draw (against pairs of the photo's reference sequences of that class and the modes' own motion);
realism as the Fréchet distance to one half of the photo's reference sequences (n of them),
beside its noise floor and the K = 1 baseline; novelty against the training set; peak lip-corner
speed; neutral start.

The Fréchet distance of n = 60 sequences in the classifier's 32-dimensional feature space varies
a lot from one sample to the next: independent sets of one face's reference scored 1.0-5.4
(spontaneous) and 1.1-9.6 (posed) against one half of it (``benchmarks/results/photos.json``).
So the noise floor is the mean over ``FLOOR_DRAWS`` independent reference sets of n (other seeds
of the data process), with its range, and the generated smiles' distance is the mean over
disjoint sets of n of them; the floor of the first protocol, the other half of the same
reference, is kept beside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from rt_smile.data.expressions import ExpressionBasis
from rt_smile.data.sequences import CLASSES, SmileSequences
from rt_smile.data.synthetic import SynthConfig, lip_corner_width, sample_sequence
from rt_smile.models.classifier import SequenceClassifier
from rt_smile.models.cmmnet import CMMNet
from rt_smile.runtime.motion import FaceMotion, generate_on_faces
from rt_smile.train.classifier import features, predict
from rt_smile.train.evaluate import nearest_distances, observed_novelty
from rt_smile.train.metrics import frechet_distance, motion, motion_magnitude, pairwise_mean_distance

Seq = NDArray[np.float64]

#: Independent reference sets whose mean Fréchet distance to the target half is the noise floor.
FLOOR_DRAWS = 8


@dataclass(frozen=True)
class Reference:
    """Held-out and training data the photo's smiles are compared with."""

    classifier: SequenceClassifier
    #: Per class: two disjoint halves of the held-out sequences (equal sizes).
    halves: dict[int, tuple[list[Seq], list[Seq]]]
    pool: list[Seq]
    fps: float
    length: int = 150

    @classmethod
    def build(
        cls, classifier: SequenceClassifier, train: SmileSequences, test: SmileSequences, seed: int = 0
    ) -> Reference:
        rng = np.random.default_rng(seed)
        halves = {}
        for k in range(len(CLASSES)):
            idx = rng.permutation(np.flatnonzero(test.labels == k))
            n = len(idx) // 2
            seqs = [test.sequence(int(i)).astype(np.float64) for i in idx[: 2 * n]]
            halves[k] = (seqs[:n], seqs[n:])
        pool_idx = rng.permutation(len(train))[:600]
        pool = [train.sequence(int(i)).astype(np.float64) for i in pool_idx]
        return cls(classifier, halves, pool, test.fps)


def photo_reference(neutral: Seq, per_class: int = 120, seed: int = 0) -> dict[int, list[Seq]]:
    """Per class, ``per_class`` SynthSmile sequences of the face with these aligned neutral
    landmarks (468, 2): the data process's own smiles of that face."""
    config = SynthConfig()
    basis = ExpressionBasis.for_aligned(neutral)
    out = {}
    for label, name in enumerate(CLASSES):
        rng = np.random.default_rng([seed, label])
        out[label] = [
            sample_sequence(rng, neutral, basis, name, config)[0].astype(np.float64) for _ in range(per_class)
        ]
    return out


def generate_draws(
    model: CMMNet, neutral: Seq, label: int, draws: int, length: int, seed: int
) -> tuple[Seq, Seq]:
    """(draws, K, T, 468, 2) multi-mode sequences and (draws, T, 468, 2) K = 1 sequences."""
    gen = torch.Generator().manual_seed(seed)
    cls = torch.full((draws,), label, dtype=torch.long)
    noise, mode_noise = model.sample_noise(draws, length, generator=gen)
    return generate_on_faces(model, [FaceMotion.for_face(model, neutral)] * draws, cls, noise, mode_noise)


def _peak_speed(seqs: list[Seq], fps: float) -> float:
    return float(np.mean([np.diff(lip_corner_width(s)).max() * fps for s in seqs]))


def _diversity(multi: Seq, ref_pairs: float) -> dict[str, float]:
    between, own = [], []
    for modes in multi:
        motions = [motion(s) for s in modes]
        between.append(pairwise_mean_distance(motions))
        own.append(float(np.mean([motion_magnitude(m) for m in motions])))
    ratio_own = np.asarray(between) / np.maximum(own, 1e-9)
    return {
        "between_modes_iod": float(np.mean(between)),
        "ratio_to_reference_pairs": float(np.mean(between) / ref_pairs),
        "ratio_to_own_motion": float(ratio_own.mean()),
        "motion_iod": float(np.mean(own)),
    }


def _pooled(ref: Reference, label: int, generated: list[Seq], own: list[Seq]) -> dict[str, float]:
    """Fréchet distances to the pooled held-out set of many identities: of the generated
    sequences, of the photo's own reference sequences, and its noise floor (equal sizes)."""
    pooled_a, pooled_b = ref.halves[label]
    m = min(len(own), len(pooled_a))
    feats = features(ref.classifier, pooled_a[:m])

    def fd(seqs: list[Seq]) -> float:
        return frechet_distance(features(ref.classifier, seqs[:m]), feats)

    return {
        "frechet_distance": fd(generated),
        "reference_frechet_distance": fd(own),
        "frechet_noise_floor": fd(pooled_b),
    }


def disjoint_sets(seqs: list[Seq], n: int) -> list[list[Seq]]:
    """The disjoint sets of n sequences in ``seqs`` (at least one, possibly shorter)."""
    return [seqs[i : i + n] for i in range(0, max(len(seqs) // n, 1) * n, n)]


def floor_sets(neutral: Seq, n: int, seed: int) -> list[dict[int, list[Seq]]]:
    """``FLOOR_DRAWS`` independent reference sets of the face, n sequences per class each (other
    seeds of the data process than ``photo_reference(neutral, seed=seed)``)."""
    return [photo_reference(neutral, per_class=n, seed=seed + 1000 + i) for i in range(FLOOR_DRAWS)]


def evaluate_photo(
    model: CMMNet, neutral: Seq, ref: Reference, draws: int = 60, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Per class: the checks of one photo's aligned neutral landmarks (468, 2)."""
    own = photo_reference(neutral, seed=seed)
    others = floor_sets(neutral, len(own[0]) // 2, seed)
    out: dict[str, dict[str, Any]] = {}
    for label, name in enumerate(CLASSES):
        multi, single = generate_draws(model, neutral, label, draws, ref.length, seed + label)
        flat = [s for modes in multi for s in modes]
        n = len(own[label]) // 2
        half_a, half_b = own[label][:n], own[label][n:]
        feats = features(ref.classifier, half_a)
        per_mode = (predict(ref.classifier, flat).reshape(draws, -1) == label).mean(0)
        generated = [frechet_distance(features(ref.classifier, s), feats) for s in disjoint_sets(flat, n)]
        floors = [frechet_distance(features(ref.classifier, f[label]), feats) for f in others]
        out[name] = {
            "sequences": len(flat),
            "class_accuracy_per_mode": [float(a) for a in per_mode],
            "reference_class_accuracy": float((predict(ref.classifier, own[label]) == label).mean()),
            "frechet_distance": float(np.mean(generated)),
            "frechet_distance_sets": generated,
            "frechet_noise_floor": float(np.mean(floors)),
            "frechet_noise_floor_range": [min(floors), max(floors)],
            "frechet_noise_floor_halves": frechet_distance(features(ref.classifier, half_b), feats),
            "frechet_distance_k1": frechet_distance(features(ref.classifier, list(single[:n])), feats),
            "pooled_held_out": _pooled(ref, label, flat, half_a),
            "novelty_iod": float(np.median(nearest_distances(flat[:n], ref.pool, ref.length))),
            "novelty_observed_iod": observed_novelty(flat[:n], ref.pool, ref.length, seed + label),
            "reference_novelty_iod": float(np.median(nearest_distances(half_b, ref.pool, ref.length))),
            "peak_lip_corner_speed_iod_per_s": _peak_speed(flat, ref.fps),
            "reference_peak_lip_corner_speed_iod_per_s": _peak_speed(own[label], ref.fps),
            "neutral_start_iod": float(np.abs(multi[:, :, 0] - neutral).max()),
            **_diversity(multi, pairwise_mean_distance([motion(s) for s in half_a[:40]])),
        }
    return out
