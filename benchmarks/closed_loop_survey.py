"""Closed-loop checks on a folder of face photos the project has never seen.

    python benchmarks/closed_loop_survey.py PHOTO_DIR [--size 256] [--out F.json]

`benchmarks/closed_loop.py` follows a few photos in detail; this runs the same checks (issue 2's
closed-loop criteria) on every photo in PHOTO_DIR with one face and records, per photo, each
measure and whether it passes, and how many photos pass each check: all of them, and the
near-frontal ones (head turned by under 15°: the yaw ``face_frame`` undoes). A moved-point
ratio where the expression moved nothing (eyes already shut in the photo) counts as not
applicable.
Metrics only: no render is written. Photos the project may not ship stay outside it; the JSON
names each file and its size, so a run can be repeated on the same files. Writes
benchmarks/results/closed_loop_survey_SIZE.json and .png by default.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info
from closed_loop import evaluate, lid_offsets

from rt_smile.config import DetectorConfig
from rt_smile.face.align import frame_of
from rt_smile.face.landmarks import FaceLandmarks, LandmarkDetector, make_detector
from rt_smile.io.images import load_image

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
#: Faces smaller than this (IOD, source pixels) are left out: under 24 the engine refuses them,
#: and a few pixels more leave MediaPipe little to read.
MIN_IOD_PX = 40.0
NEAR_FRONTAL_YAW_DEG = 15.0
CLOSED_ACROSS_IOD = 0.03

#: check name → (measure, limit, "max" or "min")
CRITERIA: dict[str, tuple[str, float, str]] = {
    "closed smile: mean error": ("closed smile.mean_error_iod", 0.03, "max"),
    "closed smile: moved-point ratio": ("closed smile.moved_error_ratio", 0.5, "max"),
    "open smile: mean error": ("open smile.mean_error_iod", 0.03, "max"),
    "open smile: moved-point ratio": ("open smile.moved_error_ratio", 0.5, "max"),
    "blink: mean error": ("blink.mean_error_iod", 0.03, "max"),
    "blink: moved-point ratio": ("blink.moved_error_ratio", 0.5, "max"),
    "AU12 0.9: lip corners move": ("lip_corner_shift_iod_AU12_0.9", 0.08, "min"),
    "AU45 1: both lid gaps": ("eyelid_gap_ratio_AU45_1", 0.3, "max"),
    "AU45 1: both lid gaps, vertical part": ("eyelid_gap_vertical_part_AU45_1", 0.3, "max"),
    "AU25 0.7 + AU26 0.4: lips open": ("inner_lip_opening_iod_AU25_0.7_AU26_0.4", 0.08, "min"),
}


def lid_pairs(face: FaceLandmarks) -> list[dict[str, float]]:
    """Per eye, the photo's own lid pair (``closed_loop.lid_offsets``), rounded for the JSON."""
    return [
        {"along": round(float(along), 4), "across": round(float(across), 4)}
        for along, across in lid_offsets(face.points)
    ]


def measures(entry: dict[str, Any]) -> dict[str, float]:
    """The survey's measures of one photo (worse eye for the lid gaps)."""
    out: dict[str, float] = {}
    for e in entry["expressions"]:
        out[f"{e['expression']}.mean_error_iod"] = e["mean_error_iod"]
        out[f"{e['expression']}.moved_error_ratio"] = e["moved_error_ratio"]
    for key, value in entry["checks"].items():
        out[key] = float(max(value) if isinstance(value, list) else value)
    return out


def verdicts(m: dict[str, float], moved: dict[str, int]) -> dict[str, bool | None]:
    """Pass or fail per check; None (not applicable) for a moved-point ratio where the
    expression moved no point by 0.02 IOD (eyes already shut in the photo: nothing to close)."""
    out: dict[str, bool | None] = {}
    for name, (key, limit, kind) in CRITERIA.items():
        expression, _, measure = key.partition(".")
        if measure == "moved_error_ratio" and moved[expression] == 0:
            out[name] = None
        else:
            out[name] = bool(m[key] <= limit if kind == "max" else m[key] >= limit)
    return out


