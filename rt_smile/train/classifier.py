"""Training and use of the evaluation classifier (``rt_smile.models.classifier``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from rt_smile.data.sequences import SmileSequences
from rt_smile.models.classifier import ClassifierConfig, SequenceClassifier
from rt_smile.train.metrics import MOTION_POINTS, motion, pad_to

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifierTraining:
    """How the evaluation classifier is trained."""

    epochs: int = 40
    batch: int = 64
    lr: float = 3e-3
    seed: int = 0


def motion_batch(seqs: Sequence[NDArray[np.floating]], length: int) -> torch.Tensor:  # type: ignore[type-arg]
    """(B, length, P, 2) padded motions of landmark sequences (T, 468, 2)."""
    return torch.from_numpy(np.stack([pad_to(motion(s), length) for s in seqs])).float()


def _all_sequences(data: SmileSequences) -> list[NDArray[np.float32]]:
    return [data.sequence(i) for i in range(len(data))]


def train_classifier(
    data: SmileSequences,
    training: ClassifierTraining = ClassifierTraining(),
    config: ClassifierConfig | None = None,
) -> SequenceClassifier:
    """Fit a fresh classifier on ``data`` (seeded; a few seconds on a CPU for ~1000 sequences)."""
    cfg = config or ClassifierConfig(n_points=len(MOTION_POINTS))
    torch.manual_seed(training.seed)
    model = SequenceClassifier(cfg)
    x = motion_batch(_all_sequences(data), cfg.length)
    y = torch.from_numpy(data.labels)
    opt = torch.optim.AdamW(model.parameters(), lr=training.lr, weight_decay=1e-3)
    gen = torch.Generator().manual_seed(training.seed)
    model.train()
    for epoch in range(training.epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), training.batch):
            idx = order[i : i + training.batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
        logger.debug("classifier epoch %d loss %.4f", epoch, loss.item())
    return model.eval()


@torch.no_grad()
def predict(model: SequenceClassifier, seqs: Sequence[NDArray[np.floating]]) -> NDArray[np.int64]:  # type: ignore[type-arg]
    """Class index of each landmark sequence."""
    return model(motion_batch(seqs, model.config.length)).argmax(1).numpy()


@torch.no_grad()
def features(model: SequenceClassifier, seqs: Sequence[NDArray[np.floating]]) -> NDArray[np.float64]:  # type: ignore[type-arg]
    """(N, F) classifier features of landmark sequences (the Fréchet-distance space)."""
    return model.features(motion_batch(seqs, model.config.length)).double().numpy()
