"""Motion retargeting through the expression basis: a smile made on one face becomes the same
smile on another face's own anatomy, and what the basis does not explain carries over."""

from __future__ import annotations

import numpy as np
import pytest

from rt_smile.data.retarget import Retarget, motion_fields, to_face
from rt_smile.data.synthetic import SynthConfig, _identity_shape, generate
from rt_smile.face.align import canonical_template


def _faces() -> tuple[np.ndarray, np.ndarray]:  # type: ignore[type-arg]
    rng = np.random.default_rng(3)
    return _identity_shape(rng), _identity_shape(rng)


def test_action_units_become_the_target_faces_own() -> None:
    a, b = _faces()
    intensities = np.array([0.8, 0.6, 0.5, 0.4, 0.2, 0.1, 0.5, 0.3, 0.0, 1.0])
    on_a = (motion_fields(a) @ intensities).reshape(468, 2)
    on_b = (motion_fields(b) @ intensities).reshape(468, 2)
    assert np.abs(on_a - on_b).max() > 0.01, "the two faces move differently for the same smile"
    np.testing.assert_allclose(Retarget.between(a, b).apply(on_a), on_b, atol=1e-9)


def test_what_the_basis_does_not_explain_carries_over_unchanged() -> None:
    a, b = _faces()
    rt = Retarget.between(a, b)
    drift = np.random.default_rng(0).normal(0.0, 0.01, (468, 2))
    residual = drift.reshape(-1) - motion_fields(a) @ (rt.proj @ drift.reshape(-1))  # ⟂ a's fields
    np.testing.assert_allclose(rt.apply(residual.reshape(468, 2)), residual.reshape(468, 2), atol=1e-9)
    np.testing.assert_allclose(Retarget.between(a, a).apply(drift), drift, atol=1e-9)


def test_to_face_puts_every_sequence_on_one_face() -> None:
    data = generate(SynthConfig(n_sequences=12, n_identities=4, seed=2))
    template = canonical_template()
    moved = to_face(data, template)
    assert moved.points.shape == data.points.shape and moved.points.dtype == data.points.dtype
    np.testing.assert_array_equal(moved.offsets, data.offsets)
    np.testing.assert_array_equal(moved.labels, data.labels)
    for i in range(len(data)):
        np.testing.assert_allclose(moved.sequence(i)[0], template, atol=1e-6)
        own = data.sequence(i) - data.sequence(i)[:1]
        assert np.abs(moved.sequence(i) - template).max() == pytest.approx(np.abs(own).max(), rel=0.5)
