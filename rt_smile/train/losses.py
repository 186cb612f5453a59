"""Training losses for the landmark VAE, the conditional LSTM and the multi-mode generator.

Shapes: B batch, K modes, T frames, D features per frame (a latent code z, or flattened landmarks
468·2). All losses are means, so their size does not grow with B, T or D.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def vae_loss(
    recon: Tensor, target: Tensor, mu: Tensor, logvar: Tensor, beta: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """β-VAE objective: recon (B, ...), target (B, ...) of the same shape; mu, logvar (B, z).

    ``recon`` is the mean squared error per element; ``kl`` is KL(q(z|x) ‖ N(0, I)) summed over
    the z dimensions and averaged over the batch; total = recon + beta · kl. Compare standardised
    coordinates (``LandmarkVAE.normalize``) so that an error of 1 is one data standard deviation.
    The parts are detached, for logging.
    """
    recon_err = F.mse_loss(recon, target)
    kl = kl_divergence(mu, logvar)
    return recon_err + beta * kl, {"recon": recon_err.detach(), "kl": kl.detach()}


def kl_terms(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) ‖ N(0, I)) of each sample and dimension: mu, logvar (B, z) → (B, z)."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) ‖ N(0, I)) for mu, logvar (B, z): summed over z, mean over B."""
    return kl_terms(mu, logvar).sum(-1).mean()


