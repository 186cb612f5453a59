"""Closed-loop fidelity of the translator, and the docs contact sheet.

    python benchmarks/closed_loop.py

Renders neutral, closed smile, open smile and blink; re-detects each render with MediaPipe and
records the errors (IOD units) to benchmarks/results/closed_loop.json. Writes
docs/contact_sheet.png for the bundled sample face only. The metrics of two other identities are
recorded too, never their renders: matplotlib's sample portrait of Grace Hopper (installed with
matplotlib; a neutral face with closed lips and spectacles) and, where ../shared/data/faces exists
(photos not part of the project), those.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import cv2
import matplotlib
import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info

from rt_smile.config import DetectorConfig
from rt_smile.face import topology as topo
from rt_smile.face.landmarks import LandmarkDetector, make_detector
from rt_smile.io.images import load_image, save_png
from rt_smile.train.fidelity import (
    REFERENCE_EXPRESSIONS,
    ClosedLoop,
    LoopResult,
    chin_drop,
    eyelid_gap,
    eyelid_gap_ratios,
    eyelid_offset_floors,
    eyelid_sideways_offsets,
    eyelid_vertical_parts,
    inner_lip_opening,
    lip_corner_shift,
)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "rt_smile" / "assets" / "astronaut.png"
SHARED = ROOT.parent / "shared" / "data" / "faces"


LIDS = (topo.RIGHT_EYELID, topo.LEFT_EYELID)


def lid_offsets(points: NDArray[Any]) -> NDArray[np.float64]:
    """Per eye (right, left), lower-lid point minus upper-lid point (145 − 159, 374 − 386) in
    IOD: along the eye axis (33 → 263) and across it → (2, 2). A closed eye has ``across`` near
    0; ``along`` is how far MediaPipe keeps the pair apart sideways."""
    axis = points[topo.LEFT_EYE_OUTER] - points[topo.RIGHT_EYE_OUTER]
    iod = float(np.linalg.norm(axis))
    axis = axis / iod
    normal = np.array([-axis[1], axis[0]])
    d = np.stack([points[lower] - points[upper] for upper, lower in LIDS]) / iod
    return np.stack([d @ axis, d @ normal], axis=1)


def evaluate(
    name: str, photo: NDArray[Any], detector: LandmarkDetector, size: int
) -> tuple[dict[str, Any], list[LoopResult]]:
    loop = ClosedLoop(photo, detector, size=size)
    results = [loop.run(n, e) for n, e in REFERENCE_EXPRESSIONS.items()]
    named = {r.name: r for r in results}
    ref = results[0]
    blink = loop.run("AU45", {"AU45": 1.0})
    checks = {
        "lip_corner_shift_iod_AU12_0.9": round(lip_corner_shift(loop.run("AU12", {"AU12": 0.9}), ref), 4),
        "eyelid_gap_ratio_AU45_1": [round(r, 3) for r in eyelid_gap_ratios(blink, ref)],
        "eyelid_gap_horizontal_part_AU45_1": [round(r, 3) for r in eyelid_offset_floors(blink, ref)],
        "eyelid_gap_vertical_part_AU45_1": [round(r, 3) for r in eyelid_vertical_parts(blink, ref)],
        "eyelid_gap_neutral_iod": [round(eyelid_gap(ref.detected, p) / ref.iod, 4) for p in LIDS],
        # the same ratio for the targets themselves (photo's landmarks → AU45 = 1): what a render
        # that MediaPipe read exactly would give
        "eyelid_gap_ratio_AU45_1_target": [
            round(eyelid_gap(blink.target, p) / eyelid_gap(blink.neutral, p), 3) for p in LIDS
        ],
        "eyelid_sideways_offset_AU45_1_iod": [round(r, 4) for r in eyelid_sideways_offsets(blink)],
        "chin_drop_iod_AU26_0.4_asked_found": [
            round(v, 4) for v in chin_drop(loop.run("AU26", {"AU26": 0.4}), ref)
        ],
        "chin_drop_iod_closed_smile_asked_found": [
            round(v, 4) for v in chin_drop(named["closed smile"], ref)
        ],
        "inner_lip_opening_iod_AU25_0.7_AU26_0.4": round(
            inner_lip_opening(loop.run("AU25+26", {"AU25": 0.7, "AU26": 0.4}), ref), 4
        ),
    }
    return {
        "photo": name,
        "size": size,
        "expressions": [{**r.summary(), "regions": r.region_errors()} for r in results],
        "checks": checks,
    }, results


def contact_sheet(results: list[LoopResult], path: Path) -> None:
    tiles = []
    for r in results:
        tile = np.ascontiguousarray(r.frame.copy())
        cv2.putText(tile, r.name, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
        tiles.append(tile)
    save_png(path, np.concatenate(tiles, axis=1))


def main() -> None:
    detector = make_detector(DetectorConfig(face="largest"))
    report: list[dict[str, Any]] = []
    photo = load_image(SAMPLE)
    for size in (256, 512):
        entry, results = evaluate("astronaut.png (bundled sample)", photo, detector, size)
        report.append(entry)
        if size == 512:
            contact_sheet(results, ROOT / "docs" / "contact_sheet.png")
    other = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    for size in (256, 512):
        report.append(
            evaluate("matplotlib grace_hopper.jpg (metrics only)", load_image(other), detector, size)[0]
        )
    if SHARED.is_dir():
        for f in sorted(SHARED.glob("obama*")):
            for size in (256, 512):
                report.append(evaluate(f"shared/{f.name} (metrics only)", load_image(f), detector, size)[0])
    out = ROOT / "benchmarks" / "results" / "closed_loop.json"
    out.write_text(
        json.dumps({"benchmark": "closed_loop", "machine": machine_info(), "results": report}, indent=2)
    )
    for e in report:
        print(e["photo"], e["size"], e["checks"], [x["mean_error_iod"] for x in e["expressions"]])


if __name__ == "__main__":
    main()
