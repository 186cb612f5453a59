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

#: Recurrent state (h, c, z0_modes): h, c (layers, B·K, hidden); z0_modes (B·K, z + noise_dim),
#: the per-mode constants: the neutral code repeated per mode, then the mode's own noise.
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
    #: Size of each mode's own noise vector (0: none, the modes differ only by their embeddings).
    #: With noise, the K modes of one input are K independent draws: the noise sets the initial
    #: state and is fed at every step, held in the state beside the neutral code.
    noise_dim: int = 0
    #: Number of smile classes: the mode noise has one prior per class.
    n_classes: int = 2
    #: Components of each class's prior: the mode noise is drawn from a mixture of this many
    #: Gaussians per class, the posteriors of training sequences of that class (``set_noise_prior``).
    prior_components: int = 512
    #: Size of each mode's style (``rt_smile.data.style``; 0: none; needs mode noise): measures of
    #: the smile's timing and size, fed and held beside the noise. In training, those of the
    #: sequence the mode reconstructs; at run time, those of the prior component drawn.
    style_dim: int = 0

    def __post_init__(self) -> None:
        if self.style_dim > 0 and self.noise_dim == 0:
            raise ValueError("a mode style (style_dim > 0) needs mode noise (noise_dim > 0)")

    @property
    def cond_dim(self) -> int:
        """Width of each mode's held conditioning: its noise, then its style."""
        return self.noise_dim + self.style_dim


