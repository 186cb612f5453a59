"""Multi-mode generator: shapes, unroll = loop of step, distinct modes, residual start, tracing."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from rt_smile.models.multimode import MultiModeConfig, MultiModeGenerator
from rt_smile.models.vae import LandmarkVAE
from rt_smile.train.losses import diversity_loss, pairwise_mode_distance


@pytest.fixture(params=[1, 2], ids=["1layer", "2layers"])
def gen(request: pytest.FixtureRequest) -> MultiModeGenerator:
    torch.manual_seed(0)
    return MultiModeGenerator(MultiModeConfig(modes=4, hidden=64, layers=request.param)).eval()


def _inputs(b: int = 3, t: int = 12) -> tuple[Tensor, Tensor]:
    """(z_seq (b, t, 32), z0 (b, 32)): a smooth excursion from z0 and back."""
    g = torch.Generator().manual_seed(1)
    z0 = torch.randn(b, 32, generator=g)
    bump = torch.sin(torch.linspace(0, torch.pi, t + 1)[1:])  # (t,)
    direction = torch.randn(b, 1, 32, generator=g)
    return z0[:, None] + bump[None, :, None] * direction, z0


def test_shapes(gen: MultiModeGenerator) -> None:
    z_seq, z0 = _inputs()
    h, c, z0k = gen.initial_state(z0)
    layers = gen.config.layers
    assert h.shape == c.shape == (layers, 12, 64) and z0k.shape == (12, 32)
    z_modes, (h1, c1, _) = gen.step(z_seq[:, 0], (h, c, z0k))
    assert z_modes.shape == (3, 4, 32) and h1.shape == c1.shape == (layers, 12, 64)
    assert gen.unroll(z_seq, z0).shape == (3, 4, 12, 32)


def test_unroll_is_a_loop_of_step(gen: MultiModeGenerator) -> None:
    z_seq, z0 = _inputs()
    with torch.no_grad():
        out = gen.unroll(z_seq, z0)
        state = gen.initial_state(z0)
        for t in range(z_seq.shape[1]):
            z_modes, state = gen.step(z_seq[:, t], state)
            assert torch.equal(out[:, :, t], z_modes)


@pytest.mark.parametrize("cond_dims", [(0, 0), (5, 3)], ids=["plain", "noise+style"])
def test_step_is_the_lstm_on_its_documented_input(cond_dims: tuple[int, int]) -> None:
    """Each step is the LSTM on the documented input of every mode, [z_t, z_t - z0, m_k, noise_k,
    style_k] (a guard for any cheaper formulation of the step)."""
    torch.manual_seed(0)
    noise_dim, style_dim = cond_dims
    cfg = MultiModeConfig(modes=3, hidden=32, layers=2, noise_dim=noise_dim, style_dim=style_dim)
    gen = MultiModeGenerator(cfg).eval()
    with torch.no_grad():  # a non-zero bias and recurrent weight, so every block matters
        for lin in gen.lstm.gates:
            assert isinstance(lin, nn.Linear)
            lin.bias.normal_()
    z_seq, z0 = _inputs(b=2, t=5)
    noise = torch.randn(2, 3, noise_dim + style_dim) if noise_dim else None
    with torch.no_grad():
        state = gen.initial_state(z0, noise)
        ref = state
        for t in range(z_seq.shape[1]):
            z_modes, state = gen.step(z_seq[:, t], state)
            h, c, consts = ref
            ztk = z_seq[:, t].repeat_interleave(3, dim=0)
            parts = [ztk, ztk - consts[:, :32], gen.mode_embedding.repeat(2, 1), consts[:, 32:]]
            top, (h, c) = gen.lstm(torch.cat(parts, dim=-1), (h, c))
            ref = (h, c, consts)
            expected = (ztk + gen.head(top)).unflatten(0, (2, 3))
            torch.testing.assert_close(z_modes, expected, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(state[0], h, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(state[1], c, rtol=1e-5, atol=1e-5)


def test_untrained_modes_differ_and_stay_near_the_input(gen: MultiModeGenerator) -> None:
    z_seq, z0 = _inputs()
    with torch.no_grad():
        out = gen.unroll(z_seq, z0)  # (B, K, T, z)
    offset = (out - z_seq[:, None]).abs().mean()
    assert 0 < offset < 0.1 * z_seq.abs().mean()
    dist = pairwise_mode_distance(out)  # (B, 6)
    assert dist.min() > 1e-3


def test_samples_are_independent_and_modes_are_shared(gen: MultiModeGenerator) -> None:
    z_seq, z0 = _inputs()
    with torch.no_grad():
        whole = gen.unroll(z_seq, z0)
        single = gen.unroll(z_seq[2:], z0[2:])
        twice = gen.unroll(z_seq[:1].expand(2, -1, -1), z0[:1].expand(2, -1))
    torch.testing.assert_close(whole[2:], single)
    torch.testing.assert_close(twice[0], twice[1])  # mode k is the same function for every sample


def test_decodes_to_k_landmark_sequences(gen: MultiModeGenerator) -> None:
    z_seq, z0 = _inputs(b=2, t=5)
    vae = LandmarkVAE().eval()
    with torch.no_grad():
        z = gen.unroll(z_seq, z0)  # (2, 4, 5, 32)
        pts = vae.decode(z.flatten(0, 2)).reshape(*z.shape[:3], 468, 2)
    assert pts.shape == (2, 4, 5, 468, 2)


def test_gradients_reach_every_parameter(gen: MultiModeGenerator) -> None:
    z_seq, z0 = _inputs()
    gen.unroll(z_seq, z0).square().mean().backward()  # type: ignore[no-untyped-call]
    for name, p in gen.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_diversity_loss_separates_the_modes() -> None:
    torch.manual_seed(0)
    gen = MultiModeGenerator(MultiModeConfig(hidden=64))
    z_seq, z0 = _inputs()
    opt = torch.optim.Adam(gen.parameters(), lr=3e-3)
    start = pairwise_mode_distance(gen.unroll(z_seq, z0)).mean().item()
    for _ in range(30):
        loss = diversity_loss(gen.unroll(z_seq, z0), margin=1.0)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    assert pairwise_mode_distance(gen.unroll(z_seq, z0)).mean().item() > 5 * start


class _Step(nn.Module):
    """step with explicit state in and out, as exported."""

    def __init__(self, gen: MultiModeGenerator) -> None:
        super().__init__()
        self.gen = gen

    def forward(self, z: Tensor, h: Tensor, c: Tensor, z0k: Tensor) -> tuple[Tensor, ...]:
        z_modes, (h, c, z0k) = self.gen.step(z, (h, c, z0k))
        return z_modes, h, c, z0k


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_traced_step_matches_eager(gen: MultiModeGenerator) -> None:
    z_seq, z0 = _inputs()
    step = _Step(gen)
    with torch.no_grad():
        state = gen.initial_state(z0)
        traced = torch.jit.trace(step, (z_seq[:, 0], *state))  # type: ignore[no-untyped-call]
        s_e, s_t = state, state
        for t in range(z_seq.shape[1]):
            out_e, *s_e = step(z_seq[:, t], *s_e)
            out_t, *s_t = traced(z_seq[:, t], *s_t)
            torch.testing.assert_close(out_t, out_e)
    torch.testing.assert_close(s_t, s_e)
