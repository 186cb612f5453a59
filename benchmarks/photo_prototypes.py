"""What per-photo realism asks of a generator: Fréchet distances of *prototypes* of the data.

    python benchmarks/photo_prototypes.py [PHOTO]     # default: the bundled sample face

The per-photo realism check of ``benchmarks/photos.py`` compares generated smiles with the photo's
own reference (SynthSmile's data process applied to the photo's neutral face). Here one half of
that reference is clustered (k-means on whole sequences) and each sequence is replaced by its
cluster's mean sequence; the Fréchet distance of those prototypes to the other half, in the
evaluation classifier's feature space, shows how much of the distance a generator that outputs
k fixed smiles per face pays for lacking the spread within each smile, even if its k smiles
were exact. k = 60 (every sequence its own cluster) is the noise floor. Beside it, the spread
(standard deviation over sequences) of the peak inner-lip opening (13-14, IOD) of the reference
and of the shipped weights' sequences (30 draws × 4 modes): how much a smile varies.
Writes benchmarks/results/ablations/photo_prototypes.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info
from photos import reference

from rt_smile.config import DetectorConfig
from rt_smile.data.sequences import CLASSES
from rt_smile.face.align import align_to_canonical
from rt_smile.face.landmarks import detect_face, make_detector
from rt_smile.io.checkpoint import default_weights_path, load_cmmnet
from rt_smile.io.images import load_image
from rt_smile.train.classifier import features
from rt_smile.train.metrics import frechet_distance, pad_to
from rt_smile.train.photo_eval import generate_draws, photo_reference

ROOT = Path(__file__).resolve().parents[1]
LENGTH = 150
CLUSTERS = (4, 8, 16, 60)


def prototypes(seqs: list[NDArray[np.float64]], k: int, seed: int = 0) -> list[NDArray[np.float64]]:
    """Each sequence replaced by the mean of its k-means cluster (k ≥ len: the sequences)."""
    x = np.stack([pad_to(s, LENGTH) for s in seqs]).reshape(len(seqs), -1)
    if k >= len(x):
        return [row.reshape(LENGTH, -1, 2) for row in x]
    rng = np.random.default_rng(seed)
    centres = x[rng.choice(len(x), k, replace=False)]
    for _ in range(30):
        label = ((x[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        centres = np.stack([x[label == j].mean(0) if (label == j).any() else centres[j] for j in range(k)])
    return [centres[j].reshape(LENGTH, -1, 2) for j in label]


def lip_opening_spread(seqs: list[NDArray[np.float64]]) -> float:
    """Standard deviation over sequences of the peak inner-lip opening (13-14) above frame 0."""
    peaks = [np.linalg.norm(s[:, 13] - s[:, 14], axis=-1) for s in seqs]
    return float(np.std([(p - p[0]).max() for p in peaks]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("photo", nargs="?", type=Path, default=ROOT / "rt_smile" / "assets" / "astronaut.png")
    ap.add_argument(
        "--json", type=Path, default=ROOT / "benchmarks" / "results" / "ablations" / "photo_prototypes.json"
    )
    args = ap.parse_args()
    ref = reference(default_weights_path())
    face = detect_face(load_image(args.photo), DetectorConfig(), make_detector(DetectorConfig()))
    neutral = align_to_canonical(face.points[:468]).apply(face.points[:468])
    own = photo_reference(neutral)
    model = load_cmmnet(default_weights_path())
    results: dict[str, Any] = {}
    spread: dict[str, Any] = {}
    for label, name in enumerate(CLASSES):
        n = len(own[label]) // 2
        target = features(ref.classifier, own[label][:n])
        results[name] = {
            f"k={k}": frechet_distance(features(ref.classifier, prototypes(own[label][n:], k)), target)
            for k in CLUSTERS
        }
        multi, _ = generate_draws(model, neutral, label, 30, LENGTH, label)
        spread[name] = {
            "reference": lip_opening_spread(own[label]),
            "shipped_weights": lip_opening_spread([s for modes in multi for s in modes]),
        }
        print(name, {key: round(v, 1) for key, v in results[name].items()}, spread[name])
    report = {
        "benchmark": "photo_prototypes",
        "photo": args.photo.name,
        "machine": machine_info(),
        "frechet_distance": results,
        "peak_inner_lip_opening_spread_iod": spread,
    }
    args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
