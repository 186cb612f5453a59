"""Training of CMM-Net: the landmark VAE, then the conditional LSTM and multi-mode generator.

Stage ``vae``: the VAE on single aligned frames. Stage ``generator``: the training sequences are
encoded once (VAE means); the conditional LSTM unrolls z0, the class and noise into one embedding
sequence, the multi-mode generator turns it into K sequences; losses are winner-takes-all
reconstruction over the K modes (relaxed, so no mode dies), a diversity hinge between the modes'
motions, and a small regression of the conditional LSTM's own sequence on the data.

Seeded and resumable: ``train_state.pt`` in the output folder holds the stage, step, optimiser and
random states; the model itself is saved as safetensors (``cmmnet.safetensors``), with a JSON log
and a loss plot beside it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rt_smile.data.retarget import to_face
from rt_smile.data.sequences import SmileSequences
from rt_smile.data.style import STYLE_DIM, style_table
from rt_smile.data.synthetic import SynthConfig, generate
from rt_smile.face.align import canonical_template
from rt_smile.io.checkpoint import save_cmmnet
from rt_smile.models.cmmnet import CMMNet, CMMNetConfig
from rt_smile.models.conditional import ConditionalConfig
from rt_smile.models.multimode import MultiModeConfig
from rt_smile.models.vae import VAEConfig
from rt_smile.train.average import WeightAverage
from rt_smile.train.class_term import LatentClassifier, fit_latent_classifier
from rt_smile.train.losses import (
    best_of_k_loss,
    class_loss,
    diversity_loss,
    energy_score,
    kl_divergence,
    per_mode_mse,
    vae_loss,
)
from rt_smile.train.metrics import MOTION_POINTS
from rt_smile.train.posterior import MotionPosterior, free_bits_kl, posterior_draws

logger = logging.getLogger(__name__)


#: What can pick a noise candidate (``TrainConfig.candidate_match``).
CANDIDATE_MATCHES = ("conditional", "modes")
#: Which face the generator makes its motion on (``TrainConfig.motion_face``).
MOTION_FACES = ("own", "template")
#: Where the diversity hinge measures the distance between modes (``TrainConfig.diversity_space``).
DIVERSITY_SPACES = ("code", "landmarks")
#: How the generator's learning rate runs over its steps (``TrainConfig.gen_lr_schedule``).
LR_SCHEDULES = ("constant", "cosine")
#: The cosine schedule's last learning rate, as a fraction of ``gen_lr``.
COSINE_FLOOR = 0.05
#: The window (frames) whose mean code is decoded when modes are compared in the landmark space.
DIVERSITY_WINDOW = 6


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (recorded in the weights' metadata)."""

    #: SynthSmile size and seed when no data file is given.
    n_sequences: int = 2000
    n_identities: int = 500
    data_seed: int = 0
    #: Fraction of identities held out for evaluation, and the split seed.
    test_fraction: float = 0.1
    split_seed: int = 0
    seed: int = 0
    #: Frames per training sequence (5 s at 30 fps); shorter sequences hold their last frame.
    length: int = 150
    modes: int = 4
    #: Width of the conditional LSTM and the multi-mode generator (their ``hidden``).
    hidden: int = 256
    vae_steps: int = 3000
    #: The landmark VAE's decoder (``VAEConfig.decoder``): ``"mlp"`` or ``"linear"``.
    vae_decoder: str = "mlp"
    vae_batch: int = 256
    vae_lr: float = 1e-3
    beta: float = 1e-3
    gen_steps: int = 1500
    gen_batch: int = 64
    gen_lr: float = 1e-3
    #: ``"constant"``: ``gen_lr`` throughout; ``"cosine"``: from ``gen_lr`` down a half cosine to
    #: ``COSINE_FLOOR`` × ``gen_lr`` at the last step, so a shorter run still ends settled. A
    #: function of the step alone, so a resumed run continues the same schedule.
    gen_lr_schedule: str = "constant"
    #: Decay of an exponential moving average of the generator's weights (the conditional LSTM,
    #: the multi-mode generator and the mode-noise posterior; ``rt_smile.train.average``), saved
    #: in place of the last step's; 0: off. 0.995 averages over about the last 200 steps.
    gen_average: float = 0.0
    #: Relaxed winner-takes-all weight of the non-winning modes.
    relax: float = 0.25
    #: Weight of the conditional LSTM's own regression on the data.
    w_conditional: float = 0.5
    #: Weight of the diversity hinge and its margin as a fraction of the data's same-class spread.
    w_diversity: float = 1.0
    margin_fraction: float = 0.8
    #: Weight of the class term: cross-entropy of a frozen latent-motion classifier (trained on
    #: the data's codes first, for ``class_steps`` steps) on every mode.
    w_class: float = 0.0
    class_steps: int = 300
    #: Keep the training faces' neutral codes as anchors (see ``CMMNetConfig.anchors``).
    anchors: bool = True
    #: Noise candidates per training sequence (implicit maximum likelihood, Li & Malik 2018):
    #: with more than 1, the noise is one draw per sequence (``ConditionalConfig.hold_noise``)
    #: and each step trains on the candidate whose conditional unroll lands nearest the data,
    #: so that different noise gives different, data-like smiles instead of being ignored.
    noise_candidates: int = 1
    #: What picks the candidate: ``"conditional"``, the conditional LSTM's own unroll nearest
    #: the data; ``"modes"``, the candidate with a mode nearest the data (the nearest of all
    #: M × K generated sequences, so each mode's spread under the noise is trained too).
    candidate_match: str = "conditional"
    #: Size of the conditional LSTM's noise vector (fewer dimensions: M candidates cover them
    #: more densely).
    noise_dim: int = 16
    #: Noise draws per training sequence for the energy score (``losses.energy_score``): with
    #: more than 1, the noise is one draw per sequence, every sequence of the batch is unrolled
    #: with this many draws, and the energy score of all their modes against the data is added
    #: with weight ``w_energy``, so that the noise spreads each face's smiles as the data do.
    energy_draws: int = 1
    w_energy: float = 1.0
    #: The face the generator learns to move: ``"own"``, each training sequence's own face (a
    #: photo's motion then starts from its nearest anchor); ``"template"``, every training
    #: sequence's motion retargeted onto MediaPipe's canonical face first
    #: (``rt_smile.data.retarget``), so the generator learns smiles, not faces, and a photo's
    #: motion is made on the template and retargeted onto the photo's own face.
    motion_face: str = "own"
    #: Where the diversity hinge measures the modes' distance: ``"code"``, their motions in the
    #: VAE's code space; ``"landmarks"``, their decoded motions of the lip and eye points
    #: (``metrics.MOTION_POINTS``, IOD, decoded from the mean code of every ``DIVERSITY_WINDOW``
    #: frames), the space in which the evaluation measures diversity. Code distance can be far
    #: from it: a template-motion model had modes 0.84 × the data's same-class pair distance apart
    #: in code space but 0.37 × in motion. The landmark hinge is divided by its margin (so it
    #: runs from 0 to 1).
    diversity_space: str = "code"
    #: Size of each mode's own noise vector (``MultiModeConfig.noise_dim``; 0: none). With mode
    #: noise the generator is trained as a conditional VAE (``rt_smile.train.posterior``): every
    #: mode gets its own draw from the noise's posterior given the training sequence, and the
    #: Kullback-Leibler divergence to the prior is added with weight ``w_kl``. At run time each
    #: mode draws its noise from the prior, so the K modes are K independent smiles.
    mode_noise_dim: int = 0
    w_kl: float = 2e-3
    #: Free bits (Kingma et al. 2016): each noise dimension's KL (batch mean, nats) is charged
    #: no less than this, so the posterior is free to carry that much information per dimension
    #: (without it, the generator learns the mean smile first and the posterior collapses).
    kl_free_nats: float = 1.5
    #: Tell each mode the style of the smile it makes (``rt_smile.data.style``: the lip corners'
    #: rise and fall times, peak, parting, first blink), beside its noise: in training, the
    #: measures of the sequence it reconstructs; at run time, those of the prior component drawn
    #: (``MultiModeConfig.style_dim``). Needs mode noise.
    mode_style: bool = False
    log_every: int = 50
    checkpoint_every: int = 500

    def __post_init__(self) -> None:
        if self.diversity_space not in DIVERSITY_SPACES:
            raise ValueError(
                f"diversity_space must be one of {DIVERSITY_SPACES}, not {self.diversity_space!r}"
            )
        if self.gen_lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"gen_lr_schedule must be one of {LR_SCHEDULES}, not {self.gen_lr_schedule!r}")
        if not 0.0 <= self.gen_average < 1.0:
            raise ValueError(f"gen_average must lie in [0, 1), not {self.gen_average}")
        if self.motion_face not in MOTION_FACES:
            raise ValueError(f"motion_face must be one of {MOTION_FACES}, not {self.motion_face!r}")
        if self.mode_noise_dim > 0 and self.noise_candidates > 1 and self.candidate_match == "modes":
            raise ValueError("mode noise cannot be combined with noise candidates matched on the modes")
        if self.mode_style and self.mode_noise_dim == 0:
            raise ValueError("a mode style needs mode noise (mode_noise_dim > 0)")
        if self.candidate_match not in CANDIDATE_MATCHES:
            raise ValueError(
                f"candidate_match must be one of {CANDIDATE_MATCHES}, not {self.candidate_match!r}"
            )

    @property
    def holds_noise(self) -> bool:
        """Whether the model draws one noise vector per sequence (``ConditionalConfig.hold_noise``)."""
        return self.noise_candidates > 1 or self.energy_draws > 1


