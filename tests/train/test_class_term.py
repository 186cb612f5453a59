"""The generator's class term: a latent-motion classifier fit on data codes, frozen, whose
cross-entropy tells every mode to be of its class."""

from __future__ import annotations

import torch

from rt_smile.train.class_term import fit_latent_classifier
from rt_smile.train.losses import class_loss


def _codes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Toy codes (n, 20, 4): class 1 moves fast and far along dim 0, class 0 slowly and less."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    t = torch.linspace(0, 1, 20)
    speed = torch.where(labels == 1, 8.0, 2.0)[:, None]
    amp = torch.where(labels == 1, 1.0, 0.5)[:, None]
    codes = torch.randn(n, 1, 4, generator=g).expand(-1, 20, -1).clone()  # a per-sample "face"
    codes[..., 0] += amp * torch.tanh(speed * t)
    return codes + 0.01 * torch.randn(codes.shape, generator=g), labels


def test_latent_classifier_learns_the_classes_and_is_frozen() -> None:
    codes, labels = _codes(256, 0)
    judge, accuracy = fit_latent_classifier(codes, labels, steps=150, batch=64, seed=0)
    assert accuracy > 0.95
    assert not any(p.requires_grad for p in judge.parameters())
    test, test_labels = _codes(64, 1)
    motion = test[:, 1:] - test[:, :1]
    assert (judge(motion).argmax(1) == test_labels).float().mean() > 0.9


def test_class_term_pushes_a_wrong_mode_towards_its_class() -> None:
    codes, labels = _codes(256, 0)
    judge, _ = fit_latent_classifier(codes, labels, steps=150, batch=64, seed=0)
    slow = codes[labels == 0][:1]  # a spontaneous-like motion, asked to be posed
    modes = slow[:, None].repeat(1, 2, 1, 1).requires_grad_(True)  # (1, K=2, T, z)

    def term(m: torch.Tensor) -> torch.Tensor:
        motion = (m - slow[:, None, :1]).flatten(0, 1)[:, 1:]
        return class_loss(judge(motion).reshape(1, 2, -1), torch.tensor([1]))

    loss = term(modes)
    loss.backward()  # type: ignore[no-untyped-call]
    assert modes.grad is not None and float(modes.grad.abs().sum()) > 0.0
    assert float(term(modes.detach() - 0.5 * modes.grad / modes.grad.norm())) < loss.item()


def test_same_seed_same_judge() -> None:
    codes, labels = _codes(64, 0)
    state = torch.get_rng_state()
    a, _ = fit_latent_classifier(codes, labels, steps=20, batch=32, seed=3)
    assert torch.equal(state, torch.get_rng_state()), "the global random state is untouched"
    b, _ = fit_latent_classifier(codes, labels, steps=20, batch=32, seed=3)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
