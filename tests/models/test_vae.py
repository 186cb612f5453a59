"""Landmark VAE: shapes, normalisation, sampling, learning a small synthetic set, tracing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rt_smile.face.align import canonical_template
from rt_smile.models.vae import LandmarkVAE, VAEConfig
from rt_smile.train.losses import vae_loss


def _smooth_shapes(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 468, 2) canonical template + random smooth (quadratic) deformation fields + small noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.from_numpy(canonical_template()).float()  # (468, 2)
    x, y = t[:, 0], t[:, 1]
    basis = torch.stack([torch.ones_like(x), x, y, x * y, x * x, y * y], 1)  # (468, 6)
    coef = 0.05 * torch.randn(n, 6, 2, generator=g)
    return t + torch.einsum("pb,nbc->npc", basis, coef) + 0.002 * torch.randn(n, 468, 2, generator=g)


@pytest.fixture
def vae() -> LandmarkVAE:
    torch.manual_seed(0)
    return LandmarkVAE(VAEConfig(hidden=(128, 64), z_dim=8))


def test_shapes(vae: LandmarkVAE) -> None:
    pts = _smooth_shapes(5)
    mu, logvar = vae.encode(pts)
    assert mu.shape == logvar.shape == (5, 8)
    assert vae.decode(mu).shape == (5, 468, 2)
    recon, mu2, logvar2 = vae(pts)
    assert recon.shape == (5, 468, 2) and mu2.shape == logvar2.shape == (5, 8)


def test_default_config_shapes() -> None:
    vae = LandmarkVAE()
    assert vae.mean.shape == vae.scale.shape == (936,)
    assert vae.encode(_smooth_shapes(2))[0].shape == (2, 32)
    assert vae.decode(torch.zeros(3, 32)).shape == (3, 468, 2)


def test_untrained_decoder_returns_the_mean_shape(vae: LandmarkVAE) -> None:
    pts = _smooth_shapes(16)
    vae.set_normalization(pts.mean(0), pts.std(0))
    out = vae.decode(torch.randn(4, 8))
    torch.testing.assert_close(out, pts.mean(0).expand(4, -1, -1))


def test_normalization_round_trip_and_floor(vae: LandmarkVAE) -> None:
    pts = _smooth_shapes(32)
    std = pts.std(0)
    std[0, 0] = 0.0  # a coordinate that never varies
    vae.set_normalization(pts.mean(0).flatten(), std)
    assert vae.scale[0] == pytest.approx(vae.config.min_scale)
    coords = vae.normalize(pts)
    assert coords.shape == (32, 936)
    assert coords[:, 1:].mean().abs() < 1e-4
    assert torch.allclose(coords[:, 1:].std(0), torch.ones(935), atol=1e-3)
    torch.testing.assert_close(vae.denormalize(coords), pts)


def test_training_mode_samples_eval_mode_uses_the_mean(vae: LandmarkVAE) -> None:
    pts = _smooth_shapes(4)
    with torch.no_grad():
        vae.to_coords.weight.normal_()  # make the decoder depend on z
        vae.train()
        a, mu, _ = vae(pts)
        b, _, _ = vae(pts)
        vae.eval()
        c, _, _ = vae(pts)
        d, _, _ = vae(pts)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(c, d)
    torch.testing.assert_close(c, vae.decode(mu))


@pytest.mark.parametrize("decoder", ["mlp", "linear"])
def test_learns_a_small_synthetic_set(decoder: str) -> None:
    torch.manual_seed(0)
    pts = _smooth_shapes(64)
    vae = LandmarkVAE(VAEConfig(z_dim=16, decoder=decoder))
    vae.set_normalization(pts.mean(0), pts.std(0))
    before = {n: p.detach().clone() for n, p in vae.named_parameters()}
    opt = torch.optim.Adam(vae.parameters(), lr=2e-3)
    for _ in range(200):
        recon, mu, logvar = vae(pts)
        loss, _ = vae_loss(vae.normalize(recon), vae.normalize(pts), mu, logvar, beta=1e-3)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    assert all(not torch.equal(before[n], p) for n, p in vae.named_parameters()), (
        "a parameter got no gradient"
    )
    vae.eval()
    with torch.no_grad():
        recon, _, _ = vae(pts)
    data_var = (pts - pts.mean(0)).square().mean()
    err = (recon - pts).square().mean()
    assert err < 0.05 * data_var
    assert (recon - pts).norm(dim=-1).mean() < 0.02  # mean point error, IOD


def test_a_linear_decoder_maps_straight_code_paths_to_straight_landmark_paths() -> None:
    torch.manual_seed(0)
    linear = LandmarkVAE(VAEConfig(z_dim=8, decoder="linear"))
    mlp = LandmarkVAE(VAEConfig(z_dim=8))
    a, b = torch.randn(1, 8), torch.randn(1, 8)
    for vae in (linear, mlp):
        with torch.no_grad():
            vae.to_coords.weight.normal_()
            vae.to_coords.bias.normal_()
    pairs = [("linear", linear), ("mlp", mlp)]
    midpoint = {n: v.decode((a + b) / 2) - (v.decode(a) + v.decode(b)) / 2 for n, v in pairs}
    assert midpoint["linear"].abs().max() < 1e-4
    assert midpoint["mlp"].abs().max() > 1e-2, "an MLP decoder bends the path"
    assert sum(p.numel() for p in linear.to_coords.parameters()) == 9 * 936


def test_an_unknown_decoder_is_refused() -> None:
    with pytest.raises(ValueError, match="decoder must be one of"):
        VAEConfig(decoder="conv")


def test_displacement_is_zero_at_the_neutral_code(vae: LandmarkVAE) -> None:
    with torch.no_grad():
        vae.to_coords.weight.normal_()
    z0, z = torch.randn(3, 8), torch.randn(3, 8)
    assert torch.equal(vae.displacement(z0, z0), torch.zeros(3, 468, 2))
    torch.testing.assert_close(vae.displacement(z, z0), vae.decode(z) - vae.decode(z0))
    assert vae.displacement(z, z0).abs().mean() > 0


class _Decode(nn.Module):
    def __init__(self, vae: LandmarkVAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_decode_traces(vae: LandmarkVAE) -> None:
    decode = _Decode(vae.eval())
    with torch.no_grad():
        vae.to_coords.weight.normal_()
        traced = torch.jit.trace(decode, (torch.randn(6, 8),))  # type: ignore[no-untyped-call]
        z = torch.randn(6, 8)
        torch.testing.assert_close(traced(z), decode(z))