def synth_data(config: TrainConfig) -> SmileSequences:
    return generate(
        SynthConfig(n_sequences=config.n_sequences, n_identities=config.n_identities, seed=config.data_seed)
    )


def pad_sequences(data: SmileSequences, length: int) -> list[np.ndarray]:  # type: ignore[type-arg]
    """Each sequence cut or padded (last frame held) to ``length`` frames."""
    out = []
    for i in range(len(data)):
        s = data.sequence(i)
        if len(s) < length:
            s = np.concatenate([s, np.repeat(s[-1:], length - len(s), axis=0)])
        out.append(s[:length])
    return out


class Trainer:
    """Runs (or resumes) a training into ``out``."""

    def __init__(self, config: TrainConfig, data: SmileSequences, out: Path, command: str = "") -> None:
        self.config = config
        self.out = out
        self.command = command
        self.train_set, self.test_set = data.split_by_identity(config.test_fraction, config.split_seed)
        template = config.motion_face == "template"
        if template:
            self.train_set = to_face(self.train_set, canonical_template())
        torch.manual_seed(config.seed)
        model_config = CMMNetConfig(
            vae=VAEConfig(decoder=config.vae_decoder),
            conditional=ConditionalConfig(
                noise_dim=config.noise_dim, hold_noise=config.holds_noise, hidden=config.hidden
            ),
            multimode=MultiModeConfig(
                modes=config.modes,
                hidden=config.hidden,
                noise_dim=config.mode_noise_dim,
                style_dim=STYLE_DIM if config.mode_style else 0,
            ),
            anchors=len(self.train_set) if config.anchors and not template else 0,
            motion_face=config.motion_face,
        )
        self.model = CMMNet(model_config)
        self.opt_vae = torch.optim.AdamW(self.model.vae.parameters(), lr=config.vae_lr, weight_decay=1e-4)
        z_dim = model_config.vae.z_dim
        self.posterior = MotionPosterior(z_dim, config.mode_noise_dim) if config.mode_noise_dim > 0 else None
        gen_params = [*self.model.conditional.parameters(), *self.model.multimode.parameters()]
        if self.posterior is not None:
            gen_params += list(self.posterior.parameters())
        self.opt_gen = torch.optim.AdamW(gen_params, lr=config.gen_lr, weight_decay=1e-4)
        self.average = self._weight_average()
        self.stage, self.step = "vae", 0
        self.log: list[dict[str, Any]] = []
        self.rng = torch.Generator().manual_seed(config.seed)
        self.codes: torch.Tensor | None = None  # (N, length, z)
        self.margin = 0.0
        self.class_judge: LatentClassifier | None = None
        self.styles = self._styles()  # (N, style_dim), standardised

    def _weight_average(self) -> WeightAverage | None:
        if self.config.gen_average == 0.0:
            return None
        modules: list[torch.nn.Module] = [self.model.conditional, self.model.multimode]
        if self.posterior is not None:
            modules.append(self.posterior)
        return WeightAverage(modules, self.config.gen_average)

    # ------------------------------------------------------------------ state
    def _state_path(self) -> Path:
        return self.out / "train_state.pt"

    def save_state(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        state = {
            "config": asdict(self.config),
            "stage": self.stage,
            "step": self.step,
            "log": self.log,
            "model": self.model.state_dict(),
            "posterior": None if self.posterior is None else self.posterior.state_dict(),
            "opt_vae": self.opt_vae.state_dict(),
            "opt_gen": self.opt_gen.state_dict(),
            "rng": self.rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "margin": self.margin,
            "average": None if self.average is None else self.average.state_dict(),
        }
        tmp = self._state_path().with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self._state_path())

    def try_resume(self) -> bool:
        path = self._state_path()
        if not path.is_file():
            return False
        state = torch.load(path, weights_only=False)
        # options added after a state was saved ran at their defaults, the old behaviour
        saved = {**asdict(TrainConfig()), **state["config"]}
        if saved != asdict(self.config):
            raise ValueError(f"{path} was made with another configuration; use a new --out folder")
        # the mode-noise prior, added later, is fitted when a run finishes: without it, the fresh one
        fresh = {k: v for k, v in self.model.state_dict().items() if k.startswith("multimode.prior_")}
        self.model.load_state_dict({**fresh, **state["model"]})
        if self.posterior is not None:
            self.posterior.load_state_dict(state["posterior"])
        self.opt_vae.load_state_dict(state["opt_vae"])
        self.opt_gen.load_state_dict(state["opt_gen"])
        if self.average is not None:
            self.average.load_state_dict(state["average"])
        self.rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        self.stage, self.step, self.log, self.margin = (
            state["stage"],
            state["step"],
            state["log"],
            state["margin"],
        )
        logger.info("resumed at stage %s step %d", self.stage, self.step)
        return True

    # ------------------------------------------------------------------ VAE
    def _vae_setup(self) -> torch.Tensor:
        frames = torch.from_numpy(self.train_set.points)
        self.model.vae.set_normalization(frames.mean(0), frames.std(0))
        return frames

    def train_vae(self, progress: bool) -> None:
        frames = self._vae_setup()
        vae, cfg = self.model.vae, self.config
        vae.train()
        bar = _bar(cfg.vae_steps, self.step, "VAE", progress)
        while self.step < cfg.vae_steps:
            idx = torch.randint(len(frames), (cfg.vae_batch,), generator=self.rng)
            x = frames[idx]
            recon, mu, logvar = vae(x)
            loss, parts = vae_loss(vae.normalize(recon), vae.normalize(x), mu, logvar, cfg.beta)
            self.opt_vae.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            self.opt_vae.step()
            self._after_step(bar, {"recon": parts["recon"].item(), "kl": parts["kl"].item()})
        bar.close()
        self.stage, self.step = "generator", 0
        self.save_state()

    # ------------------------------------------------------------------ generator
    def _styles(self) -> torch.Tensor:
        """Each training sequence's standardised style (N, style_dim); (N, 0) without one."""
        n = len(self.train_set)
        if not self.config.mode_style:
            return torch.zeros(n, 0)
        seqs = [self.train_set.sequence(i) for i in range(n)]
        table, _, _ = style_table(seqs, self.train_set.fps)
        return torch.from_numpy(table).float()

    @torch.no_grad()
    def _encode_sequences(self) -> torch.Tensor:
        vae = self.model.vae.eval()
        seqs = pad_sequences(self.train_set, self.config.length)
        codes = [vae.encode(torch.from_numpy(s))[0] for s in seqs]
        return torch.stack(codes)  # (N, L, z)

    def _same_class_spread(self, codes: torch.Tensor) -> float:
        """Mean distance between the motions of random same-class pairs, in ``diversity_space``:
        RMS over the z-motions, or mean per-point distance of the decoded lip and eye motion
        (of window-mean codes, as the hinge sees them)."""
        motions = codes - codes[:, :1]  # (N, L, z)
        if self.config.diversity_space == "landmarks":
            with torch.no_grad():
                pts = self._window_points(codes)  # (N, L', P, 2)
            motions = pts - pts[:, :1]
        labels = torch.from_numpy(self.train_set.labels)
        g = torch.Generator().manual_seed(0)
        dists = []
        for k in torch.unique(labels).tolist():
            idx = torch.nonzero(labels == k).flatten()
            a = idx[torch.randint(len(idx), (256,), generator=g)]
            b = idx[torch.randint(len(idx), (256,), generator=g)]
            diff = motions[a] - motions[b]
            if self.config.diversity_space == "landmarks":
                dists.append(diff.norm(dim=-1).flatten(1).mean(1))
            else:
                dists.append(diff.square().mean((1, 2)).sqrt())
        return float(torch.cat(dists).mean())

    def generator_losses(
        self, codes: torch.Tensor, cls: torch.Tensor, styles: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of a batch of training sequences' codes (B, L, z), classes (B,) and standardised
        styles (B, style_dim) (needed with ``mode_style``)."""
        cfg, model = self.config, self.model
        draws = cfg.energy_draws
        codes, cls = codes.repeat_interleave(draws, 0), cls.repeat_interleave(draws, 0)  # (B·m, ...)
        if styles is not None:
            styles = styles.repeat_interleave(draws, 0)
        z0, target = codes[:, 0], codes[:, 1:]  # (B·m, z), (B·m, L-1, z)
        noise = self._nearest_noise(z0, cls, target)
        z_cond = model.conditional.unroll(z0, cls, noise)  # (B, L-1, z)
        mode_noise, kl, kl_nats = self._mode_noise(z0, target, styles)
        z_modes = model.multimode.unroll(z_cond, z0, mode_noise)  # (B, K, L-1, z)
        wta, winner = best_of_k_loss(z_modes, target, relax=cfg.relax)
        cond = F.mse_loss(z_cond, target)
        with_start = torch.cat([z0[:, None, None].expand(-1, z_modes.shape[1], 1, -1), z_modes], dim=2)
        div = self._diversity_term(with_start)
        cls_term = self._class_term(z_modes, z0, cls)
        energy = self._energy_term(z_modes, target)
        loss = wta + cfg.w_conditional * cond + cfg.w_diversity * div + cfg.w_class * cls_term
        loss = loss + cfg.w_energy * energy + cfg.w_kl * kl
        wins = torch.bincount(winner, minlength=cfg.modes).float() / len(winner)
        parts = {
            "wta": wta.item(),
            "conditional": cond.item(),
            "diversity": div.item(),
            "class": cls_term.item(),
            "energy": energy.item(),
            "kl_nats": kl_nats,
            "min_mode_share": wins.min().item(),
        }
        return loss, parts

    def _mode_noise(
        self, z0: torch.Tensor, target: torch.Tensor, styles: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor, float]:
        """Each mode's draw (B, K, d) from the posterior of its noise given the target, followed
        by the target's style (B, style_dim) with ``mode_style``; the KL term charged (free bits)
        and the posterior's plain KL divergence to the prior, for the log; (None, 0, 0) without
        mode noise."""
        if self.posterior is None:
            return None, target.sum() * 0.0, 0.0
        mu, logvar = self.posterior(target - z0[:, None])
        charged = free_bits_kl(mu, logvar, self.config.kl_free_nats)
        draws = posterior_draws(mu, logvar, self.config.modes, self.rng)
        if self.config.mode_style:
            if styles is None:
                raise ValueError("a generator with a mode style needs the training sequences' styles")
            draws = torch.cat([draws, styles[:, None].expand(-1, draws.shape[1], -1)], dim=-1)
        return draws, charged, kl_divergence(mu, logvar).item()

    def _diversity_term(self, with_start: torch.Tensor) -> torch.Tensor:
        """The diversity hinge on the modes' codes (B, K, L, z), in ``diversity_space``."""
        if self.config.w_diversity == 0.0:
            return with_start.sum() * 0.0
        if self.config.diversity_space == "code":
            return diversity_loss(with_start, self.margin)
        points = self._window_points(with_start)  # (B, K, L', P, 2)
        return diversity_loss(points, self.margin, per_point=True) / self.margin

    def _window_points(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (..., L, z) → (..., L', P, 2): the lip and eye points decoded from ``_windows``."""
        frames = _windows(codes)
        decoded = self.model.vae.decode(frames.reshape(-1, frames.shape[-1]))  # (M, 468, 2)
        return decoded[:, torch.from_numpy(MOTION_POINTS)].reshape(*frames.shape[:-1], -1, 2)

    @torch.no_grad()
    def _nearest_noise(self, z0: torch.Tensor, cls: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, L-1, noise_dim) noise: of ``noise_candidates`` draws per sequence, the one whose
        conditional unroll (or best mode, ``candidate_match``) is nearest the target (one plain
        draw when there is one candidate)."""
        m, (b, steps) = self.config.noise_candidates, target.shape[:2]
        cond = self.model.conditional
        noise = cond.sample_noise(b * m, steps, generator=self.rng)  # candidate j of sample i: i·m + j
        if m == 1:
            return noise
        z0m, targets = z0.repeat_interleave(m, 0), target.repeat_interleave(m, 0)
        z = cond.unroll(z0m, cls.repeat_interleave(m, 0), noise)  # (B·m, L-1, z)
        if self.config.candidate_match == "modes":
            err = per_mode_mse(self.model.multimode.unroll(z, z0m), targets).min(1).values.view(b, m)
        else:
            err = (z - targets).square().mean((1, 2)).view(b, m)
        pick = torch.arange(b) * m + err.argmin(1)
        return noise[pick]

    def _energy_term(self, z_modes: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Energy score of every mode of the m draws of each sequence: z_modes (B·m, K, L-1, z)
        with the m draws of one sequence adjacent, target (B·m, L-1, z); 0 with one draw."""
        m = self.config.energy_draws
        if m == 1:
            return z_modes.sum() * 0.0
        samples = z_modes.reshape(-1, m * z_modes.shape[1], *z_modes.shape[2:])  # (B, m·K, L-1, z)
        return energy_score(samples, target[::m])

    def _class_term(self, z_modes: torch.Tensor, z0: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the frozen latent classifier on every mode's z-motion."""
        if self.class_judge is None or self.config.w_class == 0.0:
            return z_modes.sum() * 0.0
        b, k = z_modes.shape[:2]
        motion = (z_modes - z0[:, None, None]).flatten(0, 1)  # (B·K, L-1, z)
        return class_loss(self.class_judge(motion).reshape(b, k, -1), cls)

    def train_generator(self, progress: bool) -> None:
        cfg = self.config
        codes = self._encode_sequences()
        labels = torch.from_numpy(self.train_set.labels)
        if self.margin == 0.0:
            self.margin = cfg.margin_fraction * self._same_class_spread(codes)
        if cfg.w_class > 0.0:  # deterministic, so a resumed run refits the same judge
            self.class_judge, accuracy = fit_latent_classifier(codes, labels, cfg.class_steps, seed=cfg.seed)
            logger.info("class term: latent classifier accuracy %.3f on the training codes", accuracy)
        self.model.conditional.train()
        self.model.multimode.train()
        bar = _bar(cfg.gen_steps, self.step, "generator", progress)
        while self.step < cfg.gen_steps:
            idx = torch.randint(len(codes), (cfg.gen_batch,), generator=self.rng)
            loss, parts = self.generator_losses(codes[idx], labels[idx], self.styles[idx])
            for group in self.opt_gen.param_groups:
                group["lr"] = generator_lr(cfg, self.step)
            self.opt_gen.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(
                [*self.model.conditional.parameters(), *self.model.multimode.parameters()], 1.0
            )
            self.opt_gen.step()
            if self.average is not None:
                self.average.update()
            self._after_step(bar, parts)
        bar.close()
        self.stage = "done"
        self.save_state()

    # ------------------------------------------------------------------ loop
    def _after_step(self, bar: Any, parts: dict[str, float]) -> None:
        self.step += 1
        bar.update(1)
        if self.step % self.config.log_every == 0 or self.step == 1:
            entry = {"stage": self.stage, "step": self.step, "time": round(time.time(), 1), **parts}
            self.log.append(entry)
            bar.set_postfix({k: f"{v:.4g}" for k, v in parts.items()})
        if self.step % self.config.checkpoint_every == 0:
            self.save_state()

    def run(self, progress: bool = True, resume: bool = True) -> Path:
        if resume:
            self.try_resume()
        started = time.time()
        if self.stage == "vae":
            self.train_vae(progress)
        if self.stage == "generator":
            self.train_generator(progress)
        return self.finish(time.time() - started)

    @torch.no_grad()
    def _set_anchors(self) -> None:
        """The neutral (first-frame) codes of every training sequence become the anchors."""
        if self.model.config.anchors == 0:
            return
        first = np.stack([self.train_set.sequence(i)[0] for i in range(len(self.train_set))])
        self.model.set_anchors(self.model.vae.eval().encode(torch.from_numpy(first).float())[0])

    @torch.no_grad()
    def _fit_noise_prior(self) -> None:
        """With mode noise, each class's run-time prior becomes that class's aggregate
        posterior: the mixture of the posteriors of ``prior_components`` of its training
        sequences (a seeded choice; all of them, cycled, when there are fewer). The standard
        normal that the KL term pulls towards is not what the free-bits posterior fills, and the
        two classes' smiles lie in different parts of it (``docs/training.md``, "Mode noise")."""
        if self.posterior is None:
            return
        codes = self._encode_sequences()
        mu, logvar = self.posterior.eval()(codes[:, 1:] - codes[:, :1])
        labels = torch.from_numpy(self.train_set.labels).long()
        config = self.model.multimode.config
        g = torch.Generator().manual_seed(self.config.seed)
        chosen = []
        for k in range(config.n_classes):
            idx = torch.nonzero(labels == k).flatten()
            if len(idx) == 0:
                raise ValueError(f"no training sequence of class {k}: cannot fit its mode-noise prior")
            order = idx[torch.randperm(len(idx), generator=g)]
            chosen.append(order[torch.arange(config.prior_components) % len(order)])
        rows = torch.stack(chosen)  # (n_classes, prior_components)
        style = self.styles[rows] if self.config.mode_style else None
        self.model.multimode.set_noise_prior(mu[rows], (0.5 * logvar[rows]).exp(), style)

    def finish(self, seconds: float) -> Path:
        if self.average is not None:  # the saved state keeps the live weights, to resume from
            self.average.copy_to_model()
        self._set_anchors()
        self._fit_noise_prior()
        info = {
            "train_config": asdict(self.config),
            "command": self.command,
            "margin": self.margin,
            "seconds_this_run": round(seconds, 1),
            "data": "SynthSmile (synthetic)",
            "test_identities": sorted(set(self.test_set.identity.tolist())),
        }
        weights = save_cmmnet(self.out / "cmmnet.safetensors", self.model.eval(), info)
        (self.out / "train_log.json").write_text(json.dumps({"info": info, "log": self.log}, indent=1))
        plot_log(self.log, self.out / "train_loss.png")
        return weights


def generator_lr(config: TrainConfig, step: int) -> float:
    """The generator's learning rate at ``step`` (0-based) under ``config.gen_lr_schedule``."""
    if config.gen_lr_schedule == "constant" or config.gen_steps <= 1:
        return config.gen_lr
    progress = min(step / (config.gen_steps - 1), 1.0)
    scale = COSINE_FLOOR + (1.0 - COSINE_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.gen_lr * scale


def _windows(codes: torch.Tensor) -> torch.Tensor:
    """codes (..., L, z) → (..., 1 + (L−1) // DIVERSITY_WINDOW, z): the first frame, then the
    mean code of each window of DIVERSITY_WINDOW frames after it. Averaging, not striding, so a
    mode cannot look different from another by rattling between the frames it is compared on."""
    lead, (length, z) = codes.shape[:-2], codes.shape[-2:]
    flat = codes.reshape(-1, length, z)
    means = F.avg_pool1d(flat[:, 1:].transpose(1, 2), DIVERSITY_WINDOW).transpose(1, 2)
    return torch.cat([flat[:, :1], means], 1).reshape(*lead, -1, z)


class _NoBar:
    def update(self, n: int) -> None: ...
    def set_postfix(self, d: dict[str, str]) -> None: ...
    def close(self) -> None: ...


def _bar(total: int, initial: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step")


def plot_log(log: list[dict[str, Any]], path: Path) -> None:
    """Loss curves of both stages."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, stage, keys in (
        (axes[0], "vae", ("recon", "kl")),
        (axes[1], "generator", ("wta", "conditional", "diversity", "class", "energy")),
    ):
        rows = [r for r in log if r["stage"] == stage]
        for k in (k for k in keys if any(r.get(k, 0.0) > 0.0 for r in rows)):  # skip unused terms
            ax.plot([r["step"] for r in rows], [r[k] for r in rows], label=k)
        ax.set_yscale("log")
        ax.set_title(f"{stage} (SynthSmile, synthetic)", fontsize=10)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
