"""rt-smile train's Trainer on a tiny configuration: both stages, class term, anchors, weights
that load, and a resumed run that does not train again."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rt_smile.face.align import canonical_template
from rt_smile.io.checkpoint import load_cmmnet, read_info
from rt_smile.train.trainer import COSINE_FLOOR, TrainConfig, Trainer, generator_lr, synth_data

TINY = TrainConfig(
    n_sequences=40, n_identities=10, length=40, vae_steps=30, vae_batch=64, gen_steps=6,
    gen_batch=8, w_class=0.05, class_steps=10, log_every=2, checkpoint_every=3,
)  # fmt: skip


def test_tiny_training_writes_loadable_weights_with_anchors(tmp_path: Path) -> None:
    trainer = Trainer(TINY, synth_data(TINY), tmp_path / "run", command="test")
    weights = trainer.run(progress=False)
    model = load_cmmnet(weights)
    assert model.config.anchors == len(trainer.train_set)
    assert model.anchor_codes.abs().sum() > 0, "the training faces' codes are kept"
    assert read_info(weights)["train_config"]["w_class"] == 0.05
    logged = [r for r in trainer.log if r["stage"] == "generator"]
    assert logged and all("class" in r for r in logged)
    assert (tmp_path / "run" / "train_loss.png").is_file()

    again = Trainer(TINY, synth_data(TINY), tmp_path / "run")
    assert again.try_resume() and again.stage == "done"
    before = {k: v.clone() for k, v in again.model.state_dict().items()}
    again.run(progress=False)
    for k, v in again.model.state_dict().items():
        if not k.startswith("anchor_"):
            assert torch.equal(v, before[k]), f"{k} changed: a finished run is not trained again"


def test_the_lstm_width_reaches_both_recurrent_modules_and_the_weights(tmp_path: Path) -> None:
    config = replace(TINY, hidden=24, w_class=0.0, gen_steps=2)
    weights = Trainer(config, synth_data(config), tmp_path / "run").run(progress=False)
    model = load_cmmnet(weights)
    assert model.config.conditional.hidden == model.config.multimode.hidden == 24
    assert model.multimode.lstm.hidden == model.conditional.lstm.hidden == 24
    assert model.conditional.init_state.proj.out_features == 2 * 24


def test_noise_candidates_train_on_the_nearest_draw(tmp_path: Path) -> None:
    config = replace(TINY, w_class=0.0, noise_candidates=6)
    trainer = Trainer(config, synth_data(config), tmp_path / "run")
    assert trainer.model.conditional.config.hold_noise, "candidates are whole-sequence draws"
    cond = trainer.model.conditional
    g = torch.Generator().manual_seed(3)
    z0, cls = torch.randn(4, cond.config.z_dim, generator=g), torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        target = cond.unroll(z0, cls, cond.sample_noise(4, 12, generator=g)) + 0.01
    state = trainer.rng.get_state()
    picked = trainer._nearest_noise(z0, cls, target)
    trainer.rng.set_state(state)  # the same six candidates per sequence, to score each one
    candidates = cond.sample_noise(4 * 6, 12, generator=trainer.rng).view(4, 6, 12, -1)
    with torch.no_grad():
        errs = torch.stack(
            [(cond.unroll(z0, cls, candidates[:, j]) - target).square().mean((1, 2)) for j in range(6)], 1
        )
        picked_err = (cond.unroll(z0, cls, picked) - target).square().mean((1, 2))
    assert torch.allclose(picked_err, errs.min(1).values, atol=1e-6)
    assert (errs.max(1).values > picked_err * 1.01).all(), "the draws differ, and the nearest one won"


def test_noise_candidates_matched_on_the_modes_pick_the_draw_with_the_nearest_mode(tmp_path: Path) -> None:
    config = replace(TINY, w_class=0.0, noise_candidates=5, candidate_match="modes")
    trainer = Trainer(config, synth_data(config), tmp_path / "run")
    model = trainer.model
    g = torch.Generator().manual_seed(4)
    z0, cls = torch.randn(3, model.conditional.config.z_dim, generator=g), torch.tensor([0, 1, 1])
    target = torch.randn(3, 10, model.conditional.config.z_dim, generator=g) * 0.05 + z0[:, None]

    def best_mode_error(noise: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            modes = model.multimode.unroll(model.conditional.unroll(z0, cls, noise), z0)
        return (modes - target[:, None]).square().mean((2, 3)).min(1).values  # (3,)

    state = trainer.rng.get_state()
    picked = trainer._nearest_noise(z0, cls, target)
    trainer.rng.set_state(state)
    candidates = model.conditional.sample_noise(3 * 5, 10, generator=trainer.rng).view(3, 5, 10, -1)
    errs = torch.stack([best_mode_error(candidates[:, j]) for j in range(5)], 1)
    assert torch.allclose(best_mode_error(picked), errs.min(1).values, atol=1e-6)
    assert (errs.max(1).values > errs.min(1).values * 1.001).all()


def test_energy_draws_train_every_sequence_with_several_held_draws(tmp_path: Path) -> None:
    config = replace(TINY, w_class=0.0, energy_draws=3, gen_steps=4)
    trainer = Trainer(config, synth_data(config), tmp_path / "run")
    assert trainer.model.conditional.config.hold_noise
    codes = torch.randn(2, 12, trainer.model.conditional.config.z_dim)
    loss, parts = trainer.generator_losses(codes, torch.tensor([0, 1]))
    assert parts["energy"] > 0.0 and loss.requires_grad
    trainer.run(progress=False)
    assert all(r["energy"] > 0.0 for r in trainer.log if r["stage"] == "generator")
    plain = Trainer(replace(config, energy_draws=1), synth_data(config), tmp_path / "plain")
    assert plain.generator_losses(codes, torch.tensor([0, 1]))[1]["energy"] == 0.0


class _Stopped(Exception):
    pass


class _StoppedAfterCheckpoint(Trainer):
    """A run interrupted after its first generator checkpoint."""

    def _after_step(self, bar: Any, parts: dict[str, float]) -> None:
        super()._after_step(bar, parts)
        if self.stage == "generator" and self.step == self.config.checkpoint_every:
            raise _Stopped


def _assert_an_interrupted_run_resumes_to(whole: Trainer, folder: Path) -> None:
    """A run of ``whole``'s configuration, stopped right after the checkpoint of generator
    step 3 and resumed, ends at ``whole``'s model."""
    config = whole.config
    with pytest.raises(_Stopped):
        _StoppedAfterCheckpoint(config, synth_data(config), folder).run(progress=False)
    resumed = Trainer(config, synth_data(config), folder)
    assert resumed.try_resume() and resumed.step == 3
    resumed.run(progress=False)
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, whole.model.state_dict()[name], msg=f"{name} differs")


