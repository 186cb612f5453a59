"""The per-frame step as three backend stages: generator step → VAE decode → translator.

``frame_step`` chains the stages of any ``StepBackend`` for B sessions with K modes each and feeds
the recurrent state back explicitly; ``bench_inputs`` makes inputs for it without a face detector
(the canonical face on the bundled sample photo), so benchmarks run where MediaPipe does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from rt_smile.models.cmmnet import CMMNet
    from rt_smile.runtime.backends import StepBackend
    from rt_smile.runtime.motion import FaceMotion


@dataclass(frozen=True)
class RecurrentState:
    """Generator state of G rows (G = sessions × groups of the model's modes)."""

    z: Tensor  # (G, z)
    cond_h: Tensor  # (L, G, H)
    cond_c: Tensor  # (L, G, H)
    mm_h: Tensor  # (Lm, G·Km, Hm)
    mm_c: Tensor  # (Lm, G·Km, Hm)
    z0_modes: Tensor  # (G·Km, z + mode noise)

    def tensors(self) -> tuple[Tensor, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def to(self, device: torch.device | str) -> RecurrentState:
        return RecurrentState(*(t.to(device) for t in self.tensors()))


@dataclass(frozen=True)
class FrameInputs:
    """What stays fixed from frame to frame for B sessions with K modes each (frames b·K + k)."""

    modes: int  # K
    cls: Tensor  # (G,) int64 smile class per generator row
    neutral_decoded: Tensor  # (G, 468, 2) VAE decode of each row's neutral code (aligned frame)
    to_crop: Tensor  # (B, 2, 2) aligned-frame displacement → crop pixels
    image: Tensor  # (B, 3, S, S) source crops in [0, 1]
    flow_basis: Tensor  # (B, N, G²)
    neutral: Tensor  # (B, N, 2) neutral landmarks, crop pixels
    palette: Tensor  # (B, 6, 3)
    #: Motion retargeting onto each photo's face (``rt_smile.data.retarget``): (B, U, 936) and
    #: (B, 936, U); U = 0 when the generator moves the photo's face itself.
    motion_proj: Tensor
    motion_delta: Tensor

    def to(self, device: torch.device | str) -> FrameInputs:
        moved = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "modes"}
        return replace(self, **{k: v.to(device) for k, v in moved.items()})


def frame_step(
    backend: StepBackend, inputs: FrameInputs, noise: Tensor, state: RecurrentState
) -> tuple[Tensor, RecurrentState]:
    """One frame of every session: noise (G, noise_dim) → frames (B·K, 3, S, S), next state."""
    z_modes, z, cond_h, cond_c, mm_h, mm_c = backend.generator(inputs.cls, noise, *state.tensors())
    landmarks = backend.vae_decode(z_modes.flatten(0, 1))  # (G·Km, 468, 2)
    target = targets_from(landmarks, inputs)
    frames = backend.translator(inputs.image, inputs.flow_basis, inputs.neutral, target, inputs.palette)
    return frames, RecurrentState(z, cond_h, cond_c, mm_h, mm_c, state.z0_modes)


def targets_from(landmarks: Tensor, inputs: FrameInputs) -> Tensor:
    """Decoded landmarks (G·Km, 468, 2) → target landmarks (B·K, N, 2) in crop pixels: each
    session's motion (decoded − decoded neutral) on its photo's own neutral landmarks."""
    g = inputs.cls.shape[0]
    sessions, n = inputs.neutral.shape[:2]
    decoded = landmarks.reshape(g, -1, *landmarks.shape[1:])  # (G, Km, 468, 2)
    disp = (decoded - inputs.neutral_decoded[:, None]).to(inputs.neutral.dtype)
    disp = disp.reshape(sessions, -1, *disp.shape[2:])[:, : inputs.modes]  # (B, K, 468, 2)
    if inputs.motion_proj.shape[1]:  # retarget the template's motion onto each photo's face
        flat = disp.flatten(2)  # (B, K, 936)
        flat = flat + (flat @ inputs.motion_proj.transpose(1, 2)) @ inputs.motion_delta.transpose(1, 2)
        disp = flat.reshape(disp.shape)
    disp = disp[:, :, :n]  # (B, K, N, 2)
    target = inputs.neutral[:, None] + disp @ inputs.to_crop[:, None].transpose(2, 3)
    return target.flatten(0, 1)


def retarget_tensors(motions: list[FaceMotion]) -> tuple[Tensor, Tensor]:
    """``FrameInputs.motion_proj`` and ``motion_delta`` of sessions with these face motions."""
    rts = [m.retarget for m in motions if m.retarget is not None]  # all or none: one model
    if not rts:
        return torch.zeros(len(motions), 0, 936), torch.zeros(len(motions), 936, 0)
    proj = torch.stack([torch.from_numpy(r.proj).float() for r in rts])
    return proj, torch.stack([torch.from_numpy(r.delta).float() for r in rts])


def groups_for(modes: int, model_modes: int) -> int:
    """Generator rows per session: K modes need ⌈K / Km⌉ runs of the model's Km modes."""
    return math.ceil(modes / model_modes)


@torch.no_grad()
def bench_inputs(
    model: CMMNet, size: int, sessions: int, modes: int, seed: int = 0
) -> tuple[FrameInputs, RecurrentState, Tensor]:
    """Inputs for ``frame_step`` without a detector: every session is the canonical neutral face
    (slightly perturbed per session) on the bundled sample photo, alternating smile classes.
    Returns (inputs, initial state, noise (T, G, noise_dim) for T = 64 frames)."""
    from rt_smile.config import CropConfig
    from rt_smile.face.align import canonical_template, canonical_to_crop
    from rt_smile.runtime.motion import FaceMotion
    from trt_build.export import example_prior

    gen = torch.Generator().manual_seed(seed)
    groups = groups_for(modes, model.modes)
    g = sessions * groups
    aligned = torch.from_numpy(canonical_template()).float()
    neutral = aligned + 0.01 * torch.randn(sessions, *aligned.shape, generator=gen)
    motions = [FaceMotion.for_face(model, n.double().numpy()) for n in neutral]
    proj, delta = retarget_tensors(motions)
    start = torch.stack([torch.from_numpy(m.start).float() for m in motions])
    cls = (torch.arange(sessions) % 2).repeat_interleave(groups)
    cond_noise, mode_noise = model.sample_noise(g, 64, generator=gen)
    state = model.start(start.repeat_interleave(groups, 0), cls, mode_noise)
    prior, _targets = example_prior(size)
    linear = torch.from_numpy(canonical_to_crop(CropConfig(size=size)).matrix[:, :2].copy()).float()

    def each(t: Tensor) -> Tensor:
        """One copy per session, as separate photos would have; the image has a batch axis."""
        one = t if t.dim() == 4 else t[None]
        return one.expand(sessions, *one.shape[1:]).contiguous()

    inputs = FrameInputs(
        modes=modes,
        cls=cls,
        neutral_decoded=state.neutral_decoded,
        to_crop=each(linear),
        image=each(prior.image),
        flow_basis=each(prior.flow_basis),
        neutral=each(prior.neutral),
        palette=each(prior.palette),
        motion_proj=proj,
        motion_delta=delta,
    )
    recurrent = RecurrentState(state.z, *state.conditional, *state.multimode)
    return inputs, recurrent, cond_noise.transpose(0, 1).contiguous()
