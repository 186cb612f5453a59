"""Landmark plots: the photo's size, the outlines drawn where the landmarks are."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from rt_smile.face import topology as topo
from rt_smile.face.landmarks import LandmarkDetector
from rt_smile.io.plots import plot_landmarks, render_landmarks


@pytest.fixture(scope="module")
def points(photo: NDArray[np.uint8], detector: LandmarkDetector) -> NDArray[np.float64]:
    (face,) = detector.detect_all(photo)
    return face.points


def test_plot_has_the_photo_size_and_draws_on_the_face(
    photo: NDArray[np.uint8], points: NDArray[np.float64]
) -> None:
    drawn = render_landmarks(photo, points)
    assert drawn.shape == photo.shape
    changed = np.abs(drawn.astype(int) - photo.astype(int)).sum(-1) > 30
    ys, xs = np.nonzero(changed)
    lo, hi = points.min(0), points.max(0)
    inside = (xs >= lo[0] - 6) & (xs <= hi[0] + 6) & (ys >= lo[1] - 6) & (ys <= hi[1] + 6)
    assert changed.sum() > 500
    assert inside.mean() > 0.98  # nothing drawn away from the face
    # The lip outline passes through the lip corners.
    for i in (topo.RIGHT_LIP_CORNER, topo.LEFT_LIP_CORNER):
        x, y = np.round(points[i]).astype(int)
        assert changed[y - 2 : y + 3, x - 2 : x + 3].any()


@pytest.mark.parametrize("size", [(333, 171), (97, 250)])
def test_odd_sizes(photo: NDArray[np.uint8], points: NDArray[np.float64], size: tuple[int, int]) -> None:
    w, h = size
    img = np.asarray(Image.fromarray(photo).resize((w, h)))
    scaled = points * [w / 512, h / 512]
    assert render_landmarks(img, scaled).shape == (h, w, 3)


def test_plot_file_with_iris(tmp_path, photo: NDArray[np.uint8], points: NDArray[np.float64]) -> None:
    iris = np.vstack([points, np.tile(points[[468 - 1]], (10, 1))])
    out = plot_landmarks(photo, iris, tmp_path / "plot.png")
    with Image.open(out) as img:
        assert img.size == (512, 512)
        assert img.mode == "RGB"