def test_a_cosine_schedule_runs_the_learning_rate_down_and_resumes_on_the_same_curve(tmp_path: Path) -> None:
    config = replace(TINY, w_class=0.0, gen_lr_schedule="cosine", gen_steps=8, checkpoint_every=3)
    rates = [generator_lr(config, step) for step in range(config.gen_steps)]
    assert rates[0] == config.gen_lr and rates[-1] == pytest.approx(COSINE_FLOOR * config.gen_lr)
    assert all(a > b for a, b in itertools.pairwise(rates)), "the rate falls at every step"
    assert generator_lr(replace(config, gen_lr_schedule="constant"), 7) == config.gen_lr
    whole = Trainer(config, synth_data(config), tmp_path / "whole")
    whole.run(progress=False)
    assert whole.opt_gen.param_groups[0]["lr"] == pytest.approx(rates[-1])

    _assert_an_interrupted_run_resumes_to(whole, tmp_path / "broken")
    with pytest.raises(ValueError, match="gen_lr_schedule must be one of"):
        replace(config, gen_lr_schedule="linear")


def test_an_unknown_candidate_match_is_refused() -> None:
    with pytest.raises(ValueError, match="candidate_match must be one of"):
        replace(TINY, candidate_match="mode")


def test_a_state_saved_before_an_option_existed_resumes(tmp_path: Path) -> None:
    trainer = Trainer(TINY, synth_data(TINY), tmp_path / "run")
    trainer.save_state()
    state = torch.load(tmp_path / "run" / "train_state.pt", weights_only=False)
    del state["config"]["energy_draws"], state["config"]["candidate_match"]  # an older run's state
    torch.save(state, tmp_path / "run" / "train_state.pt")
    assert Trainer(TINY, synth_data(TINY), tmp_path / "run").try_resume()
    with pytest.raises(ValueError, match="another configuration"):
        Trainer(replace(TINY, energy_draws=2), synth_data(TINY), tmp_path / "run").try_resume()


