"""Evaluation of CMM-Net on held-out identities (``rt-smile evaluate``).

For each held-out sequence, its first (neutral) frame and its class condition the generators;
the generated sequences are compared with the held-out sequences by an independently trained
classifier (class fidelity, and the Fréchet distance in its feature space against the noise floor
of two disjoint held-out halves), by diversity between the K modes, novelty against the training
set, neutral-start error and smoothness. Baselines in the same run: the conditional LSTM alone
(K = 1, the paper's ablation) and nearest-neighbour retrieval of a training sequence from the
novelty pool (a memorisation reference: a copy, novelty 0). Generated sequences are free of the
data's landmark jitter, which adds to every distance of a data sequence, so their novelty is also
reported as the data would be seen (``novelty_observed_iod``: with SynthSmile's jitter added).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from rt_smile.data.sequences import CLASSES, SmileSequences
from rt_smile.data.synthetic import lip_corner_width, observed
from rt_smile.models.cmmnet import CMMNet
from rt_smile.runtime.motion import FaceMotion, generate_on_faces
from rt_smile.train.classifier import ClassifierTraining, features, predict, train_classifier
from rt_smile.train.metrics import (
    MOTION_POINTS,
    frechet_distance,
    jerk,
    motion,
    motion_magnitude,
    pad_to,
    pairwise_mean_distance,
)

logger = logging.getLogger(__name__)
Seq = NDArray[np.float64]


@dataclass(frozen=True)
class EvalConfig:
    """What an evaluation run covers."""

    #: Held-out sequences used as conditions (at most).
    conditions: int = 100
    #: Generated frames per sequence (5 s at 30 fps).
    length: int = 150
    #: Training sequences the novelty search compares against (at most).
    novelty_pool: int = 600
    seed: int = 0


def _padded_motions(seqs: list[Seq], length: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([pad_to(motion(s), length) for s in seqs]))


def nearest_distances(queries: list[Seq], pool: list[Seq], length: int) -> NDArray[np.float64]:
    """For each query, the motion distance to its nearest pool sequence (IOD)."""
    p = _padded_motions(pool, length)  # (M, L, P, 2)
    out = []
    for q in _padded_motions(queries, length):
        out.append(float((p - q).norm(dim=-1).mean((1, 2)).min()))
    return np.asarray(out)


def generate_all(
    model: CMMNet, neutrals: Seq, labels: NDArray[np.int64], length: int, seed: int
) -> tuple[list[list[Seq]], list[Seq]]:
    """Multi-mode sequences (per condition, K of them) and the K = 1 baseline (the conditional
    LSTM's own sequence, decoded), all starting at the condition's neutral frame."""
    gen = torch.Generator().manual_seed(seed)
    cls = torch.from_numpy(labels)
    noise, mode_noise = model.sample_noise(len(neutrals), length, generator=gen)
    motions = [FaceMotion.for_face(model, n) for n in neutrals]
    # (N, K, T, 468, 2) and (N, T, 468, 2)
    multi, single = generate_on_faces(model, motions, cls, noise, mode_noise)
    return [list(m) for m in multi], list(single)


def retrieval_baseline(
    neutrals: Seq, labels: NDArray[np.int64], pool: list[Seq], pool_labels: NDArray[np.int64], length: int
) -> list[Seq]:
    """Nearest-neighbour retrieval from the novelty pool of training sequences: the one of the
    same class whose neutral face is closest, its motion added to the condition's neutral face
    (a copy of a pool motion, so its novelty is 0)."""
    firsts = np.stack([p[0] for p in pool])  # (M, 468, 2)
    out = []
    for neutral, label in zip(neutrals, labels, strict=True):
        same = np.flatnonzero(pool_labels == label)
        j = same[np.argmin(np.linalg.norm(firsts[same] - neutral, axis=-1).mean(1))]
        seq = pad_to(pool[int(j)], length)
        out.append(neutral + (seq - seq[:1]))
    return out


def observed_novelty(seqs: list[Seq], pool: list[Seq], length: int, seed: int) -> float:
    """Median novelty of jitter-free generated sequences seen as the data are seen: each with
    SynthSmile's detection jitter (``synthetic.observed``), so that it compares like for like
    with the held-out sequences' novelty (their jitter adds to every distance)."""
    rng = np.random.default_rng(seed)
    return float(np.median(nearest_distances([observed(s, rng) for s in seqs], pool, length)))


def _peak_speed(seqs: list[Seq], fps: float) -> float:
    return float(np.mean([np.diff(lip_corner_width(s)).max() * fps for s in seqs]))


def _method_report(
    name: str, seqs: list[Seq], labels: NDArray[np.int64], ctx: dict[str, Any], generated: bool = True
) -> dict[str, Any]:
    """One method's row; ``generated``: jitter-free sequences (the data's carry detection jitter)."""
    clf, fps, length = ctx["classifier"], ctx["fps"], ctx["length"]
    feats = features(clf, seqs)
    novelty = float(np.median(nearest_distances(seqs, ctx["pool"], length)))
    report: dict[str, Any] = {
        "method": name,
        "sequences": len(seqs),
        "class_accuracy": float((predict(clf, seqs) == labels).mean()),
        "frechet_distance": frechet_distance(feats, ctx["test_features"]),
        "novelty_iod": novelty,
        "novelty_observed_iod": (
            observed_novelty(seqs, ctx["pool"], length, ctx["seed"]) if generated else novelty
        ),
        "neutral_start_iod": float(
            np.mean(
                [
                    np.linalg.norm(s[0] - n, axis=-1).mean()
                    for s, n in zip(seqs, ctx["neutral_per_seq"], strict=True)
                ]
            )
        ),
        "jerk_ratio": float(np.mean([jerk(s, fps) for s in seqs]) / ctx["test_jerk"]),
        "motion_iod": float(np.mean([motion_magnitude(motion(s)) for s in seqs])),
    }
    for k, c in enumerate(CLASSES):
        chosen = [s for s, lab in zip(seqs, labels, strict=True) if lab == k]
        report[f"peak_lip_corner_speed_{c}_iod_per_s"] = _peak_speed(chosen, fps)
    return report


def _diversity(multi: list[list[Seq]], labels: NDArray[np.int64], test: SmileSequences) -> dict[str, float]:
    between = [pairwise_mean_distance([motion(s) for s in modes]) for modes in multi]
    own = [float(np.mean([motion_magnitude(motion(s)) for s in modes])) for modes in multi]
    same_class = []
    for k in range(len(CLASSES)):
        idx = np.flatnonzero(test.labels == k)[:40]
        same_class.append(pairwise_mean_distance([motion(test.sequence(int(i))) for i in idx]))
    ref = float(np.mean(same_class))
    return {
        "between_modes_iod": float(np.mean(between)),
        "held_out_same_class_pairs_iod": ref,
        "ratio_to_held_out_pairs": float(np.mean(between) / ref),
        "ratio_to_own_motion": float(np.mean(np.asarray(between) / np.maximum(own, 1e-9))),
        "min_ratio_to_own_motion": float(np.min(np.asarray(between) / np.maximum(own, 1e-9))),
    }


def evaluate(
    model: CMMNet, train: SmileSequences, test: SmileSequences, config: EvalConfig = EvalConfig()
) -> dict[str, Any]:
    """The whole evaluation as a JSON-ready dict."""
    rng = np.random.default_rng(config.seed)
    cond_idx = np.sort(rng.permutation(len(test))[: config.conditions])
    labels = test.labels[cond_idx]
    neutrals = np.stack([test.sequence(int(i))[0] for i in cond_idx]).astype(np.float64)
    clf = train_classifier(train, ClassifierTraining(seed=config.seed + 123))
    test_seqs = [test.sequence(i).astype(np.float64) for i in range(len(test))]
    half = len(test_seqs) // 2
    order = rng.permutation(len(test_seqs))
    test_feats = features(clf, test_seqs)
    pool_idx = rng.permutation(len(train))[: config.novelty_pool]
    pool = [train.sequence(int(i)).astype(np.float64) for i in pool_idx]
    pool_labels = train.labels[pool_idx]
    multi, single = generate_all(model, neutrals, labels, config.length, config.seed)
    k = model.modes
    ctx: dict[str, Any] = {
        "classifier": clf,
        "fps": test.fps,
        "length": config.length,
        "pool": pool,
        "seed": config.seed,
        "test_features": test_feats,
        "test_jerk": float(np.mean([jerk(s, test.fps) for s in test_seqs])),
    }
    flat = [s for modes in multi for s in modes]
    held = [test_seqs[int(i)] for i in cond_idx]
    ctx["neutral_per_seq"] = np.repeat(neutrals, k, axis=0)
    methods = [_method_report(f"CMM-Net (K = {k})", flat, np.repeat(labels, k), ctx)]
    ctx["neutral_per_seq"] = neutrals
    methods.append(_method_report("conditional LSTM alone (K = 1)", single, labels, ctx))
    methods.append(
        _method_report(
            "nearest-neighbour retrieval",
            retrieval_baseline(neutrals, labels, pool, pool_labels, config.length),
            labels,
            ctx,
            generated=False,
        )
    )
    methods.append(_method_report("held-out data (reference)", held, labels, ctx, generated=False))
    floor = frechet_distance(test_feats[order[:half]], test_feats[order[half:]])
    return {
        "config": asdict(config),
        "data": {
            "train_sequences": len(train),
            "test_sequences": len(test),
            "conditions": len(cond_idx),
            "motion_points": len(MOTION_POINTS),
        },
        "classifier_accuracy_on_held_out": float((predict(clf, test_seqs) == test.labels).mean()),
        "frechet_noise_floor": floor,
        "held_out_novelty_iod": float(np.median(nearest_distances(held, pool, config.length))),
        "diversity": _diversity(multi, labels, test),
        "methods": methods,
    }
