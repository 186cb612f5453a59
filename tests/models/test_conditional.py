"""Conditional LSTM: shapes, unroll = loop of step, conditioning on class and noise, tracing."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from rt_smile.models.conditional import ConditionalConfig, ConditionalLSTM, LSTMState


@pytest.fixture(params=[1, 2], ids=["1layer", "2layers"])
def model(request: pytest.FixtureRequest) -> ConditionalLSTM:
    torch.manual_seed(0)
    return ConditionalLSTM(ConditionalConfig(hidden=64, layers=request.param)).eval()


def _inputs(b: int = 3, t: int = 10) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    z0 = torch.randn(b, 32, generator=g)
    cls = torch.arange(b) % 2
    noise = torch.randn(b, t, 16, generator=g)
    return z0, cls, noise


def test_shapes(model: ConditionalLSTM) -> None:
    z0, cls, noise = _inputs()
    h, c = model.initial_state(z0, cls)
    layers = model.config.layers
    assert h.shape == c.shape == (layers, 3, 64)
    z1, (h1, c1) = model.step(z0, cls, noise[:, 0], (h, c))
    assert z1.shape == (3, 32) and h1.shape == c1.shape == (layers, 3, 64)
    assert model.unroll(z0, cls, noise).shape == (3, 10, 32)


def test_unroll_is_a_loop_of_step(model: ConditionalLSTM) -> None:
    z0, cls, noise = _inputs()
    with torch.no_grad():
        seq = model.unroll(z0, cls, noise)
        state = model.initial_state(z0, cls)
        z = z0
        for t in range(noise.shape[1]):
            z, state = model.step(z, cls, noise[:, t], state)
            assert torch.equal(seq[:, t], z)


def test_teacher_forcing_feeds_the_true_previous_code(model: ConditionalLSTM) -> None:
    z0, cls, noise = _inputs()
    teacher = torch.randn(3, 10, 32)
    with torch.no_grad():
        seq = model.unroll(z0, cls, noise, teacher=teacher)
        state = model.initial_state(z0, cls)
        prev = torch.cat([z0[:, None], teacher[:, :-1]], dim=1)
        for t in range(10):
            z, state = model.step(prev[:, t], cls, noise[:, t], state)
            assert torch.equal(seq[:, t], z)
        assert not torch.allclose(seq, model.unroll(z0, cls, noise))


def test_untrained_steps_stay_near_z0(model: ConditionalLSTM) -> None:
    z0, cls, noise = _inputs()
    with torch.no_grad():
        seq = model.unroll(z0, cls, noise)
    steps = torch.diff(torch.cat([z0[:, None], seq], 1), dim=1)
    assert 0 < steps.abs().mean() < 0.1 * z0.abs().mean()


def test_output_depends_on_class_and_noise(model: ConditionalLSTM) -> None:
    z0, _, noise = _inputs()
    spont = torch.zeros(3, dtype=torch.long)
    with torch.no_grad():
        base = model.unroll(z0, spont, noise)
        posed = model.unroll(z0, spont + 1, noise)
        other_noise = model.unroll(z0, spont, torch.randn_like(noise))
        again = model.unroll(z0, spont, noise)
    torch.testing.assert_close(base, again)
    assert (base - posed).abs().mean() > 1e-3
    assert (base - other_noise).abs().mean() > 1e-3


def test_samples_are_independent_in_the_batch(model: ConditionalLSTM) -> None:
    z0, cls, noise = _inputs()
    with torch.no_grad():
        whole = model.unroll(z0, cls, noise)
        single = model.unroll(z0[1:2], cls[1:2], noise[1:2])
    torch.testing.assert_close(whole[1:2], single)


def test_gradients_reach_every_parameter(model: ConditionalLSTM) -> None:
    z0, cls, noise = _inputs()
    model.unroll(z0, cls, noise).square().mean().backward()  # type: ignore[no-untyped-call]
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_sample_noise_shape_and_seed(model: ConditionalLSTM) -> None:
    a = model.sample_noise(2, 5, torch.Generator().manual_seed(3))
    b = model.sample_noise(2, 5, torch.Generator().manual_seed(3))
    assert a.shape == (2, 5, 16) and torch.equal(a, b)


class _Step(nn.Module):
    """step with explicit state in and out, as exported."""

    def __init__(self, model: ConditionalLSTM) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: Tensor, cls: Tensor, noise: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, ...]:
        z, (h, c) = self.model.step(z, cls, noise, (h, c))
        return z, h, c


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_traced_step_matches_eager(model: ConditionalLSTM) -> None:
    z0, cls, noise = _inputs()
    step = _Step(model)
    with torch.no_grad():
        state: LSTMState = model.initial_state(z0, cls)
        traced = torch.jit.trace(step, (z0, cls, noise[:, 0], *state))  # type: ignore[no-untyped-call]
        z_e, z_t = z0, z0
        s_e, s_t = state, state
        for t in range(noise.shape[1]):  # roll both forward on fresh inputs, state fed back
            z_e, *rest_e = step(z_e, cls.flip(0), noise[:, t], *s_e)
            z_t, *rest_t = traced(z_t, cls.flip(0), noise[:, t], *s_t)
            s_e, s_t = (rest_e[0], rest_e[1]), (rest_t[0], rest_t[1])
    torch.testing.assert_close(z_t, z_e)
    torch.testing.assert_close(s_t, s_e)


def test_held_noise_is_one_draw_per_sequence() -> None:
    held = ConditionalLSTM(ConditionalConfig(hidden=32, hold_noise=True))
    noise = held.sample_noise(3, 7, generator=torch.Generator().manual_seed(0))
    assert noise.shape == (3, 7, 16) and noise.is_contiguous()
    assert torch.equal(noise, noise[:, :1].expand(-1, 7, -1)), "the same vector at every step"
    assert not torch.allclose(noise[0, 0], noise[1, 0]), "each sequence its own draw"
    fresh = ConditionalLSTM(ConditionalConfig(hidden=32)).sample_noise(1, 7)
    assert not torch.allclose(fresh[0, 0], fresh[0, 1]), "without holding, a new draw each step"
