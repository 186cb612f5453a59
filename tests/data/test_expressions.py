"""Expression basis: anatomy, scale, sides, parsing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from rt_smile.data.expressions import (
    UNIT_NAMES,
    ExpressionBasis,
    apply_expression,
    parse_expression,
)
from rt_smile.errors import ExpressionError
from rt_smile.face import topology as topo
from rt_smile.face.align import Similarity, canonical_template


@pytest.fixture(scope="module")
def face() -> NDArray[Any]:
    """The canonical face placed in a 512² photo at IOD 100 px, rotated by 10°."""
    a = np.deg2rad(10.0)
    rot = 100.0 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return Similarity(np.hstack([rot, [[256.0], [220.0]]])).apply(canonical_template())


def _iod(p: NDArray[Any]) -> float:
    return float(np.linalg.norm(p[33] - p[263]))


def test_zero_intensity_is_identity(face: NDArray[Any]) -> None:
    np.testing.assert_allclose(apply_expression(face, {}), face)
    np.testing.assert_allclose(apply_expression(face, {"AU12": 0.0}), face)


def test_lip_corner_pull_is_up_and_out_by_015_iod(face: NDArray[Any]) -> None:
    out = apply_expression(face, {"AU12": 1.0})
    iod = _iod(face)
    for corner in (61, 291):
        d = out[corner] - face[corner]
        assert 0.13 <= np.linalg.norm(d) / iod <= 0.17
    # in the face's own frame: corners rise (towards the eyes) and move apart
    width_before = np.linalg.norm(face[61] - face[291])
    width_after = np.linalg.norm(out[61] - out[291])
    assert width_after > width_before
    eyes = (face[33] + face[263]) / 2
    assert np.linalg.norm(out[61] - eyes) < np.linalg.norm(face[61] - eyes)
    # the nose and the eye corners stay put
    for i in (1, 4, 33, 263, 133, 362):
        assert np.linalg.norm(out[i] - face[i]) < 0.01 * iod


def test_blink_closes_the_eyes(face: NDArray[Any]) -> None:
    out = apply_expression(face, {"AU45": 1.0})
    for up, lo in (topo.RIGHT_EYELID, topo.LEFT_EYELID):
        assert np.linalg.norm(out[up] - out[lo]) < 0.05 * np.linalg.norm(face[up] - face[lo])


def test_jaw_drop_and_lips_part_open_the_mouth(face: NDArray[Any]) -> None:
    iod = _iod(face)
    out = apply_expression(face, {"AU25": 0.7, "AU26": 0.4})
    gap = np.linalg.norm(out[13] - out[14]) - np.linalg.norm(face[13] - face[14])
    assert gap / iod > 0.12
    # the chin follows the jaw; the upper face does not move
    assert np.linalg.norm(out[152] - face[152]) / iod > 0.04
    for i in (10, 151, 168, 33, 263):
        assert np.linalg.norm(out[i] - face[i]) < 0.005 * iod


def test_sides_are_separable(face: NDArray[Any]) -> None:
    right = apply_expression(face, {"AU12R": 1.0})
    left = apply_expression(face, {"AU12L": 1.0})
    both = apply_expression(face, {"AU12": 1.0})
    assert np.linalg.norm(right[61] - face[61]) > 10 * np.linalg.norm(right[291] - face[291])
    assert np.linalg.norm(left[291] - face[291]) > 10 * np.linalg.norm(left[61] - face[61])
    np.testing.assert_allclose(right + left - face, both, atol=1e-9)


def test_fields_are_smooth_on_the_mesh(face: NDArray[Any]) -> None:
    basis = ExpressionBasis.for_aligned(canonical_template())
    tri = topo.triangles()
    # the lids and the lips open against their neighbours by design: leave their edges out
    seams = np.array(sorted({*topo.LIPS, *topo.EYES}))
    edges = tri[:, :2][~np.isin(tri[:, :2], seams).any(1)]
    for name, field in basis.fields.items():
        edge_change = np.linalg.norm(field[edges[:, 0]] - field[edges[:, 1]], axis=1)
        peak = np.linalg.norm(field, axis=1).max()
        assert edge_change.max() <= 0.5 * peak, name


def test_parse_and_errors() -> None:
    assert parse_expression("au12=0.8, AU25=0.4") == {"AU12": 0.8, "AU25": 0.4}
    assert "AU12L" in UNIT_NAMES and "AU26" in UNIT_NAMES
    for bad, match in [
        ("AU99=0.5", "unknown action unit"),
        ("AU12=1.5", "within 0..1"),
        ("AU12=-0.1", "within 0..1"),
        ("AU12=abc", "not a number"),
        ("AU12", "NAME=VALUE"),
        ("AU12=nan", "within 0..1"),
    ]:
        with pytest.raises(ExpressionError, match=match):
            parse_expression(bad)
