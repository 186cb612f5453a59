"""Per-frame latency of the translator on the CPU (sample face, real landmarks).

    python benchmarks/translator.py [--repeats 200] [--out benchmarks/results/translator_cpu.json]

Records p50/p99 per frame at 256² and 512², batch 1 and 4, with machine info, and a plot.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info

from rt_smile.config import CropConfig, DetectorConfig
from rt_smile.data.expressions import apply_expression
from rt_smile.face.align import crop_face
from rt_smile.face.landmarks import detect_face
from rt_smile.io.images import load_image
from rt_smile.models.translator import Translator, prepare_face

SAMPLE = Path(__file__).resolve().parents[1] / "rt_smile" / "assets" / "astronaut.png"
EXPRESSIONS = [{"AU12": 0.9, "AU6": 0.5}, {"AU12": 0.8, "AU25": 0.7, "AU26": 0.4}, {"AU45": 1.0}, {}]


def _targets(landmarks: NDArray[Any], batch: int, step: int) -> torch.Tensor:
    rows = [
        apply_expression(landmarks, EXPRESSIONS[(step + i) % len(EXPRESSIONS)])[:468] for i in range(batch)
    ]
    return torch.from_numpy(np.stack(rows)).float()


def run_case(photo: NDArray[Any], size: int, batch: int, repeats: int, warmup: int) -> dict[str, Any]:
    face = detect_face(photo, DetectorConfig())
    crop = crop_face(photo, face, CropConfig(size=size))
    prior = prepare_face(crop.image, crop.landmarks)
    translator = Translator(size)
    targets = [_targets(crop.landmarks, batch, s) for s in range(len(EXPRESSIONS))]
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            translator.render(prior, targets[i % len(targets)])
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    t = np.asarray(times)
    return {
        "size": size,
        "batch": batch,
        "repeats": repeats,
        "p50_ms": round(float(np.percentile(t, 50)), 3),
        "p99_ms": round(float(np.percentile(t, 99)), 3),
        "p50_ms_per_frame": round(float(np.percentile(t, 50)) / batch, 3),
        "fps": round(1e3 * batch / float(np.percentile(t, 50)), 1),
    }


def plot(results: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [f"{r['size']}² ×{r['batch']}" for r in results]
    x = np.arange(len(results))
    ax.bar(x - 0.2, [r["p50_ms"] for r in results], 0.4, label="p50")
    ax.bar(x + 0.2, [r["p99_ms"] for r in results], 0.4, label="p99")
    ax.axhline(4.0, color="k", ls="--", lw=0.8, label="target 4 ms (256², ×1)")
    ax.set_xticks(x, labels)
    ax.set_ylabel("ms per call (whole batch)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/translator_cpu.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    photo = load_image(SAMPLE)
    results = [run_case(photo, s, b, args.repeats, args.warmup) for s in (256, 512) for b in (1, 4)]
    info = machine_info()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"benchmark": "translator", "machine": info, "results": results}, indent=2)
    )
    plot(results, args.out.with_suffix(".png"), f"translator per call, {info['cpu']}, {args.threads} threads")
    for r in results:
        print(r)


if __name__ == "__main__":
    main()
