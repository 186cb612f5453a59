"""Static plots: a photo with its face-mesh landmarks and feature polylines.

Matplotlib is driven through its object API with an explicit Agg canvas, so nothing here
selects a global backend or opens a window, and importing this module has no side effects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from rt_smile.face import topology as topo

#: Feature polylines drawn over the photo: (name, indices, closed, colour).
POLYLINES: tuple[tuple[str, tuple[int, ...], bool, str], ...] = (
    ("face oval", topo.FACE_OVAL, True, "#f5d142"),
    ("right brow", topo.RIGHT_BROW_UPPER + topo.RIGHT_BROW_LOWER[::-1], True, "#ff8c1a"),
    ("left brow", topo.LEFT_BROW_UPPER + topo.LEFT_BROW_LOWER[::-1], True, "#ff8c1a"),
    ("right eye", topo.RIGHT_EYE_UPPER + topo.RIGHT_EYE_LOWER[-2:0:-1], True, "#33d6ff"),
    ("left eye", topo.LEFT_EYE_UPPER + topo.LEFT_EYE_LOWER[-2:0:-1], True, "#33d6ff"),
    ("outer lips", topo.LIPS_OUTER_UPPER + topo.LIPS_OUTER_LOWER[-2:0:-1], True, "#ff3366"),
    ("inner lips", topo.LIPS_INNER_UPPER + topo.LIPS_INNER_LOWER[-2:0:-1], True, "#ff66cc"),
)


def _figure(width: int, height: int, dpi: float) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    return fig, ax


def _polyline(points: NDArray[np.float64], idx: tuple[int, ...], closed: bool) -> NDArray[np.float64]:
    pts = points[list(idx)]
    return np.vstack([pts, pts[:1]]) if closed else pts


def render_landmarks(
    rgb: NDArray[np.uint8], points: NDArray[np.float64], dpi: float = 100.0
) -> NDArray[np.uint8]:
    """``rgb`` (H×W×3) with ``points`` ((N, 2) pixels, N = 468 or 478) drawn on it, as an H×W×3
    array: every landmark as a dot, lips/eyes/brows/face oval as polylines and, with 478 points,
    the irises. Line widths scale with the face (its inter-ocular distance)."""
    h, w = rgb.shape[:2]
    pts = np.asarray(points, np.float64)
    fig, ax = _figure(w, h, dpi)
    ax.imshow(rgb, interpolation="nearest")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    iod = float(np.linalg.norm(pts[topo.RIGHT_EYE_OUTER] - pts[topo.LEFT_EYE_OUTER]))
    unit = max(iod / 60.0, 0.4)
    for name, idx, closed, color in POLYLINES:
        line = _polyline(pts, idx, closed)
        ax.plot(line[:, 0], line[:, 1], color=color, linewidth=1.2 * unit, label=name)
    ax.scatter(pts[:468, 0], pts[:468, 1], s=(1.2 * unit) ** 2, c="#7CFC00", linewidths=0)
    if len(pts) >= topo.NUM_LANDMARKS_IRIS:
        iris = pts[topo.NUM_LANDMARKS : topo.NUM_LANDMARKS_IRIS]
        ax.scatter(iris[:, 0], iris[:, 1], s=(2.5 * unit) ** 2, c="#ffffff", linewidths=0)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[:h, :w, :3])


def plot_landmarks(
    rgb: NDArray[np.uint8], points: NDArray[np.float64], path: str | Path, dpi: float = 100.0
) -> Path:
    """Write ``render_landmarks(rgb, points)`` as an RGB PNG of the photo's own size."""
    out = Path(path)
    Image.fromarray(render_landmarks(rgb, points, dpi)).save(out, format="PNG")
    return out
