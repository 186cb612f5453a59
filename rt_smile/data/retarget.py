"""Motion retargeting through the expression basis: landmark motion made on one face, carried
onto another face's own anatomy.

The same smile moves different faces' landmarks differently (a wider mouth's corners travel
further, a narrower eye closes sooner), so adding one face's motion to another face's landmarks
is not that smile on the second face. Here each frame's motion m_t = x_t − x_0 on a source face is
split into its least-squares coordinates in the source's action-unit fields (``TRACKS``, the
basis of ``rt_smile.data.expressions``) and a residual, and rebuilt on the target face as the same
coordinates in the target's fields plus the same residual:

    m'_t = m_t + (F_target − F_source) · pinv(F_source) · m_t

So motion that the basis explains (lip-corner pull, cheek raise, lids, lips part, jaw drop, blink)
becomes the target face's own version of it, and the rest (head-pose drift, detection jitter,
anything the basis does not span) carries over unchanged. Per face pair this is one fixed linear
map of rank ``len(TRACKS)``; applying it is two small matrix products per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from rt_smile.data.expressions import ExpressionBasis
from rt_smile.data.sequences import SmileSequences
from rt_smile.data.synthetic import TRACKS
from rt_smile.face import topology as topo

Array = NDArray[np.float64]


def motion_fields(face: NDArray[np.floating]) -> Array:  # type: ignore[type-arg]
    """(468, 2) aligned neutral face → (936, U) its action-unit fields, one column per track."""
    basis = ExpressionBasis.for_aligned(np.asarray(face, np.float64)[: topo.NUM_LANDMARKS])
    return np.stack([basis.fields[name].reshape(-1) for name in TRACKS], axis=1)


@dataclass(frozen=True)
class Retarget:
    """The map m ↦ m + delta · (proj · m) from one face's motion to another's (flattened 936)."""

    #: (U, 936) least-squares coordinates of a motion in the source face's fields.
    proj: Array
    #: (936, U) target fields minus source fields.
    delta: Array

    @classmethod
    def between(cls, source: NDArray[np.floating], target: NDArray[np.floating]) -> Retarget:  # type: ignore[type-arg]
        """From the aligned neutral ``source`` (468, 2) to the aligned neutral ``target``."""
        f_source = motion_fields(source)
        return cls(np.linalg.pinv(f_source), motion_fields(target) - f_source)

    def apply(self, motion: NDArray[np.floating]) -> Array:  # type: ignore[type-arg]
        """motion (..., 468, 2) on the source face → the same motion on the target (same shape)."""
        m = np.asarray(motion, np.float64)
        flat = m.reshape(*m.shape[:-2], -1)
        return (flat + (flat @ self.proj.T) @ self.delta.T).reshape(m.shape)


def to_face(data: SmileSequences, face: NDArray[np.floating]) -> SmileSequences:  # type: ignore[type-arg]
    """Every sequence's motion (frames minus its first frame) retargeted from its own first frame
    onto ``face`` (468, 2, aligned) and added to it: the same smiles, all made by one face.
    Labels, identities, lengths and validity are kept."""
    target = np.asarray(face, np.float64)
    points = np.empty_like(data.points)
    for i in range(len(data)):
        seq = data.sequence(i).astype(np.float64)
        moved = Retarget.between(seq[0], target).apply(seq - seq[:1])
        points[data.offsets[i] : data.offsets[i + 1]] = target + moved
    meta = {**data.meta, "retargeted_to": "one face (rt_smile.data.retarget.to_face)"}
    return SmileSequences(
        points=points,
        offsets=data.offsets,
        labels=data.labels,
        identity=data.identity,
        valid=data.valid,
        fps=data.fps,
        meta=meta,
    )
