"""Real blinks in videos against our blink, as MediaPipe reads both.

    python benchmarks/real_blinks.py VIDEO [VIDEO ...] [--source TEXT] [--out F.json]

Issue 2 asks that AU45 = 1 shrink both lid gaps (159–145, 386–374) to at most 30 % of neutral,
as MediaPipe sees it. This asks how MediaPipe reads people who really blink, and how it reads
our blink of the same people:

- **real blinks:** every frame of each video is read by MediaPipe (one face, the largest). A
  blink is a run of frames, at most ``MAX_BLINK_SECONDS`` long, in which both eyes' lid pairs,
  measured across the eye, fall under ``CLOSED_SHARE`` of their median over the whole video (a
  longer run is a look down, not a blink; a run that touches the video's first or last frame,
  or a frame where no face was found, may be cut short, and is left out too). At the run's most
  closed frame, each eye's lid gap (the whole 159–145 distance, and its part across the eye) is
  divided by its median over the open-eyed frames (``OPEN_SHARE``) within ``CONTEXT_FRAMES``
  around the run;
- **our blink:** the closed loop (``rt_smile.train.fidelity.ClosedLoop``) on ``--frames`` open-eyed
  frames spread over each video: AU45 = 1 rendered on that frame, re-detected, and its lid gaps
  divided by those of the re-detected zero-expression render.

Metrics only; the videos stay outside the project (the JSON names each file and its size).
Writes benchmarks/results/real_blinks.json and .png by default.
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
from closed_loop import lid_offsets

from rt_smile.config import DetectorConfig
from rt_smile.face import topology as topo
from rt_smile.face.landmarks import LandmarkDetector, make_detector
from rt_smile.io.video import read_video
from rt_smile.train.fidelity import (
    REFERENCE_EXPRESSIONS,
    ClosedLoop,
    eyelid_gap_ratios,
    eyelid_vertical_parts,
)

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
#: A frame's eyes count as closed under this share of the video's median lid gap across the eye
#: (both eyes) ...
CLOSED_SHARE = 0.35
#: ... and as open from this share up (both eyes).
OPEN_SHARE = 0.8
#: Longer closed runs are not counted as blinks (a look down).
MAX_BLINK_SECONDS = 0.5
#: The open gaps a blink is divided by: the median over the open-eyed frames among this many
#: frames either side of it.
CONTEXT_FRAMES = 40
LIMIT = 0.30


def lid_gaps(points: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per eye (right, left): the whole lid gap and its part across the eye
    (``closed_loop.lid_offsets``), IOD → (2, 2)."""
    offsets = lid_offsets(points)
    return np.stack([np.linalg.norm(offsets, axis=1), np.abs(offsets[:, 1])], axis=1)


def track_lids(frames: NDArray[np.uint8], detector: LandmarkDetector) -> tuple[NDArray[np.float64], float]:
    """(T, 2, 2) lid gaps per frame (``lid_gaps``; NaN where no face is found) and the median
    IOD in pixels."""
    gaps, iods = [], []
    for frame in frames:
        faces = detector.detect_all(frame)
        if faces:
            face = max(faces, key=lambda f: f.iod)
            gaps.append(lid_gaps(face.points[: topo.NUM_LANDMARKS]))
            iods.append(face.iod)
        else:
            gaps.append(np.full((2, 2), np.nan))
    return np.asarray(gaps), float(np.median(iods)) if iods else float("nan")


def closed_runs(across: NDArray[np.float64]) -> list[tuple[int, int]]:
    """Runs [start, end) of frames whose both eyes are closed (``across`` (T, 2) per eye)."""
    closed = np.all(across < CLOSED_SHARE * np.nanmedian(across, axis=0), axis=1)
    runs, start = [], None
    for i, c in enumerate([*closed, False]):
        if c and start is None:
            start = i
        elif not c and start is not None:
            runs.append((start, i))
            start = None
    return runs


def open_eyed(across: NDArray[np.float64]) -> NDArray[np.bool_]:
    """(T,) frames whose both eyes are open: across-the-eye gaps of at least ``OPEN_SHARE`` of
    the video's median (False where no face was found)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(np.all(across >= OPEN_SHARE * np.nanmedian(across, axis=0), axis=1))


def real_blinks(gaps: NDArray[np.float64], fps: float) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Each blink's most closed frame: gap ratios against the open-eyed frames around it; and
    how many closed runs were left out, by reason."""
    max_frames = max(1, round(MAX_BLINK_SECONDS * fps))
    found = ~np.isnan(gaps).any(axis=(1, 2))
    is_open = open_eyed(gaps[:, :, 1])
    blinks: list[dict[str, Any]] = []
    left_out = {
        "longer than a blink": 0,
        "at the video's ends or a frame without a face": 0,
        "no open frames near": 0,
    }
    for start, end in closed_runs(gaps[:, :, 1]):
        if end - start > max_frames:
            left_out["longer than a blink"] += 1
            continue
        if start == 0 or end == len(gaps) or not (found[start - 1] and found[end]):
            left_out["at the video's ends or a frame without a face"] += 1
            continue
        near = np.r_[max(0, start - CONTEXT_FRAMES) : start, end : min(len(gaps), end + CONTEXT_FRAMES)]
        near = near[is_open[near]]
        if len(near) == 0:
            left_out["no open frames near"] += 1
            continue
        k = start + int(np.argmin(gaps[start:end, :, 1].mean(1)))
        open_gap = np.median(gaps[near, :, 0], axis=0)
        blinks.append(
            {
                "frames": [start, end - 1],
                "closest": k,
                "gap_ratio": [round(float(v), 3) for v in gaps[k, :, 0] / open_gap],
                "vertical_part": [round(float(v), 3) for v in gaps[k, :, 1] / open_gap],
                "open_gap_iod": [round(float(v), 4) for v in open_gap],
            }
        )
    return blinks, left_out


