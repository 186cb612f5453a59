"""The generator's class term: a small classifier of latent motion, trained on the data's codes
before the generator and then frozen, whose cross-entropy on every generated mode tells the
generator to keep each of its K modes of the requested class.

It reads z-motion (codes minus the neutral code), so it judges the smile, not the face. It is a
training aid only (not part of the shipped model) and independent of the evaluation's classifier
(``rt_smile.models.classifier``, on landmark motion).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class LatentClassifier(nn.Module):
    """z-motion (B, T, z) → class logits (B, n_classes)."""

    def __init__(self, z_dim: int, hidden: int = 64, n_classes: int = 2, scale: float = 1.0) -> None:
        super().__init__()
        self.gru = nn.GRU(z_dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, n_classes)
        #: Inputs are divided by this (the data's z-motion spread), so that training is well scaled.
        self.scale = float(scale)

    def forward(self, motion: Tensor) -> Tensor:
        _, h = self.gru(motion / self.scale)  # (1, B, hidden)
        return self.out(h[-1])  # type: ignore[no-any-return]


def fit_latent_classifier(
    codes: Tensor, labels: Tensor, steps: int = 300, batch: int = 256, seed: int = 0
) -> tuple[LatentClassifier, float]:
    """Train on data codes (N, L, z) with labels (N,); returns the frozen classifier and its
    accuracy on the training codes. Seeded; leaves torch's global random state untouched."""
    motion = codes[:, 1:] - codes[:, :1]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LatentClassifier(codes.shape[-1], scale=float(motion.std()))
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            idx = torch.randint(len(codes), (batch,), generator=gen)
            loss = F.cross_entropy(model(motion[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    model.eval().requires_grad_(False)
    with torch.no_grad():
        accuracy = float((model(motion).argmax(1) == labels).float().mean())
    return model, accuracy
