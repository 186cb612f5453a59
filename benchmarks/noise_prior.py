"""Ablation of where the modes' noise is drawn from at run time, with the shipped weights.

    python benchmarks/noise_prior.py [PHOTO ...]   # default: the bundled sample face

A mode-noise model is trained as a conditional VAE whose KL term pulls the noise's posterior
towards the standard normal; at run time each class's prior is that class's aggregate posterior,
a mixture of training sequences' posteriors stored in the weights (``MultiModeGenerator``,
``prior_mu`` / ``prior_sigma``). Here the same weights draw their noise three ways:

- ``standard_normal``: the KL term's target, N(0, I);
- ``gaussian``: one Gaussian per class with the mixture's mean and covariance;
- ``mixture``: the shipped prior.

A model with a mode style (``MultiModeConfig.style_dim``) draws the style the same way in all
three: that of the mixture component the draw picks, so only the noise's prior differs.

Each is scored per photo and class by ``rt_smile.train.photo_eval.evaluate_photo`` (60 draws ×
K modes; the same reference and classifier as ``benchmarks/photos.py``).
Writes benchmarks/results/ablations/noise_prior.json.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from photos import ablation_args, photo_neutral, reference, write_results

from rt_smile.config import DetectorConfig
from rt_smile.face.landmarks import make_detector
from rt_smile.io.checkpoint import load_cmmnet
from rt_smile.models.multimode import MultiModeGenerator
from rt_smile.train.photo_eval import evaluate_photo

KEPT = (
    "class_accuracy_per_mode",
    "frechet_distance",
    "frechet_noise_floor",
    "ratio_to_reference_pairs",
    "ratio_to_own_motion",
    "peak_lip_corner_speed_iod_per_s",
)


def gaussian_prior(mm: MultiModeGenerator) -> Callable[[Tensor, Tensor], Tensor]:
    """One Gaussian per class with the shipped mixture's mean and covariance."""
    mu, var = mm.prior_mu.double(), mm.prior_sigma.double().square()  # (C, M, d)
    mean = mu.mean(1)  # (C, d)
    centred = mu - mean[:, None]
    cov = centred.transpose(1, 2) @ centred / mu.shape[1] + torch.diag_embed(var.mean(1))
    tril = torch.linalg.cholesky(cov).float()

    def draw(unit: Tensor, cls: Tensor) -> Tensor:
        return mean.float()[cls][:, None] + unit[..., :-1] @ tril[cls].transpose(1, 2)

    return draw


def standard_normal(unit: Tensor, cls: Tensor) -> Tensor:
    return unit[..., :-1]


def with_style(
    mm: MultiModeGenerator, draw: Callable[[Tensor, Tensor], Tensor]
) -> Callable[[Tensor, Tensor], Tensor]:
    """``draw`` followed by the style of the mixture component each draw picks (a model with a
    mode style needs it); ``draw`` itself for a model without one."""
    if mm.config.style_dim == 0:
        return draw

    def styled(unit: Tensor, cls: Tensor) -> Tensor:
        return torch.cat([draw(unit, cls), mm.component_style(unit, cls)], dim=-1)

    return styled


def main() -> None:
    photos, weights, out = ablation_args(__doc__, "noise_prior.json")
    t0 = time.perf_counter()
    ref = reference(weights)
    detector = make_detector(DetectorConfig())
    reports: list[dict[str, Any]] = []
    for path in photos:
        neutral = photo_neutral(path, detector)
        priors: dict[str, Any] = {}
        for name in ("standard_normal", "gaussian", "mixture"):
            model = load_cmmnet(weights)
            if name != "mixture":  # the instance's prior_noise replaces the shipped mixture's
                draw = standard_normal if name == "standard_normal" else gaussian_prior(model.multimode)
                model.multimode.prior_noise = with_style(model.multimode, draw)  # type: ignore[method-assign,assignment]
            classes = evaluate_photo(model, neutral, ref)
            priors[name] = {c: {k: r[k] for k in KEPT} for c, r in classes.items()}
            print(path.name, name, json.dumps(priors[name])[:300], flush=True)
        reports.append({"photo": path.name, "priors": priors})
    source = "SynthSmile (synthetic): per photo, the data process applied to the photo's neutral landmarks"
    write_results(out, "noise_prior", weights, source, t0, reports)


if __name__ == "__main__":
    main()