class MultiModeGenerator(nn.Module):
    """z0 and a latent sequence → K latent sequences (residual, one LSTM over B·K)."""

    prior_mu: Tensor  # (n_classes, prior_components, noise_dim), only with mode noise
    prior_sigma: Tensor  # (n_classes, prior_components, noise_dim)
    prior_style: Tensor  # (n_classes, prior_components, style_dim), only with a style

    def __init__(self, config: MultiModeConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or MultiModeConfig()
        self.mode_embedding = nn.Parameter(torch.randn(cfg.modes, cfg.mode_dim))  # (K, mode_dim)
        self.init_state = StateInit(cfg.z_dim + cfg.mode_dim + cfg.cond_dim, cfg.hidden, cfg.layers)
        # input per step: z_t, z_t − z0 (the motion so far), mode embedding, mode noise and style
        self.lstm = LSTMStack(2 * cfg.z_dim + cfg.mode_dim + cfg.cond_dim, cfg.hidden, cfg.layers)
        self.head = residual_head(cfg.hidden, cfg.z_dim)
        if cfg.noise_dim > 0:  # the standard normal until ``set_noise_prior``
            shape = (cfg.n_classes, cfg.prior_components, cfg.noise_dim)
            self.register_buffer("prior_mu", torch.zeros(shape))
            self.register_buffer("prior_sigma", torch.ones(shape))
        if cfg.style_dim > 0:
            style_shape = (cfg.n_classes, cfg.prior_components, cfg.style_dim)
            self.register_buffer("prior_style", torch.zeros(style_shape))

    def _per_mode(self, z: Tensor) -> Tensor:
        """(B, D) → (B·K, D), row b·K + k is z[b]."""
        return z.repeat_interleave(self.config.modes, dim=0)

    def _modes(self, batch: int) -> Tensor:
        """(B·K, mode_dim) mode embeddings, row b·K + k is m_k."""
        return self.mode_embedding.repeat(batch, 1)

    def initial_state(self, z0: Tensor, noise: Tensor | None = None) -> MultiModeState:
        """z0 (B, z), noise (B, K, noise_dim + style_dim) (``prior_noise``; needed when
        ``noise_dim`` > 0) → (h, c, z0_modes): h, c (layers, B·K, hidden), z0_modes
        (B·K, z + noise_dim + style_dim)."""
        consts = self._per_mode(z0)  # (B·K, z)
        if self.config.noise_dim > 0:
            expected = (z0.shape[0], self.config.modes, self.config.cond_dim)
            if noise is None or tuple(noise.shape) != expected:
                got = None if noise is None else tuple(noise.shape)
                raise ValueError(f"this generator needs mode noise of shape {expected}, got {got}")
            consts = torch.cat([consts, noise.flatten(0, 1).to(z0.dtype)], dim=-1)
        h, c = self.init_state(torch.cat([consts, self._modes(z0.shape[0])], dim=-1))
        return h, c, consts

    def sample_noise(self, batch: int, generator: torch.Generator | None = None) -> Tensor:
        """Standard normal draws (batch, K, noise_dim + 1), one independent draw per mode, for
        ``prior_noise`` (the last column picks the prior's component); empty (no random numbers
        drawn) when ``noise_dim`` is 0."""
        d = self.config.noise_dim
        device = self.head.weight.device
        if d == 0:
            return torch.zeros((batch, self.config.modes, 0), device=device)
        return torch.randn((batch, self.config.modes, d + 1), generator=generator, device=device)

    @torch.no_grad()
    def set_noise_prior(self, mu: Tensor, sigma: Tensor, style: Tensor | None = None) -> None:
        """Per class, the Gaussians whose mixture (equal weights) the modes' noise is drawn from
        at run time: ``mu`` and ``sigma`` (n_classes, prior_components, d); with a style, each
        component's style (n_classes, prior_components, style_dim), drawn with it."""
        expected = tuple(self.prior_mu.shape)
        if tuple(mu.shape) != expected or tuple(sigma.shape) != expected:
            got = (tuple(mu.shape), tuple(sigma.shape))
            raise ValueError(f"expected prior means and spreads of shape {expected}, got {got}")
        if self.config.style_dim > 0:
            want = tuple(self.prior_style.shape)
            if style is None or tuple(style.shape) != want:
                got_style = None if style is None else tuple(style.shape)
                raise ValueError(f"expected prior styles of shape {want}, got {got_style}")
            self.prior_style.copy_(style)
        self.prior_mu.copy_(mu)
        self.prior_sigma.copy_(sigma)

    def prior_noise(self, unit: Tensor, cls: Tensor) -> Tensor:
        """Standard normal draws (B, K, d + 1) (``sample_noise``) → draws of class ``cls`` (B,)'s
        prior (B, K, d + style_dim): the last column picks a component (through the normal CDF,
        so each is equally likely), the others are scaled and shifted by it, and the component's
        style follows. Without mode noise, ``unit``."""
        if self.config.noise_dim == 0:
            return unit
        expected = (cls.shape[0], self.config.modes, self.config.noise_dim + 1)
        if tuple(unit.shape) != expected:
            raise ValueError(
                f"expected standard normal mode noise of shape {expected}, got {tuple(unit.shape)}"
            )
        rows, pick = self._component(unit, cls)
        mu, sigma = self.prior_mu[rows, pick], self.prior_sigma[rows, pick]  # (B, K, d)
        noise = mu.to(unit.dtype) + sigma.to(unit.dtype) * unit[..., :-1]
        if self.config.style_dim == 0:
            return noise
        return torch.cat([noise, self.prior_style[rows, pick].to(unit.dtype)], dim=-1)

    def _component(self, unit: Tensor, cls: Tensor) -> tuple[Tensor, Tensor]:
        """The prior component each mode's draw picks: (class rows, component index), each (B, K)."""
        n = self.config.prior_components
        pick = (torch.special.ndtr(unit[..., -1]) * n).long().clamp(0, n - 1)  # (B, K)
        return cls[:, None].expand_as(pick), pick

    def component_style(self, unit: Tensor, cls: Tensor) -> Tensor:
        """The style (B, K, style_dim) of the prior component that each mode's standard normal
        draw (B, K, d + 1) picks (``prior_noise`` appends it to the noise)."""
        rows, pick = self._component(unit, cls)
        return self.prior_style[rows, pick].to(unit.dtype)

    def step(self, z_t: Tensor, state: MultiModeState) -> tuple[Tensor, MultiModeState]:
        """z_t (B, z), state (h, c, z0_modes) → (z_modes (B, K, z), state)."""
        h, c, consts = state
        ztk = self._per_mode(z_t)  # (B·K, z)
        parts = [ztk, ztk - consts[:, : z_t.shape[1]], self._modes(z_t.shape[0])]  # z0k: first z
        if self.config.noise_dim > 0:  # (no zero-width slice in the graph of a model without it)
            parts.append(consts[:, z_t.shape[1] :])  # the mode's noise (B·K, d)
        x = torch.cat(parts, dim=-1)  # (B·K, 2z + mode_dim + d)
        top, (h, c) = self.lstm(x, (h, c))  # (B·K, hidden)
        z_modes = (ztk + self.head(top)).unflatten(0, (z_t.shape[0], self.config.modes))  # (B, K, z)
        return z_modes, (h, c, consts)

    def unroll(self, z_seq: Tensor, z0: Tensor, noise: Tensor | None = None) -> Tensor:
        """z_seq (B, T, z) (z1 … zT), z0 (B, z), noise (B, K, noise_dim + style_dim) → (B, K, T, z)."""
        state = self.initial_state(z0, noise)
        out: list[Tensor] = []
        for t in range(z_seq.shape[1]):
            z_modes, state = self.step(z_seq[:, t], state)
            out.append(z_modes)
        return torch.stack(out, dim=2)
