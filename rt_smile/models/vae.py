"""Landmark VAE: one aligned face shape (468 points) ↔ a small latent code z.

Points are in the aligned canonical frame (inter-ocular-distance units, eye midpoint at the
origin, y down; see ``rt_smile.data.sequences``). Before the encoder they are standardised per
coordinate with the buffers ``mean`` and ``scale`` (set them from the training data with
``set_normalization``); the decoder predicts standardised coordinates and maps them back, so
``decode`` returns points in the canonical frame. The last decoder layer starts at zero, so an
untrained decoder returns the mean shape. To animate a given face, add ``displacement(z_t, z0)``
to its own neutral landmarks rather than using ``decode(z_t)`` as it is: the motion carries over
to a new identity better than the absolute shape does.

At run time ``decode`` runs once per frame per mode: it is a three-layer MLP
(z → 256 → 512 → 936 with the default config, about 0.6 M multiply-adds per shape), or with
``decoder="linear"`` one linear map (z → 936, 30 k multiply-adds).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor, nn

#: The decoders a ``LandmarkVAE`` can have (``VAEConfig.decoder``).
DECODERS = ("mlp", "linear")


@dataclass(frozen=True)
class VAEConfig:
    """Landmark VAE."""

    #: Landmarks per face (MediaPipe face mesh without irises).
    n_points: int = 468
    #: Widths of the encoder's hidden layers; the decoder uses them in reverse order.
    hidden: tuple[int, ...] = (512, 256)
    #: Size of the latent code z.
    z_dim: int = 32
    #: Lower bound of the per-coordinate normalisation scale (IOD units), so that coordinates
    #: that barely vary in the data (the stable points the frames are aligned on) are not blown up.
    min_scale: float = 1e-2
    #: The encoder's log-variance is clamped to [-logvar_limit, logvar_limit].
    logvar_limit: float = 10.0
    #: The decoder: ``"mlp"`` (the encoder's widths in reverse) or ``"linear"`` (one linear map
    #: z → coordinates, a probabilistic-PCA decoder). A straight path in a linear decoder's code
    #: space is a straight path of the landmarks, so a generator's smooth code trajectory decodes
    #: to motion of the same shape; an MLP decoder bends such paths (see ``docs/training.md``).
    decoder: str = "mlp"

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, not {self.decoder!r}")

    @property
    def n_coords(self) -> int:
        """Flattened size of one shape: n_points × 2."""
        return self.n_points * 2


def _mlp(widths: tuple[int, ...]) -> nn.Sequential:
    """Linear → LayerNorm → GELU for each consecutive pair of widths."""
    layers: list[nn.Module] = []
    for w_in, w_out in pairwise(widths):
        layers += [nn.Linear(w_in, w_out), nn.LayerNorm(w_out), nn.GELU()]
    return nn.Sequential(*layers)


class LandmarkVAE(nn.Module):
    """VAE on standardised, flattened landmarks: MLP encoder, MLP or linear decoder."""

    mean: Tensor  # (n_points*2,) canonical units
    scale: Tensor  # (n_points*2,) canonical units, >= config.min_scale

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or VAEConfig()
        self.register_buffer("mean", torch.zeros(cfg.n_coords))
        self.register_buffer("scale", torch.ones(cfg.n_coords))
        self.encoder = _mlp((cfg.n_coords, *cfg.hidden))
        self.to_stats = nn.Linear(cfg.hidden[-1], 2 * cfg.z_dim)  # → (mu, logvar)
        linear = cfg.decoder == "linear"
        self.decoder = nn.Sequential() if linear else _mlp((cfg.z_dim, *cfg.hidden[::-1]))
        self.to_coords = nn.Linear(cfg.z_dim if linear else cfg.hidden[0], cfg.n_coords)
        nn.init.zeros_(self.to_coords.weight)
        nn.init.zeros_(self.to_coords.bias)

    @torch.no_grad()
    def set_normalization(self, mean: Tensor, std: Tensor) -> None:
        """Set the standardisation from data statistics: ``mean`` and ``std`` of shape (468, 2)
        or (936,), canonical units; ``std`` is floored at ``config.min_scale``."""
        n = self.config.n_coords
        self.mean.copy_(mean.reshape(n).to(self.mean))
        self.scale.copy_(std.reshape(n).to(self.scale).clamp_min(self.config.min_scale))

    def normalize(self, points: Tensor) -> Tensor:
        """(B, 468, 2) canonical points → (B, 936) standardised coordinates."""
        return (points.flatten(1) - self.mean) / self.scale

    def denormalize(self, coords: Tensor) -> Tensor:
        """(B, 936) standardised coordinates → (B, 468, 2) canonical points."""
        return (coords * self.scale + self.mean).reshape(-1, self.config.n_points, 2)

    def encode(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 468, 2) points → (mu, logvar), each (B, z)."""
        h = self.encoder(self.normalize(points))  # (B, hidden[-1])
        mu, logvar = self.to_stats(h).chunk(2, dim=-1)  # (B, z) each
        limit = self.config.logvar_limit
        return mu, logvar.clamp(-limit, limit)

    def decode(self, z: Tensor) -> Tensor:
        """(B, z) codes → (B, 468, 2) points."""
        return self.denormalize(self.to_coords(self.decoder(z)))

    def displacement(self, z: Tensor, z0: Tensor) -> Tensor:
        """decode(z) − decode(z0): (B, z), (B, z) → (B, 468, 2) motion away from the neutral code.

        Added to a face's own neutral landmarks, it animates that face with an exact neutral start
        and keeps its identity where the VAE does not reconstruct a new face exactly (a runtime
        may cache decode(z0) once per photo instead).
        """
        return self.decode(z) - self.decode(z0)

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, 468, 2) → (recon (B, 468, 2), mu (B, z), logvar (B, z)).

        In training mode the decoder sees z = mu + σ·ε (reparameterisation); in eval mode z = mu.
        """
        mu, logvar = self.encode(points)
        z = reparameterize(mu, logvar) if self.training else mu
        return self.decode(z), mu, logvar


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    """Sample z = mu + exp(logvar / 2)·ε, ε ~ N(0, I); differentiable in mu and logvar."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
