"""CMM-Net as one module: anchors (a face's dynamics start from its nearest training face's code)
and the per-step API."""

from __future__ import annotations

import pytest
import torch

from rt_smile.models.cmmnet import CMMNet, CMMNetConfig


def _faces(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(1, 468, 2, generator=g)
    return base + 0.05 * torch.randn(n, 468, 2, generator=g)


def test_without_anchors_a_face_keeps_its_own_code() -> None:
    model = CMMNet().eval()
    faces = _faces(3, 0)
    with torch.no_grad():
        own, _ = model.vae.encode(faces)
        assert torch.equal(model.neutral_code(faces), own)


def test_anchors_replace_a_code_by_the_nearest_training_code() -> None:
    torch.manual_seed(0)
    model = CMMNet(CMMNetConfig(anchors=6)).eval()
    with torch.no_grad():
        codes, _ = model.vae.encode(_faces(6, 1))
        model.set_anchors(codes)
        # a face a little off training face 4: its own code differs, it gets anchor 4's code
        near = _faces(6, 1)[4:5] + 0.002 * torch.randn(1, 468, 2, generator=torch.Generator().manual_seed(9))
        own, _ = model.vae.encode(near)
        assert not torch.allclose(own, codes[4:5])
        assert torch.allclose(model.neutral_code(near), codes[4:5])
        state = model.start(near, torch.tensor([1]))
        assert torch.allclose(state.z0, codes[4:5])
        out = model.generate(_faces(1, 7), torch.tensor([0]), torch.randn(1, 5, 16))
    assert torch.allclose(out[:, :, 0], _faces(1, 7)[:, None].expand(-1, model.modes, -1, -1))


def test_set_anchors_checks_the_shape() -> None:
    model = CMMNet(CMMNetConfig(anchors=3))
    try:
        model.set_anchors(torch.zeros(2, 32))
    except ValueError as exc:
        assert "anchor codes" in str(exc)
    else:
        raise AssertionError("a wrong number of anchors must be refused")


def test_mode_noise_makes_each_mode_an_independent_draw() -> None:
    from rt_smile.models.multimode import MultiModeConfig

    torch.manual_seed(0)
    model = CMMNet(CMMNetConfig(multimode=MultiModeConfig(noise_dim=4))).eval()
    g = torch.Generator().manual_seed(5)
    noise, unit = model.sample_noise(2, 6, generator=g)
    assert unit.shape == (2, model.modes, 5)
    mode_noise = model.multimode.prior_noise(unit, torch.tensor([0, 1]))  # (2, K, 4)
    z0, z_seq = torch.randn(2, 32, generator=g), torch.randn(2, 6, 32, generator=g)
    with torch.no_grad():
        a = model.multimode.unroll(z_seq, z0, mode_noise)  # (2, K, 6, z)
        assert torch.equal(a, model.multimode.unroll(z_seq, z0, mode_noise)), "deterministic"
        other = mode_noise.clone()
        other[:, 1] = torch.randn(2, 4, generator=g)
        b = model.multimode.unroll(z_seq, z0, other)
    assert torch.equal(a[:, 0], b[:, 0]), "a mode depends on its own noise only"
    assert (a[:, 1] - b[:, 1]).abs().max() > 1e-4, "other noise, another smile"
    out = model.generate(_faces(2, 3), torch.tensor([0, 1]), noise, unit)
    assert out.shape[:3] == (2, model.modes, 6)
    try:
        model.start(_faces(2, 3), torch.tensor([0, 1]))
    except ValueError as exc:
        assert "needs mode noise" in str(exc)
    else:
        raise AssertionError("a generator with mode noise must refuse to start without it")


def test_without_mode_noise_no_random_numbers_are_drawn_for_the_modes() -> None:
    model = CMMNet()
    g = torch.Generator().manual_seed(1)
    _, mode_noise = model.sample_noise(3, 4, generator=g)
    assert mode_noise.shape == (3, model.modes, 0)
    after = torch.randn(1, generator=g)
    h = torch.Generator().manual_seed(1)
    model.conditional.sample_noise(3, 4, generator=h)
    assert torch.equal(after, torch.randn(1, generator=h)), "old weights keep their seeded output"


def test_mode_noise_is_drawn_from_the_class_prior() -> None:
    from rt_smile.models.multimode import MultiModeConfig

    torch.manual_seed(0)
    model = CMMNet(CMMNetConfig(multimode=MultiModeConfig(noise_dim=3, prior_components=2))).eval()
    unit = model.multimode.sample_noise(2, generator=torch.Generator().manual_seed(2))
    assert unit.shape == (2, model.modes, 4), "d normal draws and one that picks the component"
    cls, faces = torch.tensor([0, 1]), _faces(2, 3)

    def held(unit: torch.Tensor) -> torch.Tensor:
        return model.start(faces, cls, unit).multimode[2][:, 32:].reshape(2, model.modes, 3)

    assert torch.equal(held(unit), unit[..., :3]), "before a prior is set, the standard normal"
    mu = torch.tensor([[[0.0] * 3, [1.0] * 3], [[2.0, -1.0, 0.5], [-3.0, 0.0, 0.0]]])  # (2, 2, 3)
    sigma = torch.full((2, 2, 3), 0.5)
    model.multimode.set_noise_prior(mu, sigma)
    unit[1, :, -1] = torch.tensor([-2.0, -0.1, 0.1, 2.0])  # class 1: components 0, 0, 1, 1
    got = held(unit)
    expected = mu[1, [0, 0, 1, 1]] + 0.5 * unit[1, :, :3]
    torch.testing.assert_close(got[1], expected)
    first = (unit[0, :, -1] > 0).long()
    torch.testing.assert_close(got[0], mu[0, first] + 0.5 * unit[0, :, :3])
    with pytest.raises(ValueError, match="expected prior means and spreads of shape"):
        model.multimode.set_noise_prior(mu[:1], sigma)
    with pytest.raises(ValueError, match="expected standard normal mode noise of shape"):
        model.start(faces, cls, unit[..., :3])


def test_a_rows_noise_does_not_depend_on_the_rows_after_it() -> None:
    from rt_smile.models.multimode import MultiModeConfig

    model = CMMNet(CMMNetConfig(multimode=MultiModeConfig(noise_dim=3)))
    one = model.sample_noise(1, 5, generator=torch.Generator().manual_seed(4))
    three = model.sample_noise(3, 5, generator=torch.Generator().manual_seed(4))
    assert three[0].shape == (3, 5, 16) and three[1].shape == (3, model.modes, 4)
    assert torch.equal(three[0][:1], one[0]) and torch.equal(three[1][:1], one[1])
    assert not torch.equal(three[1][1], three[1][0])


def test_the_class_counts_of_the_parts_must_agree() -> None:
    from rt_smile.models.conditional import ConditionalConfig
    from rt_smile.models.multimode import MultiModeConfig

    with pytest.raises(ValueError, match="one class count"):
        CMMNetConfig(conditional=ConditionalConfig(n_classes=3), multimode=MultiModeConfig(n_classes=2))


def test_a_mode_style_is_drawn_with_its_prior_component_and_held_in_the_state() -> None:
    from rt_smile.models.multimode import MultiModeConfig

    torch.manual_seed(0)
    config = MultiModeConfig(noise_dim=3, prior_components=2, style_dim=2)
    model = CMMNet(CMMNetConfig(multimode=config)).eval()
    mu = torch.zeros(2, 2, 3)
    style = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[-1.0, -2.0], [-3.0, -4.0]]])  # (2, 2, 2)
    model.multimode.set_noise_prior(mu, torch.ones(2, 2, 3), style)
    unit = model.multimode.sample_noise(2, generator=torch.Generator().manual_seed(2))
    unit[:, :, -1] = torch.tensor([-2.0, -0.1, 0.1, 2.0])  # components 0, 0, 1, 1
    held = model.start(_faces(2, 3), torch.tensor([0, 1]), unit).multimode[2][:, 32:]  # (2·K, 5)
    held = held.reshape(2, model.modes, 5)
    torch.testing.assert_close(held[..., :3], unit[..., :3])  # the noise, as before
    torch.testing.assert_close(held[0, :, 3:], style[0, [0, 0, 1, 1]])
    torch.testing.assert_close(held[1, :, 3:], style[1, [0, 0, 1, 1]])
    noise = model.conditional.sample_noise(2, 5)
    out = model.generate(_faces(2, 3), torch.tensor([0, 1]), noise, unit)
    assert out.shape == (2, model.modes, 5, 468, 2) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="expected prior styles of shape"):
        model.multimode.set_noise_prior(mu, torch.ones(2, 2, 3))
    with pytest.raises(ValueError, match="needs mode noise"):
        MultiModeConfig(noise_dim=0, style_dim=2)
