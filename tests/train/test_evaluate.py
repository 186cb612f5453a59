"""rt-smile evaluate: the report's structure and the properties that hold by construction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rt_smile.cli import main
from rt_smile.data.synthetic import SynthConfig, generate, observed
from rt_smile.io.checkpoint import load_cmmnet
from rt_smile.train.evaluate import EvalConfig, evaluate, nearest_distances


def test_evaluate_report_on_a_small_split() -> None:
    data = generate(SynthConfig(n_sequences=120, n_identities=30, seed=5))
    train, test = data.split_by_identity(0.2, seed=0)
    report = evaluate(load_cmmnet(), train, test, EvalConfig(conditions=8, length=90, novelty_pool=40))
    names = [m["method"] for m in report["methods"]]
    assert names == [
        "CMM-Net (K = 4)",
        "conditional LSTM alone (K = 1)",
        "nearest-neighbour retrieval",
        "held-out data (reference)",
    ]
    cmm = report["methods"][0]
    assert cmm["sequences"] == 8 * 4
    assert cmm["neutral_start_iod"] == pytest.approx(0.0, abs=1e-6)
    assert report["classifier_accuracy_on_held_out"] >= 0.8
    assert report["diversity"]["ratio_to_own_motion"] > 0.25
    assert report["frechet_noise_floor"] >= 0.0
    retrieval = report["methods"][2]
    assert retrieval["novelty_iod"] == pytest.approx(0.0, abs=1e-9), "a copy of a pool motion scores 0"
    for m in report["methods"][:2]:  # jitter-free generated motion seen through the data's jitter
        assert m["novelty_observed_iod"] > m["novelty_iod"]
    for m in report["methods"][2:]:  # the data already carry it
        assert m["novelty_observed_iod"] == m["novelty_iod"]


def test_observed_adds_the_data_jitter_to_a_jitter_free_sequence() -> None:
    clean = generate(SynthConfig(n_sequences=1, seed=3, jitter_iod=0.0)).sequence(0).astype(np.float64)
    seen = observed(clean, np.random.default_rng(0))
    noise = seen - clean
    assert noise.std() == pytest.approx(SynthConfig.jitter_iod / np.sqrt(2), rel=0.1)
    assert np.allclose(observed(clean, np.random.default_rng(0)), seen), "seeded"
    unjittered = observed(clean, np.random.default_rng(0), sigma_iod=0.0)
    assert np.abs(unjittered - clean).max() < 1e-6  # the data are float32


def test_nearest_distance_is_zero_for_a_copy() -> None:
    data = generate(SynthConfig(n_sequences=6, seed=2))
    seqs = [data.sequence(i).astype(np.float64) for i in range(6)]
    d = nearest_distances(seqs[:2], seqs, 150)
    assert np.allclose(d, 0.0)
    assert nearest_distances(seqs[:1], seqs[1:], 150)[0] > 0.001


def test_evaluate_cli_bad_weights_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            ["evaluate", "--weights", str(tmp_path / "none.safetensors"), "--json", str(tmp_path / "e.json")]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not found" in err[0]
    assert not (tmp_path / "e.json").exists()
