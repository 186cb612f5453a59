"""Posterior of the modes' noise given a training sequence (training only; not shipped).

A multi-mode generator with mode noise (``MultiModeConfig.noise_dim`` > 0) is trained as a
conditional VAE (Sohn et al. 2015): this encoder reads the motion of a training sequence in code
space and gives a Gaussian over the noise that reproduces it; every mode is fed its own draw from
that Gaussian and reconstructs the sequence, and the Kullback-Leibler divergence to the standard
normal prior is added to the loss. At run time the modes draw their noise from the prior, so the
K modes of one input are K independent smiles of the class, each as the data vary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rt_smile.train.losses import kl_terms

#: Time bins the motion is averaged into before the encoder's MLP.
POSTERIOR_BINS = 30


class MotionPosterior(nn.Module):
    """motion (B, T, z) in code space → (mu, logvar), each (B, noise_dim)."""

    def __init__(self, z_dim: int, noise_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(z_dim * POSTERIOR_BINS, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 2 * noise_dim),
        )

    def forward(self, motion: Tensor) -> tuple[Tensor, Tensor]:
        binned = F.adaptive_avg_pool1d(motion.transpose(1, 2), POSTERIOR_BINS)  # (B, z, bins)
        mu, logvar = self.net(binned.flatten(1)).chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 4.0)


def posterior_draws(mu: Tensor, logvar: Tensor, draws: int, generator: torch.Generator) -> Tensor:
    """(B, d) Gaussian → (B, draws, d) independent reparameterised draws."""
    eps = torch.randn(mu.shape[0], draws, mu.shape[1], generator=generator, dtype=mu.dtype)
    return mu[:, None] + (0.5 * logvar).exp()[:, None] * eps


def free_bits_kl(mu: Tensor, logvar: Tensor, free_nats: float) -> Tensor:
    """KL(N(mu, exp(logvar)) ‖ N(0, I)) for (B, d): per dimension the batch mean, charged no
    less than ``free_nats``, summed over the dimensions."""
    return kl_terms(mu, logvar).mean(0).clamp_min(free_nats).sum()
