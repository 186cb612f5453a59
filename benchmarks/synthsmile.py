"""Class statistics and example trajectories of SynthSmile (synthetic data), for the docs.

    python benchmarks/synthsmile.py [--n 1000] [--seed 0]

Writes benchmarks/results/synthsmile_stats.json and docs/synthsmile_trajectories.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info

from rt_smile.data.synthetic import SynthConfig, generate, plot_trajectories, smile_measures

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    config = SynthConfig(n_sequences=args.n, seed=args.seed)
    t0 = time.perf_counter()
    data = generate(config)
    seconds = time.perf_counter() - t0
    lengths = data.lengths() / data.fps
    report = {
        "benchmark": "synthsmile",
        "machine": machine_info(),
        "config": asdict(config),
        "generation_seconds": round(seconds, 2),
        "sequences": len(data),
        "frames": int(data.lengths().sum()),
        "length_s": {"min": float(lengths.min()), "mean": float(lengths.mean()), "max": float(lengths.max())},
        "classes": smile_measures(data),
    }
    (ROOT / "benchmarks" / "results" / "synthsmile_stats.json").write_text(json.dumps(report, indent=2))
    plot_trajectories(data, ROOT / "docs" / "synthsmile_trajectories.png")
    print(json.dumps(report["classes"], indent=2), f"\n{seconds:.1f} s")


if __name__ == "__main__":
    main()
