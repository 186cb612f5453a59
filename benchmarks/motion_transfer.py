"""What per-photo realism asks of the face a motion is computed on: Fréchet distances of the data
process's *own* smiles, computed on another face and moved onto the photo.

    python benchmarks/motion_transfer.py [PHOTO ...]  # default: the bundled sample + ../shared/data/faces/*

The generator makes landmark motion in the landmark VAE's code space, from the neutral code of
the training face nearest the photo (its anchor), and adds that motion to the photo's own
landmarks. Here the data process itself (SynthSmile) is run on a source face, and each
sequence's motion (frames minus frame 0) is added to the photo's neutral landmarks; the Fréchet
distance to one half of the photo's own reference (60 sequences), in the evaluation classifier's
feature space, is what a generator that reproduced the data process exactly on that source face
would score. As in ``evaluate_photo``, each is the mean (and range) over ``FLOOR_DRAWS``
independent sets of 60 (``floor_sets``, the same seeds for every source). Source faces: the
photo's own landmarks (this is ``evaluate_photo``'s noise floor), the VAE's reconstruction of
them (decode(encode(neutral))), the decoded anchor code that the shipped weights start from, and
MediaPipe's canonical face (where a ``--motion-face template`` model makes its motion). Each
other source's motion is moved onto the photo twice: added as it is, and retargeted through the
expression basis (``rt_smile.data.retarget``; keys ending ``_retargeted``).
Writes benchmarks/results/ablations/motion_transfer.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info
from photos import SHARED_FACES, reference

from rt_smile.config import DetectorConfig
from rt_smile.data.retarget import Retarget
from rt_smile.data.sequences import CLASSES
from rt_smile.face.align import align_to_canonical, canonical_template
from rt_smile.face.landmarks import LandmarkDetector, detect_face, make_detector
from rt_smile.io.checkpoint import default_weights_path, load_cmmnet
from rt_smile.io.images import load_image
from rt_smile.models.cmmnet import CMMNet
from rt_smile.train.classifier import features
from rt_smile.train.metrics import frechet_distance
from rt_smile.train.photo_eval import Reference, floor_sets, photo_reference

ROOT = Path(__file__).resolve().parents[1]
Face = NDArray[np.float64]


@torch.no_grad()
def source_faces(model: CMMNet, neutral: Face) -> dict[str, Face]:
    """(468, 2) aligned source faces: the photo's own, its VAE reconstruction, its anchor's."""
    x = torch.from_numpy(neutral).float()[None]
    own_code = model.vae.encode(x)[0]
    return {
        "own_face": neutral,  # the noise floor of evaluate_photo
        "vae_reconstruction": model.vae.decode(own_code)[0].reshape(-1, 2).double().numpy(),
        "anchor": model.vae.decode(model.neutral_code(x))[0].reshape(-1, 2).double().numpy(),
        "template": canonical_template(),
    }


def moved(seqs: list[Face], source: Face, neutral: Face, retarget: bool) -> list[Face]:
    """Each sequence's motion (frames minus frame 0) on ``neutral``: added as it is, or
    retargeted from the source face through the expression basis."""
    if not retarget:
        return [s - s[:1] + neutral[None] for s in seqs]
    rt = Retarget.between(source, neutral)
    return [neutral[None] + rt.apply(s - s[:1]) for s in seqs]


def _mean_fd(ref: Reference, sets: list[list[Face]], target: Face) -> dict[str, Any]:
    fds = [frechet_distance(features(ref.classifier, seqs), target) for seqs in sets]
    return {"mean": float(np.mean(fds)), "range": [min(fds), max(fds)]}


def photo_report(path: Path, ref: Reference, model: CMMNet, detector: LandmarkDetector) -> dict[str, Any]:
    pts = detect_face(load_image(path), DetectorConfig(), detector).points[:468]
    neutral = align_to_canonical(pts).apply(pts)
    own = photo_reference(neutral)
    n = len(own[0]) // 2
    sources = source_faces(model, neutral)
    # the same seeds for every source face: its sets differ from the floor's by the face alone
    drawn = {key: floor_sets(face, n, seed=0) for key, face in sources.items()}
    out: dict[str, Any] = {"photo": path.name}
    out["source_face_offset_iod"] = {k: float(np.abs(f - neutral).mean()) for k, f in sources.items()}
    for label, name in enumerate(CLASSES):
        target = features(ref.classifier, own[label][:n])
        out[name] = {}
        for key, sets in drawn.items():
            for retarget in (False, True) if key != "own_face" else (False,):
                seqs = [moved(d[label], sources[key], neutral, retarget) for d in sets]
                out[name][key + ("_retargeted" if retarget else "")] = _mean_fd(ref, seqs, target)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("photos", nargs="*", type=Path)
    ap.add_argument(
        "--json", type=Path, default=ROOT / "benchmarks" / "results" / "ablations" / "motion_transfer.json"
    )
    ap.add_argument(
        "--weights", type=Path, default=default_weights_path(), help="weights with anchors (motion_face own)"
    )
    args = ap.parse_args()
    photos = args.photos or [ROOT / "rt_smile" / "assets" / "astronaut.png", *sorted(SHARED_FACES.glob("*"))]
    ref = reference(args.weights)
    model = load_cmmnet(args.weights).eval()
    detector = make_detector(DetectorConfig())
    reports = []
    for path in photos:
        reports.append(photo_report(path, ref, model, detector))
        print(json.dumps(reports[-1]), flush=True)
    report = {
        "benchmark": "motion_transfer",
        "machine": machine_info(),
        "weights": args.weights.name,
        "data_source": "SynthSmile (synthetic) data process on each source face, moved onto the photo",
        "frechet_distance": reports,
    }
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