def our_blinks(
    frames: NDArray[np.uint8], gaps: NDArray[np.float64], detector: LandmarkDetector, count: int, size: int
) -> list[dict[str, Any]]:
    """The closed loop's blink on ``count`` open-eyed frames spread over the video."""
    candidates = np.flatnonzero(open_eyed(gaps[:, :, 1]))
    picks = (
        candidates[np.linspace(0, len(candidates) - 1, count).round().astype(int)] if len(candidates) else []
    )
    out = []
    for k in dict.fromkeys(int(i) for i in picks):
        loop = ClosedLoop(frames[k], detector, size=size)
        reference = loop.run("neutral", {})
        blink = loop.run("blink", REFERENCE_EXPRESSIONS["blink"])
        out.append(
            {
                "frame": k,
                "size": size,
                "gap_ratio": [round(v, 3) for v in eyelid_gap_ratios(blink, reference)],
                "vertical_part": [round(v, 3) for v in eyelid_vertical_parts(blink, reference)],
                "moved_error_ratio": round(blink.moved_error_ratio, 3),
            }
        )
    return out


def worse_eyes(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [max(r[key]) for r in rows]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Over blinks (the worse eye of each): median, range, and how many hold the 0.30 limit."""
    out: dict[str, Any] = {"blinks": len(rows)}
    for key in ("gap_ratio", "vertical_part"):
        v = np.asarray(worse_eyes(rows, key))
        if len(v):
            out[key] = {
                "median": round(float(np.median(v)), 3),
                "min": round(float(v.min()), 3),
                "max": round(float(v.max()), 3),
                f"at_most_{LIMIT:.2f}": int((v <= LIMIT).sum()),
            }
    return out


def survey_video(path: Path, detector: LandmarkDetector, count: int, sizes: list[int]) -> dict[str, Any]:
    frames, fps = read_video(path)
    gaps, iod_px = track_lids(frames, detector)
    if np.isnan(gaps).all():
        raise SystemExit(f"{path}: no face found in any frame")
    real, left_out = real_blinks(gaps, fps)
    ours = [row for size in sizes for row in our_blinks(frames, gaps, detector, count, size)]
    is_open = open_eyed(gaps[:, :, 1])
    return {
        "video": path.name,
        "bytes": path.stat().st_size,
        "frames": len(frames),
        "fps": round(fps, 2),
        "median_iod_px": round(iod_px, 1),
        "frames_without_face": int(np.isnan(gaps[:, 0, 0]).sum()),
        "open_eyed_frames": int(is_open.sum()),
        "median_open_gap_iod": [round(float(v), 4) for v in np.median(gaps[is_open, :, 0], axis=0)],
        "closed_runs_left_out": left_out,
        "real": {"summary": summarise(real), "blinks": real},
        "ours": {"summary": summarise(ours), "blinks": ours},
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
    panels = (("gap_ratio", "whole lid gap"), ("vertical_part", "across the eye"))
    series = ((-0.15, "real", "o", "C0", "real blinks"), (0.15, "ours", "s", "C1", "AU45 = 1"))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for i, v in enumerate(result["videos"]):
            for dx, who, marker, color, name in series:
                y = worse_eyes(v[who]["blinks"], key)
                label = name if i == 0 else None
                ax.scatter(np.full(len(y), i + dx), y, marker=marker, c=color, s=14, alpha=0.6, label=label)
        ax.axhline(LIMIT, color="k", ls="--", lw=0.8)
        ax.set_xticks(range(len(result["videos"])), [v["video"] for v in result["videos"]], fontsize=7)
        ax.set_title(f"AU45 = 1 / real blink: {title} (worse eye)", fontsize=9)
    axes[0].set_ylabel("share of the open gap, as MediaPipe reads it")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("videos", type=Path, nargs="+")
    parser.add_argument("--frames", type=int, default=3, help="open-eyed frames per video for our blink")
    parser.add_argument("--sizes", default="256,512", help="working sizes for our blink")
    parser.add_argument("--source", default="", help="where the videos came from (recorded)")
    parser.add_argument("--out", type=Path, default=RESULTS / "real_blinks.json")
    args = parser.parse_args()
    missing = [str(v) for v in args.videos if not v.is_file()]
    if missing:
        parser.error(f"no such video: {', '.join(missing)}")
    sizes = [int(s) for s in args.sizes.split(",")]
    detector = make_detector(DetectorConfig(face="largest"))
    videos = [survey_video(v, detector, args.frames, sizes) for v in args.videos]
    result = {
        "benchmark": "real_blinks",
        "machine": machine_info(),
        "source": args.source,
        "method": {
            "closed_share": CLOSED_SHARE,
            "open_share": OPEN_SHARE,
            "max_blink_seconds": MAX_BLINK_SECONDS,
            "context_frames": CONTEXT_FRAMES,
            "limit": LIMIT,
        },
        "videos": videos,
    }
    args.out.write_text(json.dumps(result, indent=2))
    plot(result, args.out.with_suffix(".png"))
    for v in videos:
        print(v["video"], "real", v["real"]["summary"], "ours", v["ours"]["summary"])


if __name__ == "__main__":
    main()
