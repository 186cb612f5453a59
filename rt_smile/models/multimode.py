"""Multi-mode generator: one latent sequence z1 … zT → K different latent sequences.

Every mode k has a learned embedding m_k; the K modes run as one batch of B·K (index b·K + k)
inside the recurrent state, so a runtime steps all modes with one call. The output is residual
around the input: z_t^k = z_t + delta_t^k, with a small initial head, so an untrained generator
returns (nearly) its input, and the modes differ deterministically (through m_k) from the start.
The VAE decoder turns the outputs into landmarks: ``vae.decode(z_modes.flatten(0, 1))``.

Like the conditional LSTM, ``step(z_t, state) -> (z_modes, state)`` is the only recurrence and
``unroll`` loops it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rt_smile.models.conditional import LSTMStack, StateInit, residual_head

#: Recurrent state (h, c, z0_modes): h, c (layers, B·K, hidden); z0_modes (B·K, z), the neutral
#: code repeated per mode.
MultiModeState = tuple[Tensor, Tensor, Tensor]


@dataclass(frozen=True)
class MultiModeConfig:
    """Multi-mode LSTM generator."""

    #: Size of the VAE latent code z.
    z_dim: int = 32
    #: Number of modes K generated from one input sequence.
    modes: int = 4
    #: LSTM width.
    hidden: int = 256
    #: Size of each mode's learned embedding.
    mode_dim: int = 16
    #: Stacked LSTM layers.
    layers: int = 1


class MultiModeGenerator(nn.Module):
    """z0 and a latent sequence → K latent sequences (residual, one LSTM over B·K)."""

    def __init__(self, config: MultiModeConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or MultiModeConfig()
        self.mode_embedding = nn.Parameter(torch.randn(cfg.modes, cfg.mode_dim))  # (K, mode_dim)
        self.init_state = StateInit(cfg.z_dim + cfg.mode_dim, cfg.hidden, cfg.layers)
        # input per step: z_t, z_t − z0 (the motion so far), mode embedding
        self.lstm = LSTMStack(2 * cfg.z_dim + cfg.mode_dim, cfg.hidden, cfg.layers)
        self.head = residual_head(cfg.hidden, cfg.z_dim)

    def _per_mode(self, z: Tensor) -> Tensor:
        """(B, D) → (B·K, D), row b·K + k is z[b]."""
        return z.repeat_interleave(self.config.modes, dim=0)

    def _modes(self, batch: int) -> Tensor:
        """(B·K, mode_dim) mode embeddings, row b·K + k is m_k."""
        return self.mode_embedding.repeat(batch, 1)

    def initial_state(self, z0: Tensor) -> MultiModeState:
        """z0 (B, z) → (h, c, z0_modes): h, c (layers, B·K, hidden), z0_modes (B·K, z)."""
        z0k = self._per_mode(z0)  # (B·K, z)
        h, c = self.init_state(torch.cat([z0k, self._modes(z0.shape[0])], dim=-1))
        return h, c, z0k

    def step(self, z_t: Tensor, state: MultiModeState) -> tuple[Tensor, MultiModeState]:
        """z_t (B, z), state (h, c, z0_modes) → (z_modes (B, K, z), state)."""
        h, c, z0k = state
        ztk = self._per_mode(z_t)  # (B·K, z)
        x = torch.cat([ztk, ztk - z0k, self._modes(z_t.shape[0])], dim=-1)  # (B·K, 2z + mode_dim)
        top, (h, c) = self.lstm(x, (h, c))  # (B·K, hidden)
        z_modes = (ztk + self.head(top)).unflatten(0, (z_t.shape[0], self.config.modes))  # (B, K, z)
        return z_modes, (h, c, z0k)

    def unroll(self, z_seq: Tensor, z0: Tensor) -> Tensor:
        """z_seq (B, T, z) (z1 … zT), z0 (B, z) → (B, K, T, z)."""
        state = self.initial_state(z0)
        out: list[Tensor] = []
        for t in range(z_seq.shape[1]):
            z_modes, state = self.step(z_seq[:, t], state)
            out.append(z_modes)
        return torch.stack(out, dim=2)
