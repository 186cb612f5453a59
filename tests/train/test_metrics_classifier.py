"""Evaluation metrics and the evaluation classifier on SynthSmile."""

from __future__ import annotations

import numpy as np
import pytest

from rt_smile.data.sequences import SmileSequences
from rt_smile.data.synthetic import SynthConfig, generate
from rt_smile.train.classifier import ClassifierTraining, features, predict, train_classifier
from rt_smile.train.metrics import (
    frechet_distance,
    jerk,
    motion,
    motion_distance,
    nearest_distance,
    neutral_start_error,
    pad_to,
    pairwise_mean_distance,
)


@pytest.fixture(scope="module")
def split() -> tuple[SmileSequences, SmileSequences]:
    return generate(SynthConfig(n_sequences=240, seed=11)).split_by_identity(0.25, seed=0)


def test_motion_distance_properties(split: tuple[SmileSequences, SmileSequences]) -> None:
    train, _ = split
    a, b = motion(train.sequence(0)), motion(train.sequence(1))
    assert motion_distance(a, a) == 0.0
    assert motion_distance(a, b) == pytest.approx(motion_distance(b, a))
    assert motion_distance(a, b) > 0.005
    assert len(pad_to(a, len(a) + 7)) == len(a) + 7
    assert nearest_distance(a, [b, a]) == 0.0
    assert pairwise_mean_distance([a, b]) == pytest.approx(motion_distance(a, b))


def test_frechet_distance() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(500, 4)), rng.normal(size=(500, 4))
    assert frechet_distance(x, y) < 0.1
    assert frechet_distance(x, y + 1.0) == pytest.approx(4.0, rel=0.15)
    assert frechet_distance(x, 2 * y) > 1.0


def test_jerk_and_neutral_start(split: tuple[SmileSequences, SmileSequences]) -> None:
    seq = split[0].sequence(0).astype(np.float64)
    rng = np.random.default_rng(1)
    noisy = seq + rng.normal(0, 0.01, seq.shape)
    assert jerk(noisy, 30.0) > 3 * jerk(seq, 30.0)
    assert neutral_start_error(seq, seq[0]) == 0.0


def test_classifier_separates_classes_on_held_out_identities(
    split: tuple[SmileSequences, SmileSequences],
) -> None:
    train, test = split
    model = train_classifier(train, ClassifierTraining(epochs=25))
    seqs = [test.sequence(i) for i in range(len(test))]
    acc = float((predict(model, seqs) == test.labels).mean())
    assert acc >= 0.9, acc
    f = features(model, seqs)
    same = frechet_distance(f[test.labels == 0][::2], f[test.labels == 0][1::2])
    cross = frechet_distance(f[test.labels == 0], f[test.labels == 1])
    assert cross > 3 * same