def survey_photo(path: Path, detector: LandmarkDetector, size: int) -> dict[str, Any]:
    """One photo's row; ``{"photo", "left_out"}`` (and a line on stderr) where it is left out."""
    photo = load_image(path)
    faces = detector.detect_all(photo)
    if len(faces) != 1 or faces[0].iod < MIN_IOD_PX:
        small = f", IOD {faces[0].iod:.0f} px" if len(faces) == 1 else ""
        reason = f"{len(faces)} faces{small}"
        print(f"left out {path.name}: {reason}", file=sys.stderr)
        return {"photo": path.name, "left_out": reason}
    entry, _ = evaluate(path.name, photo, detector, size)
    m = measures(entry)
    moved = {e["expression"]: e["moved_points"] for e in entry["expressions"]}
    face = faces[0]
    return {
        "photo": path.name,
        "bytes": path.stat().st_size,
        "iod_px": round(face.iod, 1),
        # the yaw the expressions undo (rt_smile.face.align.face_frame)
        "yaw_deg": round(frame_of(face).yaw_deg, 1),
        "neutral_error_iod": entry["expressions"][0]["mean_error_iod"],
        "lid_pairs_photo_iod": lid_pairs(face),
        "measures": {k: round(v, 4) for k, v in m.items()},
        "passes": verdicts(m, moved),
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def count(sel: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "photos": len(sel),
            "all checks": sum(all(v is not False for v in r["passes"].values()) for r in sel),
            **{name: sum(r["passes"][name] is True for r in sel) for name in CRITERIA},
            "not applicable": {
                name: n for name in CRITERIA if (n := sum(r["passes"][name] is None for r in sel))
            },
        }

    frontal = [r for r in rows if abs(r["yaw_deg"]) < NEAR_FRONTAL_YAW_DEG]
    return {"all": count(rows), f"near-frontal (|yaw| < {NEAR_FRONTAL_YAW_DEG:g} deg)": count(frontal)}


def closed_eyes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The eyes that are closed in the photo itself (lid pair under 0.03 IOD apart across the
    eye): how far apart MediaPipe keeps the pair along it."""
    return [
        {"photo": r["photo"], "eye": ("right", "left")[i], **pair}
        for r in rows
        for i, pair in enumerate(r["lid_pairs_photo_iod"])
        if abs(pair["across"]) < CLOSED_ACROSS_IOD
    ]


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(result["summary"].items())
    names = list(CRITERIA)
    fig, ax = plt.subplots(figsize=(8.5, 5.0))
    width = 0.8 / len(groups)
    for i, (group, counts) in enumerate(groups):
        share = [counts[n] / max(counts["photos"] - counts["not applicable"].get(n, 0), 1) for n in names]
        label = f"{group}: {counts['photos']} photos"
        ax.barh(np.arange(len(names)) + i * width, share, height=width, label=label)
    ax.set_yticks(np.arange(len(names)) + 0.4 - width / 2, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of photos that pass (of those where the check applies)")
    ax.set_title(f"Closed-loop checks on unseen photos ({result['size']}²)", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=len(groups))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path, help="folder of face photos")
    parser.add_argument("--size", type=int, choices=(256, 512), default=256)
    parser.add_argument("--source", default="", help="where the photos came from (recorded)")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/closed_loop_survey_SIZE.json")
    args = parser.parse_args()
    files = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in SUFFIXES)
    if not files:
        parser.error(f"no photos in {args.photos}")
    detector = make_detector(DetectorConfig(face="largest"))
    found = [survey_photo(f, detector, args.size) for f in files]
    rows = [r for r in found if "left_out" not in r]
    result = {
        "benchmark": "closed_loop_survey",
        "machine": machine_info(),
        "size": args.size,
        "source": args.source,
        "criteria": {n: {"measure": k, "limit": lim, "kind": kind} for n, (k, lim, kind) in CRITERIA.items()},
        "summary": summary(rows),
        "closed_eyes_in_photos": closed_eyes(rows),
        "left_out": [r for r in found if "left_out" in r],
        "photos": rows,
    }
    out = args.out or RESULTS / f"closed_loop_survey_{args.size}.json"
    out.write_text(json.dumps(result, indent=2))
    plot(result, out.with_suffix(".png"))
    for label, counts in result["summary"].items():
        print(label, counts)


if __name__ == "__main__":
    main()
