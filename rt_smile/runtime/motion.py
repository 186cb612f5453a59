"""Where a model's motion is made and how it reaches a photo's face.

A model trained with ``motion_face="own"`` moves the face it is given (its own code, or the
nearest anchor's) and its displacement is added to the face's landmarks. A model trained with
``motion_face="template"`` learned smiles on MediaPipe's canonical face only: it always starts
from that face, and its motion is retargeted onto the photo's own face through the expression
basis (``rt_smile.data.retarget``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from rt_smile.data.retarget import Retarget
from rt_smile.face.align import canonical_template
from rt_smile.face.topology import NUM_LANDMARKS
from rt_smile.models.cmmnet import CMMNet

Array = NDArray[np.float64]


@dataclass(frozen=True)
class FaceMotion:
    """How motion reaches one face (aligned frame)."""

    #: (468, 2) the face's own neutral landmarks.
    neutral: Array
    #: (468, 2) the face the generator moves: ``neutral`` itself, or the canonical template.
    start: Array
    #: Template motion → the face's motion; None when the generator moves the face itself.
    retarget: Retarget | None

    @classmethod
    def for_face(cls, model: CMMNet, neutral: NDArray[np.floating]) -> FaceMotion:  # type: ignore[type-arg]
        face = np.asarray(neutral, np.float64)[:NUM_LANDMARKS]
        if model.config.motion_face == "template":
            template = canonical_template()
            return cls(face, template, Retarget.between(template, face))
        return cls(face, face, None)

    def displacement(self, disp: NDArray[np.floating]) -> Array:  # type: ignore[type-arg]
        """Generated displacement (..., 468, 2) from ``start`` → displacement of this face."""
        d = np.asarray(disp, np.float64)
        return d if self.retarget is None else self.retarget.apply(d)

    def onto(self, seqs: NDArray[np.floating]) -> Array:  # type: ignore[type-arg]
        """Generated landmarks (..., 468, 2) on ``start`` → the same motion on this face."""
        return self.neutral + self.displacement(np.asarray(seqs, np.float64) - self.start)


def generate_on_faces(
    model: CMMNet,
    motions: list[FaceMotion],
    cls: torch.Tensor,
    noise: torch.Tensor,
    mode_noise: torch.Tensor | None = None,
) -> tuple[Array, Array]:
    """One row per face: cls (N,), noise (N, T, noise_dim), mode_noise (N, K, d + 1) (both from
    ``model.sample_noise``) → (N, K, T, 468, 2) multi-mode
    sequences and (N, T, 468, 2) K = 1 sequences (the conditional LSTM alone), each on its
    face and starting at its neutral landmarks."""
    start = torch.from_numpy(np.stack([m.start for m in motions])).float()
    with torch.no_grad():
        multi = model.generate(start, cls, noise, mode_noise).double().numpy()
        single = conditional_only(model, start, cls, noise).double().numpy()
    multi = np.stack([m.onto(s) for m, s in zip(motions, multi, strict=True)])
    single = np.stack([m.onto(s) for m, s in zip(motions, single, strict=True)])
    return multi, single


@torch.no_grad()
def conditional_only(
    model: CMMNet, neutral: torch.Tensor, cls: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """The K = 1 ablation: the conditional LSTM's own sequence, decoded, (N, T, 468, 2),
    starting at ``neutral`` (N, 468, 2)."""
    z0 = model.neutral_code(neutral)
    z = model.conditional.unroll(z0, cls, noise[:, : noise.shape[1] - 1])  # (N, T-1, z)
    decoded = model.vae.decode(z.flatten(0, 1)).reshape(z.shape[0], z.shape[1], -1, 2)
    disp = decoded - model.vae.decode(z0)[:, None]
    return torch.cat([neutral[:, None], neutral[:, None] + disp], 1)