def test_template_motion_trains_on_every_smile_moved_onto_the_template(tmp_path: Path) -> None:
    config = replace(TINY, w_class=0.0, motion_face="template")
    trainer = Trainer(config, synth_data(config), tmp_path / "run")
    template = canonical_template()
    for i in range(len(trainer.train_set)):
        np.testing.assert_allclose(trainer.train_set.sequence(i)[0], template, atol=1e-6)
    assert trainer.test_set.points.std(0).max() > 0.02, "held-out faces keep their own shapes"
    model = load_cmmnet(trainer.run(progress=False))
    assert model.config.motion_face == "template" and model.config.anchors == 0
    with pytest.raises(ValueError, match="motion_face must be one of"):
        replace(TINY, motion_face="photo")


def test_the_diversity_hinge_can_measure_decoded_lip_and_eye_motion(tmp_path: Path) -> None:
    config = replace(TINY, w_class=0.0, diversity_space="landmarks")
    trainer = Trainer(config, synth_data(config), tmp_path / "run")
    trainer.run(progress=False)
    code_margin = Trainer(replace(TINY, w_class=0.0), synth_data(TINY), tmp_path / "other")
    code_margin.model.vae.load_state_dict(trainer.model.vae.state_dict())
    codes = code_margin._encode_sequences()
    assert 0.0 < trainer.margin < 0.2, "a fraction of a same-class pair's lip and eye distance, in IOD"
    assert trainer.margin != pytest.approx(config.margin_fraction * code_margin._same_class_spread(codes))
    logged = [r["diversity"] for r in trainer.log if r["stage"] == "generator"]
    assert logged and all(0.0 <= d <= 1.0 for d in logged), "the hinge is divided by its margin"
    with pytest.raises(ValueError, match="diversity_space must be one of"):
        replace(TINY, diversity_space="motion")


def test_mode_noise_trains_the_modes_on_posterior_draws_and_resumes(tmp_path: Path) -> None:
    config = replace(
        TINY, w_class=0.0, motion_face="template", mode_noise_dim=3, w_diversity=0.0, vae_decoder="linear"
    )
    trainer = Trainer(config, synth_data(config), tmp_path / "run")
    assert trainer.posterior is not None
    codes = trainer._encode_sequences()[:4]
    target, z0 = codes[:, 1:], codes[:, 0]
    draws, charged, nats = trainer._mode_noise(z0, target)
    assert draws is not None and draws.shape == (4, config.modes, 3)
    assert not torch.allclose(draws[:, 0], draws[:, 1]), "each mode gets its own draw"
    assert charged.item() >= 3 * config.kl_free_nats - 1e-6 and nats >= 0.0
    weights = trainer.run(progress=False)
    assert all("kl_nats" in r for r in trainer.log if r["stage"] == "generator")
    model = load_cmmnet(weights)
    assert model.config.multimode.noise_dim == 3 and model.config.vae.decoder == "linear"
    codes = trainer._encode_sequences()
    with torch.no_grad():
        mu, logvar = trainer.posterior(codes[:, 1:] - codes[:, :1])  # type: ignore[misc]
    fitted = trainer.model.multimode  # the run-time prior: each class's aggregate posterior
    labels = torch.from_numpy(trainer.train_set.labels)
    for k in (0, 1):  # every component is the posterior of a training sequence of the class
        gap = (fitted.prior_mu[k][:, None] - mu[labels == k][None]).norm(dim=-1)  # (components, seqs)
        assert gap.min(1).values.max() < 1e-5
        sigma = (0.5 * logvar[labels == k][gap.argmin(1)]).exp()
        torch.testing.assert_close(fitted.prior_sigma[k], sigma)
    assert not torch.allclose(fitted.prior_mu[0], fitted.prior_mu[1])
    torch.testing.assert_close(model.multimode.prior_mu, fitted.prior_mu, rtol=2e-3, atol=2e-3)
    again = Trainer(config, synth_data(config), tmp_path / "run")
    assert again.try_resume() and again.posterior is not None
    assert trainer.posterior is not None
    for name, v in again.posterior.state_dict().items():
        assert torch.equal(v, trainer.posterior.state_dict()[name]), "the posterior is resumed too"
    state = torch.load(tmp_path / "run" / "train_state.pt", weights_only=False)
    for name in ("multimode.prior_mu", "multimode.prior_sigma"):  # a state saved before the prior
        del state["model"][name]
    torch.save(state, tmp_path / "run" / "train_state.pt")
    older = Trainer(config, synth_data(config), tmp_path / "run")
    assert older.try_resume() and older.stage == "done"
    older.finish(0.0)
    torch.testing.assert_close(older.model.multimode.prior_mu, fitted.prior_mu)
    with pytest.raises(ValueError, match="mode noise cannot be combined"):
        replace(config, noise_candidates=4, candidate_match="modes")


