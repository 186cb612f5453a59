"""Losses: VAE objective, winner-takes-all, diversity hinge, energy score, smoothness, class and
neutral start."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Normal, kl_divergence

from rt_smile.train.losses import (
    best_of_k_loss,
    class_loss,
    diversity_loss,
    energy_score,
    jerk_loss,
    neutral_start_loss,
    pairwise_mode_distance,
    per_mode_mse,
    vae_loss,
)
from rt_smile.train.metrics import motion_distance


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- VAE


def test_vae_loss_parts() -> None:
    g = _gen()
    recon, target = torch.randn(4, 10, generator=g), torch.randn(4, 10, generator=g)
    mu, logvar = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    total, parts = vae_loss(recon, target, mu, logvar, beta=0.5)
    ref_kl = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1).mean()
    torch.testing.assert_close(parts["recon"], F.mse_loss(recon, target))
    torch.testing.assert_close(parts["kl"], ref_kl)
    torch.testing.assert_close(total, parts["recon"] + 0.5 * ref_kl)
    assert not parts["kl"].requires_grad


def test_vae_loss_is_zero_for_a_perfect_prior_match() -> None:
    x = torch.randn(3, 8)
    total, parts = vae_loss(x, x, torch.zeros(3, 4), torch.zeros(3, 4), beta=1.0)
    assert total.item() == 0.0 and parts["kl"].item() == 0.0


# --------------------------------------------------------------------------- best of K


def _modes_around(target: Tensor, offsets: list[float]) -> Tensor:
    """(B, K, T, D): mode k = target + offsets[k] everywhere."""
    return torch.stack([target + o for o in offsets], dim=1)


def test_best_of_k_picks_the_closest_mode_and_equals_its_mse() -> None:
    target = torch.randn(2, 6, 5, generator=_gen())
    pred = _modes_around(target, [0.5, -0.3, 0.1, 1.0])
    pred[1, 3] = target[1] + 0.05  # sample 1: mode 3 is closest
    loss, winner = best_of_k_loss(pred, target)
    assert winner.tolist() == [2, 3]
    torch.testing.assert_close(loss, torch.tensor((0.1**2 + 0.05**2) / 2))
    torch.testing.assert_close(loss, per_mode_mse(pred, target).min(1).values.mean())


def test_best_of_k_only_trains_the_winner_unless_relaxed() -> None:
    target = torch.randn(1, 4, 3, generator=_gen())
    pred = _modes_around(target, [0.2, 0.4, -0.6]).requires_grad_()
    loss, _ = best_of_k_loss(pred, target)
    (grad,) = torch.autograd.grad(loss, pred)
    assert grad[0, 0].abs().sum() > 0 and grad[0, 1:].abs().sum() == 0
    relaxed, _ = best_of_k_loss(pred, target, relax=0.1)
    (grad,) = torch.autograd.grad(relaxed, pred)
    assert (grad.abs().sum(dim=(2, 3)) > 0).all()
    torch.testing.assert_close(relaxed, loss + 0.1 * (0.4**2 + 0.6**2) / 2)


def test_best_of_k_mask_ignores_padded_frames() -> None:
    target = torch.randn(2, 5, 3, generator=_gen())
    pred = _modes_around(target, [0.1, 0.3])
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[:, 3:] = False
    padded = pred.clone()
    padded[:, :, 3:] = 100.0
    loss, winner = best_of_k_loss(padded, target, mask=mask)
    ref, ref_winner = best_of_k_loss(pred[:, :, :3], target[:, :3])
    torch.testing.assert_close(loss, ref)
    assert torch.equal(winner, ref_winner)


# --------------------------------------------------------------------------- diversity


def _spread(distance: float, k: int = 3, t: int = 8, d: int = 4) -> Tensor:
    """(1, K, T, D): mode k moves linearly to k·distance in every coordinate."""
    ramp = torch.linspace(0, 1, t)[:, None].expand(t, d)  # (T, D)
    return torch.stack([k_ * distance * ramp for k_ in range(k)])[None]


def test_pairwise_distance_is_the_rms_motion_difference() -> None:
    pred = _spread(1.0, k=2)
    ramp = torch.linspace(0, 1, 8)
    torch.testing.assert_close(pairwise_mode_distance(pred), ramp.square().mean().sqrt().reshape(1, 1))


def test_per_point_distance_matches_the_evaluation_metric() -> None:
    pred = torch.randn(1, 2, 6, 5, 2, generator=_gen(), dtype=torch.float64)
    m = pred - pred[:, :, :1]
    ref = motion_distance(m[0, 0].numpy(), m[0, 1].numpy())
    assert pairwise_mode_distance(pred, per_point=True).item() == pytest.approx(ref, rel=1e-6)
    loss = diversity_loss(pred, margin=ref + 0.5, per_point=True)
    assert loss.item() == pytest.approx(0.5, rel=1e-6)


def test_diversity_loss_decreases_as_modes_move_apart_and_vanishes_beyond_the_margin() -> None:
    losses = [diversity_loss(_spread(s), margin=1.0).item() for s in (0.0, 0.5, 1.0, 2.0)]
    assert losses[0] == pytest.approx(1.0, abs=1e-5)
    assert losses[0] > losses[1] > losses[2] > losses[3]
    assert diversity_loss(_spread(10.0), margin=1.0).item() == 0.0


def test_diversity_loss_ignores_constant_offsets() -> None:
    pred = _spread(0.0)
    pred = pred + torch.arange(3.0)[None, :, None, None]  # modes at different places, same motion
    assert diversity_loss(pred, margin=1.0).item() == pytest.approx(1.0, abs=1e-5)


def test_diversity_gradient_pushes_modes_apart() -> None:
    pred = (_spread(0.1) + 0.01 * torch.randn(1, 3, 8, 4, generator=_gen())).requires_grad_()
    (grad,) = torch.autograd.grad(diversity_loss(pred, margin=1.0), pred)
    moved = pred.detach() - 1.0 * grad
    assert pairwise_mode_distance(moved).min() > pairwise_mode_distance(pred.detach()).min()


def test_diversity_loss_with_one_mode_is_zero() -> None:
    assert diversity_loss(torch.randn(2, 1, 5, 3), margin=1.0).item() == 0.0


# --------------------------------------------------------------------------- energy score


def test_energy_score_is_distance_to_data_minus_half_the_spread() -> None:
    y = torch.zeros(1, 1, 2)  # (B, T, D)
    samples = torch.tensor([[[[3.0, 0.0]], [[0.0, 4.0]]]]) * 2**0.5  # (1, 2, 1, 2): rms 3 and 4
    # mean distance to y: (3 + 4) / 2; between the two: rms of (3, -4)·√2 = 5
    assert energy_score(samples, y).item() == pytest.approx(3.5 - 2.5, rel=1e-5)


def test_energy_score_prefers_samples_spread_like_the_data() -> None:
    """Proper: samples from the data's own distribution score lower (in expectation) than
    samples collapsed on its mean, or spread too wide."""
    g = _gen(1)
    target = torch.randn(4000, 3, 2, generator=g)  # data ~ N(0, 1), one draw per condition
    draws = torch.randn(4000, 6, 3, 2, generator=g)
    matched = energy_score(draws, target).item()
    assert matched < energy_score(draws * 0.0, target).item() - 0.05  # fixed at the mean
    assert matched < energy_score(draws * 0.5, target).item() - 0.02  # too narrow
    assert matched < energy_score(draws * 2.0, target).item() - 0.05  # too wide


def test_energy_score_gradient_spreads_collapsed_samples() -> None:
    """Samples bunched together far from the data: a descent step moves them apart."""
    samples = (1e-3 * torch.randn(8, 4, 3, 2, generator=_gen(2))).requires_grad_()
    energy_score(samples, 5.0 + torch.randn(8, 3, 2, generator=_gen(3))).backward()  # type: ignore[no-untyped-call]
    assert samples.grad is not None
    centred = samples.detach() - samples.detach().mean(1, keepdim=True)
    away = -(samples.grad * centred).sum()  # d(spread)/d(step size) along −grad, up to a factor 2
    assert away > 0.1 * samples.grad.norm() * centred.norm(), "descent separates the samples"


# --------------------------------------------------------------------------- smoothness, start, class


def test_jerk_loss_is_zero_for_quadratic_motion_and_positive_for_rattle() -> None:
    t = torch.linspace(0, 1, 10)[:, None]
    quad = (3 * t**2 - t + 2).expand(10, 4)
    assert jerk_loss(quad).item() == pytest.approx(0.0, abs=1e-10)
    rattle = quad + 0.1 * (-1.0) ** torch.arange(10.0)[:, None]
    assert jerk_loss(rattle).item() > 0.1
    assert jerk_loss(torch.randn(2, 3, 4)).item() == 0.0  # too short to have a jerk


def test_neutral_start_loss() -> None:
    x0 = torch.randn(2, 6)
    seq = torch.randn(2, 3, 5, 6)  # (B, K, T, D)
    seq[:, :, 0] = x0[:, None]
    assert neutral_start_loss(seq, x0).item() == 0.0
    assert neutral_start_loss(seq[:, 0], x0).item() == 0.0
    assert neutral_start_loss(seq, x0, frames=2).item() > 0.0


def test_class_loss_is_cross_entropy_over_samples_and_modes() -> None:
    g = _gen()
    logits = torch.randn(4, 3, 2, generator=g)
    labels = torch.tensor([0, 1, 1, 0])
    per_mode = [F.cross_entropy(logits[:, k], labels) for k in range(3)]
    torch.testing.assert_close(class_loss(logits, labels), torch.stack(per_mode).mean())
    torch.testing.assert_close(class_loss(logits[:, 0], labels), per_mode[0])


def test_free_bits_charge_each_dimension_at_least_its_allowance() -> None:
    from rt_smile.train.losses import kl_divergence as gaussian_kl
    from rt_smile.train.posterior import free_bits_kl

    mu = torch.tensor([[0.0, 3.0], [0.0, -3.0]])
    logvar = torch.zeros(2, 2)
    # dimension 0 carries nothing (charged 0.5), dimension 1 carries 4.5 nats (charged in full)
    assert free_bits_kl(mu, logvar, 0.5).item() == pytest.approx(0.5 + 4.5)
    assert free_bits_kl(mu, logvar, 0.0).item() == pytest.approx(gaussian_kl(mu, logvar).item())
