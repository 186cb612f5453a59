"""Smile-class classifier on landmark motion: the evaluation's independent judge.

A small temporal CNN over the motion of the lip and eye points (landmarks minus frame 0, in
inter-ocular distances), padded or cut to a fixed length. Its penultimate layer is the feature
space of the Fréchet distance used as the realism measure.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class ClassifierConfig:
    """Sequence classifier."""

    #: Number of motion points (lips and eyes) — 2 channels each.
    n_points: int = 72
    #: Frames the input is padded (last frame held) or cut to: 5 s at 30 fps.
    length: int = 150
    #: Number of classes.
    n_classes: int = 2
    #: Width of the convolutions.
    width: int = 64
    #: Size of the feature vector before the class layer.
    features: int = 32
    #: Motion is multiplied by this before the first layer (IOD motions are ~0.1).
    input_scale: float = 10.0


class SequenceClassifier(nn.Module):
    """motion (B, T, P, 2) → logits (B, n_classes); ``features`` gives (B, F)."""

    def __init__(self, config: ClassifierConfig = ClassifierConfig()) -> None:
        super().__init__()
        self.config = config
        c, w = 2 * config.n_points, config.width
        self.conv = nn.Sequential(
            nn.Conv1d(c, w, 5, padding=2),
            nn.GELU(),
            nn.Conv1d(w, w, 5, stride=2, padding=2),
            nn.GELU(),
            nn.Conv1d(w, w, 5, stride=2, padding=2),
            nn.GELU(),
        )
        self.embed = nn.Sequential(nn.Linear(2 * w, config.features), nn.GELU())
        self.head = nn.Linear(config.features, config.n_classes)

    def features(self, m: Tensor) -> Tensor:
        """(B, T, P, 2) motion → (B, F) features."""
        x = m.flatten(2).transpose(1, 2) * self.config.input_scale  # (B, 2P, T)
        h = self.conv(x)  # (B, W, T/4)
        pooled = torch.cat([h.mean(-1), h.amax(-1)], dim=1)  # (B, 2W)
        return self.embed(pooled)

    def forward(self, m: Tensor) -> Tensor:
        return self.head(self.features(m))
