"""Quality of the shipped weights on real photos, through the photo → video path of
``rt-smile generate``.

    python benchmarks/photos.py [PHOTO ...]   # default: the bundled sample + ../shared/data/faces/*

For each photo and class (``rt_smile.train.photo_eval``): class of every mode, diversity, realism
against the photo's own reference (SynthSmile's data process applied to the photo's neutral face:
its noise floor, the K = 1 baseline, and the pooled held-out set for context), novelty, peak
lip-corner speed, neutral start. Then the video round trip: ``rt-smile generate`` (4 modes,
4 s, posed) into a temporary folder, MediaPipe on every decoded frame, mean distance to
``landmarks.json`` in IOD.
Writes benchmarks/results/photos.json (photo file names only; no image is stored).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info

from rt_smile.cli import main as cli_main
from rt_smile.config import DetectorConfig
from rt_smile.face.align import frame_of
from rt_smile.face.landmarks import LandmarkDetector, detect_face, make_detector
from rt_smile.io.checkpoint import default_weights_path, load_cmmnet, read_info
from rt_smile.io.images import load_image
from rt_smile.io.video import read_video
from rt_smile.train.classifier import ClassifierTraining, train_classifier
from rt_smile.train.photo_eval import Reference, evaluate_photo
from rt_smile.train.trainer import TrainConfig, synth_data

ROOT = Path(__file__).resolve().parents[1]
SHARED_FACES = ROOT.parent / "shared" / "data" / "faces"


def reference(weights: Path) -> Reference:
    known = TrainConfig.__dataclass_fields__
    config = TrainConfig(
        **{k: v for k, v in read_info(weights).get("train_config", {}).items() if k in known}
    )
    train, test = synth_data(config).split_by_identity(config.test_fraction, config.split_seed)
    return Reference.build(train_classifier(train, ClassifierTraining(seed=123)), train, test)


def video_round_trip(photo: Path, detector: LandmarkDetector, weights: Path) -> dict[str, Any]:
    """Mean MediaPipe-to-landmarks.json distance (IOD) over every decoded frame of every mode."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "gen"
        args = [
            "generate",
            str(photo),
            "--class",
            "posed",
            "--modes",
            "4",
            "--seconds",
            "4",
            "--out",
            str(out),
            "--weights",
            str(weights),
        ]
        assert cli_main(args) == 0
        info = json.loads((out / "landmarks.json").read_text())
        errors, frames = [], 0
        for k, targets in enumerate(np.asarray(info["modes"])):
            decoded, _ = read_video(out / f"mode_{k}.mp4")
            frames += len(decoded)
            for frame, target in zip(decoded, targets, strict=True):
                found = detect_face(frame, DetectorConfig(), detector).points[:468]
                iod = np.linalg.norm(target[33] - target[263])
                errors.append(float(np.linalg.norm(found - target, axis=1).mean() / iod))
    return {
        "frames": frames,
        "mean_error_iod": float(np.mean(errors)),
        "max_frame_error_iod": float(np.max(errors)),
    }


def photo_neutral(path: Path, detector: LandmarkDetector) -> np.ndarray:  # type: ignore[type-arg]
    """The photo's aligned neutral landmarks (468, 2), as ``rt-smile generate`` has them."""
    face = detect_face(load_image(path), DetectorConfig(), detector)
    return frame_of(face).aligned


def ablation_args(doc: str | None, json_name: str) -> tuple[list[Path], Path, Path]:
    """The command line of a per-photo ablation benchmark: (photos, default the bundled sample;
    weights, default the shipped ones; JSON path, default ``results/ablations/json_name``)."""
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("photos", nargs="*", type=Path)
    ap.add_argument("--weights", type=Path, default=default_weights_path())
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "ablations" / json_name)
    args = ap.parse_args()
    return args.photos or [ROOT / "rt_smile" / "assets" / "astronaut.png"], args.weights, args.json


def write_results(
    path: Path, benchmark: str, weights: Path, data_source: str, t0: float, photos: list[dict[str, Any]]
) -> None:
    """Write a per-photo benchmark's JSON (machine info, weights, timing) and say so."""
    info = read_info(weights)
    result = {
        "benchmark": benchmark,
        "machine": machine_info(),
        "weights": weights.name,
        "weights_command": info.get("command", ""),
        "data_source": data_source,
        "seconds": round(time.perf_counter() - t0, 1),
        "photos": photos,
    }
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")


def photo_report(path: Path, ref: Reference, detector: LandmarkDetector, weights: Path) -> dict[str, Any]:
    neutral = photo_neutral(path, detector)
    model = load_cmmnet(weights)
    return {
        "photo": path.name,
        "classes": evaluate_photo(model, neutral, ref),
        "video_round_trip": video_round_trip(path, detector, weights),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("photos", nargs="*", type=Path)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "photos.json")
    ap.add_argument("--weights", type=Path, default=default_weights_path())
    args = ap.parse_args()
    photos = args.photos or [ROOT / "rt_smile" / "assets" / "astronaut.png", *sorted(SHARED_FACES.glob("*"))]
    photos = [p for p in photos if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp")]
    t0 = time.perf_counter()
    ref = reference(args.weights)
    detector = make_detector(DetectorConfig())
    reports = []
    for p in photos:
        reports.append(photo_report(p, ref, detector, args.weights))
        print(json.dumps(reports[-1])[:400], flush=True)
    source = "SynthSmile (synthetic): per photo, the data process applied to the photo's neutral "
    source += "landmarks; pooled held-out identities for context"
    write_results(args.json, "photos", args.weights, source, t0, reports)


if __name__ == "__main__":
    main()