def per_mode_mse(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """pred (B, K, T, D), target (B, T, D) → (B, K) mean squared error of each mode.

    ``mask`` (B, T) (bool or 0/1) marks the valid frames; the mean runs over those only.
    """
    err = (pred - target.unsqueeze(1)).square().mean(-1)  # (B, K, T)
    if mask is None:
        return err.mean(-1)
    w = mask.to(err.dtype).unsqueeze(1)  # (B, 1, T)
    return (err * w).sum(-1) / w.sum(-1).clamp_min(1.0)


def best_of_k_loss(
    pred: Tensor, target: Tensor, relax: float = 0.0, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Winner-takes-all reconstruction: pred (B, K, T, D), target (B, T, D) → (loss, winner (B,)).

    Each sample's loss is the smallest per-mode MSE over the K modes (the winner's), so each mode
    only has to explain the samples it is closest to and the modes spread over the data instead
    of all collapsing on the mean. With ``relax`` > 0, the mean MSE of the K − 1 other modes is
    added with that weight ("relaxed" WTA, Rupprecht et al. 2017): a mode that never wins still
    receives a gradient towards the data, so no mode dies far from it (with a diversity term
    pushing modes apart, a mode that never wins otherwise drifts off for good). About 0.1 kept all
    K = 4 modes winning in turn in a short SynthSmile run; 0 gives the plain minimum.
    ``mask`` (B, T) marks the valid frames. ``winner`` is the index of the winning mode, for
    logging (how often each mode wins) and for per-winner losses.
    """
    errs = per_mode_mse(pred, target, mask)  # (B, K)
    best, winner = errs.min(dim=1)  # (B,), (B,)
    loss = best.mean()
    k = errs.shape[1]
    if relax > 0.0 and k > 1:
        others = (errs.sum(1) - best) / (k - 1)  # (B,)
        loss = loss + relax * others.mean()
    return loss, winner


def pairwise_mode_distance(pred: Tensor, per_point: bool = False) -> Tensor:
    """Distances between the motions of each pair of modes: pred (B, K, T, ...) → (B, P), P = K(K−1)/2.

    A mode's motion is x_t − x_0 (its own first frame is the reference). With ``per_point``
    False, pred is (B, K, T, D) and a pair's distance is the root-mean-square difference of the
    two motions over T and D. With ``per_point`` True, pred is (B, K, T, N, C) (e.g. N landmarks,
    C = 2) and the distance is the mean over T and N of the Euclidean distance over C, the
    definition of ``rt_smile.train.metrics.motion_distance`` (in IOD for canonical landmarks).
    """
    m = pred - pred[:, :, :1]  # (B, K, T, ...) motion
    i, j = torch.triu_indices(m.shape[1], m.shape[1], offset=1, device=m.device)  # (P,) each
    diff = (m[:, i] - m[:, j]).square()  # (B, P, T, ...)
    if per_point:
        return torch.sqrt(diff.sum(-1) + 1e-12).flatten(2).mean(-1)
    return torch.sqrt(diff.flatten(2).mean(-1) + 1e-12)


def diversity_loss(pred: Tensor, margin: float, per_point: bool = False) -> Tensor:
    """Hinge pushing the K modes' motions apart: pred (B, K, T, D) (or (B, K, T, N, C) with
    ``per_point``) → scalar.

    mean over samples and mode pairs of max(0, margin − d(k, l)), where d is the distance between
    the two modes' motions x_t − x_0 (``pairwise_mode_distance``, same units as pred). Pairs
    already further apart than ``margin`` contribute 0 (and no gradient), so the modes separate
    up to the margin and are otherwise left to the reconstruction loss. Motion, not position: a
    constant offset does not count as diversity. Zero for K = 1.
    """
    if pred.shape[1] < 2:
        return pred.sum() * 0.0
    return F.relu(margin - pairwise_mode_distance(pred, per_point)).mean()


def energy_score(samples: Tensor, target: Tensor) -> Tensor:
    """Energy score of a set of model samples against one data sample: samples (B, S, T, D),
    target (B, T, D), S ≥ 2 → scalar (mean over B).

    ES = mean_s d(X_s, y) − ½ · mean_{s≠s'} d(X_s, X_s'), with d the root-mean-square difference
    over T and D. It is a strictly proper scoring rule (Gneiting & Raftery 2007): its expectation
    over the data is smallest when the samples' distribution is the data's distribution given
    the same condition, spread included. The first term alone pulls every sample onto the data
    (the mean, or fixed modes); the second keeps them as spread out as the data are. Here the S
    samples are every mode of several noise draws, so the K modes together with the noise must
    reproduce the distribution of smiles for a given face and class.
    """
    s = samples.shape[1]
    to_data = _rms(samples - target.unsqueeze(1)).mean(1)  # (B,)
    i, j = torch.triu_indices(s, s, offset=1, device=samples.device)  # (P,) each
    between = _rms(samples[:, i] - samples[:, j]).mean(1)  # (B,) mean over unordered pairs
    return (to_data - 0.5 * between).mean()


def _rms(diff: Tensor) -> Tensor:
    """(B, P, T, D) → (B, P) root-mean-square over T and D (a floor keeps the gradient finite)."""
    return torch.sqrt(diff.square().flatten(2).mean(-1) + 1e-12)


def jerk_loss(seq: Tensor) -> Tensor:
    """seq (..., T, D) → mean squared third time difference (jerk per frame³); 0 if T < 4.

    A smoothness regulariser: penalises frame-to-frame rattling while leaving slow motion free.
    """
    if seq.shape[-2] < 4:
        return seq.sum() * 0.0
    return torch.diff(seq, n=3, dim=-2).square().mean()


def neutral_start_loss(pred: Tensor, x0: Tensor, frames: int = 1) -> Tensor:
    """pred (B, K, T, D) or (B, T, D), x0 (B, D) → MSE of the first ``frames`` frames to x0.

    Keeps every mode starting from the input's own neutral shape.
    """
    start = pred[..., :frames, :]
    ref = x0.reshape(x0.shape[0], *([1] * (pred.dim() - 2)), x0.shape[-1])
    return (start - ref).square().mean()


def class_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of a sequence classifier's logits against the class labels.

    logits (B, C), or (B, K, C) for K modes that must all be of their sample's class; labels (B,)
    long (0 = spontaneous, 1 = posed). Mean over samples (and modes).
    """
    if logits.dim() == 3:
        labels = labels.unsqueeze(1).expand(-1, logits.shape[1])  # (B, K)
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten())
    return F.cross_entropy(logits, labels)
