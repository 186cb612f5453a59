"""Expression basis: action-unit displacement fields on the 468-point face mesh.

Every field is computed from one face's own neutral landmarks in the aligned canonical frame
(inter-ocular-distance units, eye midpoint at the origin, y down, the subject's right at x < 0),
so it is anatomically placed and scaled for that face. Fields are linear in intensity;
0 is neutral and 1 the strongest natural expression. Sided units (suffix ``R``/``L``: the
subject's own right/left) act on one half of the face; the plain name acts on both.

- AU6  cheek raiser: infra-orbital cheek rises, lower lid pushed up, eye narrows from below.
- AU7  lid tightener: lower lid rises, upper lid lowers slightly.
- AU12 lip-corner puller: corners up and out by 0.15 IOD; lips, cheek and nasolabial region
  follow with a smooth falloff.
- AU25 lips part: upper lip up and lower lip down, most in the middle, none at the corners.
- AU26 jaw drop: the mandible (lower lip, chin, jaw line) rotates about the jaw hinge.
- AU45 blink: the upper lids close onto the lower lids (fully at 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from rt_smile.errors import ExpressionError
from rt_smile.face import topology as topo
from rt_smile.face.align import face_frame

Points = NDArray[np.float64]

SIDED_UNITS = ("AU6", "AU7", "AU12", "AU45")
BILATERAL_UNITS = ("AU25", "AU26")
ACTION_UNITS = ("AU6", "AU7", "AU12", "AU25", "AU26", "AU45")
#: Every name an intensity may be given for.
UNIT_NAMES = tuple(
    sorted({*ACTION_UNITS, *(f"{u}{s}" for u in SIDED_UNITS for s in "LR")}, key=lambda n: (len(n), n))
)

LIP_CORNER_PULL_IOD = 0.15
_CANON_Z = None  # filled lazily from the canonical model (depth in IOD units)


def _side_weight(p: Points, side: str) -> NDArray[np.float64]:
    """Soft membership of each point in the subject's right (x < 0) or left half."""
    w_right = 1.0 / (1.0 + np.exp(p[:, 0] / 0.03))
    return w_right if side == "R" else 1.0 - w_right