def test_a_mode_style_is_measured_on_each_training_smile_and_drawn_with_the_prior(tmp_path: Path) -> None:
    from rt_smile.data.style import STYLE_DIM, smile_style

    config = replace(
        TINY, w_class=0.0, motion_face="template", mode_noise_dim=3, mode_style=True, w_diversity=0.0
    )
    trainer = Trainer(config, synth_data(config), tmp_path / "run")
    assert trainer.styles.shape == (len(trainer.train_set), STYLE_DIM)
    raw = np.stack([smile_style(trainer.train_set.sequence(i), trainer.train_set.fps) for i in range(3)])
    order = np.argsort(raw[:, 0])  # standardised per measure: the order of the peaks is kept
    assert (np.diff(trainer.styles[order, 0].numpy()) >= 0).all()
    codes = trainer._encode_sequences()[:4]
    draws, _, _ = trainer._mode_noise(codes[:, 0], codes[:, 1:], trainer.styles[:4])
    assert draws is not None and draws.shape == (4, config.modes, 3 + STYLE_DIM)
    torch.testing.assert_close(draws[:, 2, 3:], trainer.styles[:4])  # every mode: its target's style
    with pytest.raises(ValueError, match="needs the training sequences' styles"):
        trainer._mode_noise(codes[:, 0], codes[:, 1:])
    model = load_cmmnet(trainer.run(progress=False))
    assert model.config.multimode.style_dim == STYLE_DIM
    prior = trainer.model.multimode.prior_style  # every component: a training smile of the class
    labels = torch.from_numpy(trainer.train_set.labels)
    for k in (0, 1):
        gap = (prior[k][:, None] - trainer.styles[labels == k][None]).norm(dim=-1)
        assert gap.min(1).values.max() < 1e-6
    torch.testing.assert_close(model.multimode.prior_style, prior, rtol=2e-3, atol=2e-3)
    with pytest.raises(ValueError, match="a mode style needs mode noise"):
        replace(config, mode_noise_dim=0)


class _Recording(Trainer):
    """Keeps the generator's live parameters after every generator step."""

    seen: list[list[torch.Tensor]]

    def _after_step(self, bar: Any, parts: dict[str, float]) -> None:
        if self.stage == "generator":
            assert self.posterior is not None
            modules = [self.model.conditional, self.model.multimode, self.posterior]
            live = [p.detach().clone() for m in modules for p in m.parameters()]
            self.seen = [*getattr(self, "seen", []), live]
        super()._after_step(bar, parts)


def test_a_weight_average_watches_the_run_and_is_what_it_saves(tmp_path: Path) -> None:
    config = replace(
        TINY, w_class=0.0, motion_face="template", mode_noise_dim=3, w_diversity=0.0, vae_decoder="linear"
    )
    plain = Trainer(config, synth_data(config), tmp_path / "plain")
    plain.run(progress=False)
    averaged = replace(config, gen_average=0.6)
    run = _Recording(averaged, synth_data(config), tmp_path / "run")
    assert run.average is not None and run.posterior is not None
    expected = [s.clone() for s in run.average.shadow]  # the untrained parameters
    weights = run.run(progress=False)
    assert [{**r, "time": 0} for r in run.log] == [{**r, "time": 0} for r in plain.log], "same trajectory"
    for live in run.seen:
        expected = [0.6 * e + 0.4 * p for e, p in zip(expected, live, strict=True)]
    saved = [
        *run.model.conditional.parameters(),
        *run.model.multimode.parameters(),
        *run.posterior.parameters(),
    ]
    for got, want, last in zip(saved, expected, run.seen[-1], strict=True):
        torch.testing.assert_close(got.detach(), want)
        assert last.numel() < 8 or not torch.allclose(got, last), "the saved weights are not the last step's"
    loaded = load_cmmnet(weights)
    torch.testing.assert_close(
        loaded.conditional.head.weight, run.model.conditional.head.weight, rtol=2e-3, atol=2e-3
    )
    _assert_an_interrupted_run_resumes_to(run, tmp_path / "broken")  # the same average
    with pytest.raises(ValueError, match="gen_average must lie in"):
        replace(config, gen_average=1.0)
