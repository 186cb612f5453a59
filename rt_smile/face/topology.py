"""Named landmark index sets of MediaPipe's 468-point face mesh, and its triangulation.

Index sets follow MediaPipe's face-mesh connection lists (google-ai-edge/mediapipe,
``face_mesh_connections.py``, Apache-2.0), ordered into polylines. "right"/"left" are the
subject's own sides: the subject's right eye (outer corner 33) is on the image's left.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
from numpy.typing import NDArray

NUM_LANDMARKS = 468
NUM_LANDMARKS_IRIS = 478

#: Outer eye corners; their distance is the inter-ocular distance (IOD).
RIGHT_EYE_OUTER = 33
LEFT_EYE_OUTER = 263
RIGHT_EYE_INNER = 133
LEFT_EYE_INNER = 362
#: Lip corners (outer contour) and mid inner lips.
RIGHT_LIP_CORNER = 61
LEFT_LIP_CORNER = 291
UPPER_INNER_LIP_MID = 13
LOWER_INNER_LIP_MID = 14
#: Eyelid mid points (upper, lower) of each eye.
RIGHT_EYELID = (159, 145)
LEFT_EYELID = (386, 374)

# Polylines, ordered from the subject's right to left (image left to right for a frontal face).
LIPS_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)

# Eyes: upper and lower lid, each from the outer to the inner corner.
RIGHT_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LEFT_EYE_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)

RIGHT_BROW_UPPER = (70, 63, 105, 66, 107)
RIGHT_BROW_LOWER = (46, 53, 52, 65, 55)
LEFT_BROW_UPPER = (300, 293, 334, 296, 336)
LEFT_BROW_LOWER = (276, 283, 282, 295, 285)

FACE_OVAL = (
    10,
    338,
    297,
    332,
    284,
    251,
    389,
    356,
    454,
    323,
    361,
    288,
    397,
    365,
    379,
    378,
    400,
    377,
    152,
    148,
    176,
    149,
    150,
    136,
    172,
    58,
    132,
    93,
    234,
    127,
    162,
    21,
    54,
    103,
    67,
    109,
)
NOSE = (
    1,
    2,
    4,
    5,
    6,
    19,
    45,
    48,
    64,
    94,
    97,
    98,
    115,
    168,
    195,
    197,
    220,
    275,
    278,
    294,
    326,
    327,
    344,
    440,
)

#: Points that expressions barely move: eye corners, nose bridge and tip, forehead, temples.
STABLE = (33, 133, 263, 362, 168, 6, 197, 195, 5, 4, 1, 10, 151, 9, 8, 109, 338, 67, 297, 127, 356)


def _unique(*groups: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(sorted({i for g in groups for i in g}))


LIPS_OUTER = _unique(LIPS_OUTER_UPPER, LIPS_OUTER_LOWER)
LIPS_INNER = _unique(LIPS_INNER_UPPER, LIPS_INNER_LOWER)
LIPS = _unique(LIPS_OUTER, LIPS_INNER)
RIGHT_EYE = _unique(RIGHT_EYE_UPPER, RIGHT_EYE_LOWER)
LEFT_EYE = _unique(LEFT_EYE_UPPER, LEFT_EYE_LOWER)
EYES = _unique(RIGHT_EYE, LEFT_EYE)
RIGHT_BROW = _unique(RIGHT_BROW_UPPER, RIGHT_BROW_LOWER)
LEFT_BROW = _unique(LEFT_BROW_UPPER, LEFT_BROW_LOWER)
BROWS = _unique(RIGHT_BROW, LEFT_BROW)

INDEX_SETS: dict[str, tuple[int, ...]] = {
    "lips_outer": LIPS_OUTER,
    "lips_inner": LIPS_INNER,
    "right_eye": RIGHT_EYE,
    "left_eye": LEFT_EYE,
    "right_brow": RIGHT_BROW,
    "left_brow": LEFT_BROW,
    "face_oval": FACE_OVAL,
    "nose": NOSE,
}


@lru_cache(maxsize=1)
def _canonical_obj() -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    text = resources.files("rt_smile.assets").joinpath("canonical_face_model.obj").read_text()
    verts: list[list[float]] = []
    faces: list[list[int]] = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            verts.append([float(p) for p in parts[1:4]])
        elif parts[0] == "f":
            faces.append([int(p.split("/")[0]) - 1 for p in parts[1:4]])
    return np.asarray(verts, dtype=np.float64), np.asarray(faces, dtype=np.int64)


def canonical_vertices() -> NDArray[np.float64]:
    """MediaPipe's neutral canonical face model, (468, 3) in cm: x right, y up, z to the viewer."""
    return _canonical_obj()[0].copy()


def triangles() -> NDArray[np.int64]:
    """The face-mesh triangulation, (898, 3) vertex indices."""
    return _canonical_obj()[1].copy()


def canonical_depth_iod() -> NDArray[np.float64]:
    """(468,) depth of the canonical face towards the viewer, in inter-ocular distances."""
    v = _canonical_obj()[0]
    iod = float(np.linalg.norm(v[RIGHT_EYE_OUTER] - v[LEFT_EYE_OUTER]))
    return v[:, 2] / iod