def _curve(p: Points, idx: tuple[int, ...]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    pts = p[list(idx)]
    order = np.argsort(pts[:, 0])
    return pts[order, 0], pts[order, 1]


def _lid_gap(
    p: Points, upper: tuple[int, ...], lower: tuple[int, ...], x: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Upper-lid y, lower-lid y and the in-eye mask at abscissae ``x``."""
    ux, uy = _curve(p, upper)
    lx, ly = _curve(p, lower)
    inside = (x > ux[0]) & (x < ux[-1])
    return np.interp(x, ux, uy), np.interp(x, lx, ly), inside.astype(np.float64)


def _eye_closure(p: Points, side: str, upper_share: float, lower_share: float, reach: float) -> Points:
    """Upper lid (and the skin above) moves down by ``upper_share`` of the lid gap; the lower
    lid (and the skin below) up by ``lower_share``; falloff ``reach`` IOD away from the lids."""
    upper = topo.RIGHT_EYE_UPPER if side == "R" else topo.LEFT_EYE_UPPER
    lower = topo.RIGHT_EYE_LOWER if side == "R" else topo.LEFT_EYE_LOWER
    yu, yl, inside = _lid_gap(p, upper, lower, p[:, 0])
    gap = np.clip(yl - yu, 0.0, None) * inside
    y = p[:, 1]
    above = np.exp(-np.clip(yu - y, 0.0, None) / reach) * (y <= yu + 1e-6)
    below = np.exp(-np.clip(y - yl, 0.0, None) / reach) * (y >= yl - 1e-6)
    d = np.zeros_like(p)
    d[:, 1] = gap * (upper_share * above - lower_share * below)
    return d


def _gauss(
    p: Points, center: NDArray[np.float64], sx: float, sy_up: float, sy_down: float
) -> NDArray[np.float64]:
    dx = (p[:, 0] - center[0]) / sx
    dy = p[:, 1] - center[1]
    dy = np.where(dy < 0, dy / sy_up, dy / sy_down)
    return np.exp(-0.5 * (dx * dx + dy * dy))


def _lip_corner_pull(p: Points, side: str) -> Points:
    corner = p[topo.RIGHT_LIP_CORNER if side == "R" else topo.LEFT_LIP_CORNER]
    out = -1.0 if side == "R" else 1.0
    direction = np.array([0.6 * out, -0.8]) * LIP_CORNER_PULL_IOD
    w = _gauss(p, corner, sx=0.24, sy_up=0.30, sy_down=0.16)
    # The far half of the lips follows less; the nose (above the subnasal point 2) stays put.
    w = w * _side_weight(p, side) ** 0.5
    nose = (p[:, 1] < p[2, 1]) * np.exp(-((p[:, 0] / 0.18) ** 2))
    w = w * (1.0 - nose)
    return w[:, None] * direction[None, :]


def _cheek_raise(p: Points, side: str) -> Points:
    eye = p[list(topo.RIGHT_EYE if side == "R" else topo.LEFT_EYE)].mean(0)
    center = eye + np.array([0.0, 0.30])
    w = _gauss(p, center, sx=0.20, sy_up=0.18, sy_down=0.22) * _side_weight(p, side)
    d = np.zeros_like(p)
    d[:, 1] = -0.05 * w
    d[:, 0] = 0.01 * w * (1.0 if side == "R" else -1.0)
    return d + _eye_closure(p, side, upper_share=0.0, lower_share=0.25, reach=0.06)


def _mouth_param(p: Points) -> NDArray[np.float64]:
    """Position of each point along the mouth, 0 at the right inner corner, 1 at the left."""
    xr, xl = p[78, 0], p[308, 0]
    return np.clip((p[:, 0] - xr) / (xl - xr), 0.0, 1.0)


def _lower_face_weight(p: Points) -> NDArray[np.float64]:
    """Soft membership in the mandible: below the mouth line, rising towards the jaw hinges."""
    mouth_y = 0.5 * (p[13, 1] + p[14, 1])
    half_width = 0.5 * abs(p[308, 0] - p[78, 0])
    lateral = np.clip(np.abs(p[:, 0]) - half_width, 0.0, None)
    line = mouth_y - 0.35 * lateral
    soft = 0.02 + 0.25 * lateral
    w = 1.0 / (1.0 + np.exp(-(p[:, 1] - line) / soft))
    w[list(topo.LIPS_INNER_UPPER) + list(topo.LIPS_OUTER_UPPER)] = 0.0
    w[list(topo.LIPS_INNER_LOWER) + list(topo.LIPS_OUTER_LOWER)] = 1.0
    corners = [61, 291, 78, 308]
    w[corners] = 0.5
    return w


def _jaw_drop(p: Points) -> Points:
    theta = 0.30  # radians at intensity 1
    hinge_y, hinge_z = 0.25, -0.35  # IOD units: about ear level, behind the face
    z = topo.canonical_depth_iod()[: len(p)]
    w = _lower_face_weight(p)
    dy = (z - hinge_z) * np.sin(theta) + (p[:, 1] - hinge_y) * (np.cos(theta) - 1.0)
    d = np.zeros_like(p)
    d[:, 1] = w * dy
    return d


def _lips_part(p: Points) -> Points:
    s = _mouth_param(p)
    taper = np.sin(np.pi * s) ** 0.8
    w_low = _lower_face_weight(p)
    mouth_y = 0.5 * (p[13, 1] + p[14, 1])
    below = np.exp(-np.clip(p[:, 1] - mouth_y, 0.0, None) / 0.25)
    above = np.exp(-np.clip(mouth_y - p[:, 1], 0.0, None) / 0.08)
    d = np.zeros_like(p)
    d[:, 1] = taper * (0.11 * w_low * below - 0.03 * (1 - w_low) * above)
    return d


def _fields(p: Points) -> dict[str, Points]:
    f: dict[str, Points] = {}
    for side in "RL":
        f[f"AU6{side}"] = _cheek_raise(p, side)
        f[f"AU7{side}"] = _eye_closure(p, side, upper_share=0.12, lower_share=0.30, reach=0.05)
        f[f"AU12{side}"] = _lip_corner_pull(p, side)
        f[f"AU45{side}"] = _eye_closure(p, side, upper_share=0.88, lower_share=0.12, reach=0.05)
    f["AU25"] = _lips_part(p)
    f["AU26"] = _jaw_drop(p)
    return f


def parse_expression(spec: str) -> dict[str, float]:
    """Parse ``"AU12=0.8,AU25=0.4"`` into intensities; raises ExpressionError on bad input."""
    out: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise ExpressionError(f"expected NAME=VALUE, got {item!r} (e.g. AU12=0.8)")
        try:
            out[name.strip().upper()] = float(value)
        except ValueError as exc:
            raise ExpressionError(f"{name.strip()}: {value!r} is not a number") from exc
    return validate_intensities(out)


def validate_intensities(intensities: Mapping[str, float]) -> dict[str, float]:
    """Check names and ranges; return a plain dict with canonical (upper-case) names."""
    out: dict[str, float] = {}
    for raw, value in intensities.items():
        name = raw.upper()
        if name not in UNIT_NAMES:
            raise ExpressionError(f"unknown action unit {raw!r}; known: {', '.join(UNIT_NAMES)}")
        v = float(value)
        if not np.isfinite(v) or not 0.0 <= v <= 1.0:
            raise ExpressionError(f"{name}={value}: intensity must be within 0..1")
        out[name] = v
    return out


def _expand_sides(intensities: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, v in intensities.items():
        if name in SIDED_UNITS:
            for side in "RL":
                out[name + side] = min(1.0, out.get(name + side, 0.0) + v)
        else:
            out[name] = min(1.0, out.get(name, 0.0) + v)
    return out


@dataclass(frozen=True)
class ExpressionBasis:
    """Action-unit fields of one face, in the aligned frame (IOD units)."""

    #: name (e.g. "AU12L") → (468, 2) displacement at intensity 1, aligned frame.
    fields: dict[str, Points]

    @classmethod
    def for_aligned(cls, aligned: Points) -> ExpressionBasis:
        """Build from the face's neutral landmarks already in the aligned frame."""
        return cls(_fields(np.asarray(aligned, np.float64)[: topo.NUM_LANDMARKS]))

    def displacement(self, intensities: Mapping[str, float]) -> Points:
        """(468, 2) aligned-frame displacement of an expression."""
        units = _expand_sides(validate_intensities(intensities))
        d = np.zeros((topo.NUM_LANDMARKS, 2))
        for name, v in units.items():
            d += v * self.fields[name]
        return d


def apply_expression(
    points: Points, intensities: Mapping[str, float], depth: NDArray[np.float64] | None = None
) -> Points:
    """Target landmarks: ``intensities`` applied to a face's own landmarks (pixels in, pixels out).

    Works in any image frame (photo or crop); extra iris points (478) move with their eye lids'
    centre and are otherwise kept. With the landmarks' MediaPipe ``depth`` (same pixels), the
    fields are built on the face turned to the camera and turned back with it (``face_frame``).
    """
    pts = np.asarray(points, np.float64)
    n = topo.NUM_LANDMARKS
    frame = face_frame(pts[:n], None if depth is None else np.asarray(depth, np.float64)[:n])
    d_aligned = ExpressionBasis.for_aligned(frame.aligned).displacement(intensities)
    out = pts.copy()
    out[:n] += d_aligned @ frame.to_image.T
    return out
