"""A smile's style measures (``rt_smile.data.style``) on sequences whose timing is known."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from rt_smile.data.style import STYLE_DIM, STYLE_NAMES, smile_style, style_table
from rt_smile.face import topology as topo
from rt_smile.face.align import canonical_template

Array = NDArray[np.float64]

FPS = 30.0


def _smile(widen: Array, lids: Array | None = None) -> Array:
    """The template face whose lip corners move apart by ``widen`` (T,) IOD and whose upper
    lids keep ``lids`` (T,) of their gap."""
    face = canonical_template()[: topo.NUM_LANDMARKS].astype(np.float64)
    seq = np.repeat(face[None], len(widen), axis=0)
    outward = np.sign(face[topo.LEFT_LIP_CORNER, 0] - face[topo.RIGHT_LIP_CORNER, 0])
    seq[:, topo.RIGHT_LIP_CORNER, 0] -= outward * widen / 2
    seq[:, topo.LEFT_LIP_CORNER, 0] += outward * widen / 2
    if lids is not None:
        for upper, lower in (topo.RIGHT_EYELID, topo.LEFT_EYELID):
            seq[:, upper] = face[lower] + lids[:, None] * (face[upper] - face[lower])
    return seq


def test_the_rise_and_fall_times_are_the_crossings_of_the_lip_corner_widening() -> None:
    # 0 for 10 frames, a linear rise to 0.2 IOD over 10 frames, 20 frames held, a fall over 20
    widen = np.concatenate(
        [np.zeros(10), np.linspace(0.02, 0.2, 10), np.full(20, 0.2), np.linspace(0.19, 0.0, 20)]
    )
    style = dict(zip(STYLE_NAMES, smile_style(_smile(widen), FPS), strict=True))
    assert style["peak_iod"] == pytest.approx(0.2, abs=1e-9)
    assert style["rise_10_s"] * FPS == pytest.approx(10.0, abs=1e-6)  # 0.02 reached at frame 10
    assert style["rise_50_s"] * FPS == pytest.approx(14.0, abs=1e-6)  # 0.02 per frame from 0.02
    assert style["rise_90_s"] * FPS == pytest.approx(18.0, abs=1e-6)
    assert style["fall_90_s"] * FPS == pytest.approx(41.0, abs=1e-6)  # 0.19 − 0.01 per frame from 40
    assert style["fall_10_s"] * FPS == pytest.approx(57.0, abs=1e-6)
    assert style["blinks"] == 0.0 and style["blink_s"] == 0.0 and style["parting_iod"] == 0.0


def test_the_first_blink_is_found_when_the_lids_close_below_half() -> None:
    widen = np.linspace(0.0, 0.1, 40)
    lids = np.ones(40)
    lids[25:28] = [0.6, 0.2, 0.6]
    lids[33] = 0.3
    style = dict(zip(STYLE_NAMES, smile_style(_smile(widen, lids), FPS), strict=True))
    assert style["blinks"] == 1.0 and style["blink_s"] * FPS == pytest.approx(26.0)


def test_a_style_table_is_standardised_per_measure() -> None:
    seqs = [
        _smile(np.concatenate([np.zeros(5 + i), np.full(20, 0.05 * (1 + i)), np.zeros(10)])) for i in range(4)
    ]
    table, mean, spread = style_table(seqs, FPS)
    assert table.shape == (4, STYLE_DIM) and mean.shape == spread.shape == (STYLE_DIM,)
    np.testing.assert_allclose(table * spread + mean, np.stack([smile_style(s, FPS) for s in seqs]))
    moving = spread != 1.0
    np.testing.assert_allclose(table[:, moving].mean(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(table[:, moving].std(0), 1.0)
    assert moving[STYLE_NAMES.index("peak_iod")] and moving[STYLE_NAMES.index("rise_10_s")]
    assert not moving[STYLE_NAMES.index("blinks")], "a constant measure keeps spread 1"
