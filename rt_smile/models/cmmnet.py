"""CMM-Net as one module: landmark VAE + conditional LSTM + multi-mode generator.

Holds the three parts and the per-step API the runtime uses; no file I/O (see
``rt_smile.io.checkpoint``). Landmarks are in the aligned canonical frame (IOD units).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from rt_smile.models.conditional import ConditionalConfig, ConditionalLSTM, LSTMState
from rt_smile.models.multimode import MultiModeConfig, MultiModeGenerator, MultiModeState
from rt_smile.models.vae import LandmarkVAE, VAEConfig

#: Bumped whenever the architecture or the checkpoint layout changes.
MODEL_VERSION = 2


@dataclass(frozen=True)
class CMMNetConfig:
    """The three parts' configurations."""

    vae: VAEConfig = field(default_factory=VAEConfig)
    conditional: ConditionalConfig = field(default_factory=ConditionalConfig)
    multimode: MultiModeConfig = field(default_factory=MultiModeConfig)
    #: Neutral codes of training faces kept as anchors (0: none). With anchors, the dynamics of a
    #: face start from the code of the training face nearest to it (Mahalanobis distance in code
    #: space), and its motion is added to the face's own landmarks: a photo unlike any training
    #: face still gets the dynamics the generator learned, not an extrapolation of them.
    anchors: int = 0
    #: The face whose motion the generator makes: "own" (the face's own code, or its nearest
    #: anchor's) or "template" (MediaPipe's canonical face, whatever the photo; the motion is
    #: then retargeted onto the photo's face, ``rt_smile.data.retarget``).
    motion_face: str = "own"

    def __post_init__(self) -> None:
        if self.multimode.n_classes != self.conditional.n_classes:
            counts = (self.conditional.n_classes, self.multimode.n_classes)
            raise ValueError(
                f"the conditional LSTM and the mode-noise prior need one class count, got {counts}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CMMNetConfig:
        vae = dict(d["vae"])
        vae["hidden"] = tuple(vae["hidden"])
        return cls(
            VAEConfig(**vae),
            ConditionalConfig(**d["conditional"]),
            MultiModeConfig(**d["multimode"]),
            anchors=int(d.get("anchors", 0)),
            motion_face=str(d.get("motion_face", "own")),
        )


@dataclass
class GeneratorState:
    """Recurrent state of one batch of generations (explicit: the runtime owns it)."""

    z: Tensor  # (B, z) latest embedding of the conditional LSTM
    conditional: LSTMState
    multimode: MultiModeState
    z0: Tensor  # (B, z)
    neutral_decoded: Tensor  # (B, 468, 2) decode(z0), cached


class CMMNet(nn.Module):
    """neutral landmarks + class + noise → K landmark sequences, one step at a time."""

    anchor_codes: Tensor
    anchor_mean: Tensor
    anchor_whiten: Tensor

    def __init__(self, config: CMMNetConfig = CMMNetConfig()) -> None:
        super().__init__()
        self.config = config
        self.vae = LandmarkVAE(config.vae)
        self.conditional = ConditionalLSTM(config.conditional)
        self.multimode = MultiModeGenerator(config.multimode)
        z = config.vae.z_dim
        self.register_buffer("anchor_codes", torch.zeros(config.anchors, z))  # (A, z)
        self.register_buffer("anchor_mean", torch.zeros(z))
        self.register_buffer("anchor_whiten", torch.eye(z))  # w = W (z − mean)

    @property
    def modes(self) -> int:
        return self.config.multimode.modes

    @torch.no_grad()
    def set_anchors(self, codes: Tensor) -> None:
        """Keep ``codes`` (A, z), the neutral codes of training faces, and their whitening."""
        if codes.shape != self.anchor_codes.shape:
            expected = tuple(self.anchor_codes.shape)
            raise ValueError(f"expected anchor codes of shape {expected}, got {tuple(codes.shape)}")
        mean = codes.mean(0)
        cov = torch.cov((codes - mean).T) + 1e-6 * torch.eye(codes.shape[1])
        self.anchor_codes.copy_(codes)
        self.anchor_mean.copy_(mean)
        self.anchor_whiten.copy_(torch.linalg.inv(torch.linalg.cholesky(cov)))

    def neutral_code(self, neutral: Tensor) -> Tensor:
        """neutral (B, 468, 2) → z0 (B, z): the face's own code, or its nearest anchor's."""
        z, _ = self.vae.encode(neutral)
        anchors = self.anchor_codes.to(z.dtype)
        if anchors.shape[0] == 0:
            return z
        whiten, mean = self.anchor_whiten.to(z.dtype), self.anchor_mean.to(z.dtype)
        nearest = torch.cdist((z - mean) @ whiten.T, (anchors - mean) @ whiten.T).argmin(1)  # (B,)
        return anchors[nearest]

    def start(self, neutral: Tensor, cls: Tensor, mode_noise: Tensor | None = None) -> GeneratorState:
        """neutral (B, 468, 2) aligned landmarks, cls (B,) long, mode_noise (B, K, d + 1)
        standard normal draws (from ``multimode.sample_noise``; needed by a generator with mode
        noise, which maps them to its class's prior) → initial state."""
        z0 = self.neutral_code(neutral)
        if mode_noise is not None:  # standard normal draws → the class's prior
            mode_noise = self.multimode.prior_noise(mode_noise, cls)
        return GeneratorState(
            z=z0,
            conditional=self.conditional.initial_state(z0, cls),
            multimode=self.multimode.initial_state(z0, mode_noise),
            z0=z0,
            neutral_decoded=self.vae.decode(z0),
        )

    def step(self, cls: Tensor, noise: Tensor, state: GeneratorState) -> tuple[Tensor, GeneratorState]:
        """One frame: cls (B,), noise (B, noise_dim) → displacement (B, K, 468, 2) from the
        neutral face, and the next state. Add it to the face's own neutral landmarks."""
        z, cond = self.conditional.step(state.z, cls, noise, state.conditional)
        z_modes, mm = self.multimode.step(z, state.multimode)  # (B, K, z)
        b, k = z_modes.shape[:2]
        decoded = self.vae.decode(z_modes.flatten(0, 1)).reshape(b, k, -1, 2)  # (B, K, 468, 2)
        disp = decoded - state.neutral_decoded[:, None]
        return disp, GeneratorState(z, cond, mm, state.z0, state.neutral_decoded)

    def sample_noise(
        self, batch: int, steps: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """The noise of ``batch`` generations of ``steps`` frames: the conditional LSTM's (batch,
        steps, noise_dim) and the modes' own (batch, K, d + 1), drawn row by row (a row's
        conditional noise, then its modes'), so a row's noise does not depend on how many rows
        follow it (a request for more modes than the model has runs extra rows, and its first K
        modes stay those of a request for K)."""
        rows = [
            (
                self.conditional.sample_noise(1, steps, generator=generator),
                self.multimode.sample_noise(1, generator=generator),
            )
            for _ in range(batch)
        ]
        if not rows:
            return self.conditional.sample_noise(0, steps), self.multimode.sample_noise(0)
        return torch.cat([r[0] for r in rows]), torch.cat([r[1] for r in rows])

    @torch.no_grad()
    def generate(
        self, neutral: Tensor, cls: Tensor, noise: Tensor, mode_noise: Tensor | None = None
    ) -> Tensor:
        """neutral (B, 468, 2), cls (B,), noise (B, T, noise_dim), mode_noise (B, K, d + 1) →
        (B, K, T, 468, 2) landmarks.

        Frame 0 of every mode is ``neutral`` itself (the photo's own face); frames 1 … T−1 are
        steps of the generator (noise[:, T−1] is unused)."""
        state = self.start(neutral, cls, mode_noise)
        first = neutral[:, None].expand(-1, self.modes, -1, -1)
        frames = [first]
        for t in range(noise.shape[1] - 1):
            disp, state = self.step(cls, noise[:, t], state)
            frames.append(neutral[:, None] + disp)
        return torch.stack(frames, dim=2)


def stack_states(states: list[GeneratorState]) -> GeneratorState:
    """Concatenate the batches of several generator states (e.g. of several sessions)."""
    return GeneratorState(
        z=torch.cat([s.z for s in states]),
        conditional=(
            torch.cat([s.conditional[0] for s in states], 1),
            torch.cat([s.conditional[1] for s in states], 1),
        ),
        multimode=(
            torch.cat([s.multimode[0] for s in states], 1),
            torch.cat([s.multimode[1] for s in states], 1),
            torch.cat([s.multimode[2] for s in states]),
        ),
        z0=torch.cat([s.z0 for s in states]),
        neutral_decoded=torch.cat([s.neutral_decoded for s in states]),
    )


def unstack_states(state: GeneratorState, sizes: list[int]) -> list[GeneratorState]:
    """Inverse of ``stack_states``: split a batched state into batches of ``sizes`` rows."""
    k = state.multimode[2].shape[0] // state.z.shape[0]  # modes per row
    out, start = [], 0
    for n in sizes:
        rows, mode_rows = slice(start, start + n), slice(start * k, (start + n) * k)
        out.append(
            GeneratorState(
                z=state.z[rows],
                conditional=(state.conditional[0][:, rows], state.conditional[1][:, rows]),
                multimode=(
                    state.multimode[0][:, mode_rows],
                    state.multimode[1][:, mode_rows],
                    state.multimode[2][mode_rows],
                ),
                z0=state.z0[rows],
                neutral_decoded=state.neutral_decoded[rows],
            )
        )
        start += n
    return out
