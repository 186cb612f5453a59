"""SynthSmile: determinism, format, class statistics, neutral start and end, identity split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rt_smile.data.sequences import (
    CLASSES,
    DatasetError,
    SmileSequences,
    load_sequences,
    save_sequences,
)
from rt_smile.data.synthetic import SynthConfig, generate, lip_corner_width, smile_measures


@pytest.fixture(scope="module")
def synth() -> SmileSequences:
    return generate(SynthConfig(n_sequences=160, seed=3))


def test_deterministic_for_a_seed_and_different_across_seeds(synth: SmileSequences) -> None:
    again = generate(SynthConfig(n_sequences=160, seed=3))
    assert np.array_equal(again.points, synth.points)
    other = generate(SynthConfig(n_sequences=160, seed=4))
    assert not np.array_equal(other.points[:100], synth.points[:100])


def test_format_and_classes(synth: SmileSequences) -> None:
    assert synth.points.shape[1:] == (468, 2)
    assert synth.offsets[-1] == len(synth.points) == len(synth.valid)
    assert set(np.unique(synth.labels)) == {0, 1}
    assert synth.fps == 30.0
    assert len(np.unique(synth.identity)) == 16


def test_sequences_start_and_end_neutral(synth: SmileSequences) -> None:
    for i in range(len(synth)):
        w = lip_corner_width(synth.sequence(i).astype(np.float64))
        peak = w.max() - w[0]
        assert peak > 0.03, i
        assert abs(w[-1] - w[0]) < 0.25 * peak, i


def test_class_statistics_follow_the_literature(synth: SmileSequences) -> None:
    m = smile_measures(synth)
    spont, posed = m["spontaneous"], m["posed"]
    assert posed["amplitude_iod"] > 1.15 * spont["amplitude_iod"]
    assert posed["max_onset_speed_iod_per_s"] > 1.5 * spont["max_onset_speed_iod_per_s"]
    assert posed["duration_s"] < 0.75 * spont["duration_s"]
    assert spont["eyes_involved_share"] > posed["eyes_involved_share"] + 0.2


def test_asymmetry_varies_within_both_classes(synth: SmileSequences) -> None:
    for k in range(len(CLASSES)):
        ratios = []
        for i in np.flatnonzero(synth.labels == k):
            seq = synth.sequence(int(i)).astype(np.float64)
            right = np.linalg.norm(seq[:, 61] - seq[0, 61], axis=1).max()
            left = np.linalg.norm(seq[:, 291] - seq[0, 291], axis=1).max()
            ratios.append(np.log(right / left))
        assert np.std(ratios) > 0.05


def test_split_by_identity(synth: SmileSequences) -> None:
    train, test = synth.split_by_identity(0.25, seed=0)
    assert len(train) + len(test) == len(synth)
    assert not set(train.identity) & set(test.identity)
    assert np.array_equal(
        test.sequence(0), synth.sequence(int(np.flatnonzero(np.isin(synth.identity, test.identity))[0]))
    )


def test_save_load_roundtrip_and_errors(synth: SmileSequences, tmp_path: Path) -> None:
    path = save_sequences(tmp_path / "s.npz", synth)
    back = load_sequences(path)
    assert np.array_equal(back.points, synth.points) and np.array_equal(back.labels, synth.labels)
    assert back.meta["source"].startswith("SynthSmile")
    with pytest.raises(DatasetError, match="not found"):
        load_sequences(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not an rt_smile data set"):
        load_sequences(tmp_path / "bad.npz")
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []
