"""Exponential moving average of a model's parameters over its training steps (Polyak
averaging): the weights a run saves are the average of its last few hundred steps rather than
the last step's, which a constant learning rate leaves jittering around the optimum.

The average only watches: training runs on the live parameters, so a run with it follows the
same trajectory as one without, to the last bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class WeightAverage:
    """``shadow ← decay · shadow + (1 − decay) · param`` after every ``update``, per parameter
    of ``modules`` (in their ``parameters()`` order)."""

    def __init__(self, modules: Sequence[nn.Module], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"an average's decay must lie in (0, 1), not {decay}")
        self.decay = decay
        self._params = [p for m in modules for p in m.parameters()]
        self.shadow = [p.detach().clone() for p in self._params]

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the current parameters."""
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self._params], 1.0 - self.decay)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Write the average into the modules' parameters."""
        for shadow, param in zip(self.shadow, self._params, strict=True):
            param.copy_(shadow)

    def state_dict(self) -> list[Tensor]:
        return [s.clone() for s in self.shadow]

    def load_state_dict(self, shadow: list[Tensor]) -> None:
        if len(shadow) != len(self.shadow) or any(
            a.shape != b.shape for a, b in zip(shadow, self.shadow, strict=True)
        ):
            raise ValueError("the saved weight average does not match this model's parameters")
        self.shadow = [s.clone() for s in shadow]
