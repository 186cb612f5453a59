"""Per-photo checks: the photo's own reference comes from the data process applied to its face,
and the report compares generated smiles with it."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from rt_smile.data.synthetic import SynthConfig, generate, lip_corner_width
from rt_smile.face.align import frame_of
from rt_smile.face.landmarks import LandmarkDetector, detect_face
from rt_smile.io.checkpoint import load_cmmnet
from rt_smile.train.classifier import ClassifierTraining, train_classifier
from rt_smile.train.photo_eval import FLOOR_DRAWS, Reference, evaluate_photo, floor_sets, photo_reference


@pytest.fixture(scope="module")
def neutral(photo: NDArray[np.uint8], detector: LandmarkDetector) -> NDArray[np.float64]:
    """The sample face's aligned neutral landmarks (468, 2)."""
    face = detect_face(photo, detector=detector)
    return frame_of(face).aligned


def test_photo_reference_animates_the_photo_face_per_class(neutral: NDArray[np.float64]) -> None:
    ref = photo_reference(neutral, per_class=6, seed=1)
    again = photo_reference(neutral, per_class=6, seed=1)
    assert sorted(ref) == [0, 1] and all(len(v) == 6 for v in ref.values())
    np.testing.assert_array_equal(ref[1][0], again[1][0])
    for seqs in ref.values():
        for s in seqs:
            assert s.shape[1:] == (468, 2)
            # starts at the photo's face (up to head pose and jitter of the data process)
            assert np.linalg.norm(s[0] - neutral, axis=1).mean() < 0.03
    width = {k: np.mean([np.ptp(lip_corner_width(s)) for s in v]) for k, v in ref.items()}
    assert width[1] > width[0] > 0.02, "posed smiles are larger, and both classes smile"


def test_floor_sets_are_independent_draws_of_the_same_face(neutral: NDArray[np.float64]) -> None:
    own = photo_reference(neutral, per_class=4, seed=2)
    sets = floor_sets(neutral, 3, seed=2)
    assert len(sets) == FLOOR_DRAWS and all(len(f[k]) == 3 for f in sets for k in (0, 1))
    firsts = [f[1][0] for f in sets] + [own[1][0]]
    for i, a in enumerate(firsts):
        for b in firsts[i + 1 :]:
            assert a.shape != b.shape or not np.allclose(a, b), "no two draws repeat a sequence"
    assert np.linalg.norm(sets[0][0][0][0] - neutral, axis=1).mean() < 0.03, "of the photo's face"


def test_evaluate_photo_reports_against_the_photo_reference(neutral: NDArray[np.float64]) -> None:
    data = generate(SynthConfig(n_sequences=120, n_identities=30, seed=5))
    train, test = data.split_by_identity(0.2, seed=0)
    classifier = train_classifier(train, ClassifierTraining(seed=1, epochs=5))
    ref = Reference.build(classifier, train, test)
    report = evaluate_photo(load_cmmnet(), neutral, ref, draws=4)
    for name in ("spontaneous", "posed"):
        r = report[name]
        assert r["sequences"] == 4 * 4 and len(r["class_accuracy_per_mode"]) == 4
        assert r["neutral_start_iod"] < 1e-5
        assert r["frechet_noise_floor"] >= 0.0 and r["frechet_distance"] > 0.0
        low, high = r["frechet_noise_floor_range"]
        assert low <= r["frechet_noise_floor"] <= high and high > low, "independent sets score differently"
        assert r["frechet_distance_sets"] == [r["frechet_distance"]], "16 sequences make one set"
        pooled = r["pooled_held_out"]
        assert set(pooled) == {"frechet_distance", "reference_frechet_distance", "frechet_noise_floor"}
        assert r["ratio_to_own_motion"] > 0.0
        assert r["novelty_observed_iod"] > r["novelty_iod"] > 0.0, "seen through the data's jitter"
