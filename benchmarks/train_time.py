"""Wall-clock time of the shipped weights' training command on this machine, against the
30-minute target, and whether its output is the shipped file.

    python benchmarks/train_time.py [--threads 2] [--keep DIR]

Runs the command recorded in ``benchmarks/results/training/train_log.json`` (``rt-smile train``,
the whole schedule) in a subprocess with ``OMP_NUM_THREADS`` set to ``--threads``, alone: run
nothing else on the machine meanwhile. Records the wall time, the time of each stage (from the
run's log), the generator's seconds per step over 50-step windows, the final losses beside the
shipped run's, and the largest difference between the run's weights and the shipped file's.
Writes benchmarks/results/train_time_cpu.json and train_time_cpu.png.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info
from _shipped import LOG, train_args

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SHIPPED_WEIGHTS = ROOT / "rt_smile" / "weights" / "cmmnet_synthsmile.safetensors"
TARGET_S = 30 * 60


def run_command(command: str, out: Path, threads: int) -> dict[str, float]:
    """Run ``command`` (an ``rt-smile train`` line) into ``out``; wall and CPU seconds, peak RSS."""
    exe = shutil.which("rt-smile") or str(Path(sys.executable).parent / "rt-smile")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([exe, *train_args(command, out)], env=env, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "max_rss_mib": round(after.ru_maxrss / 1024, 1)}


def stage_times(log: list[dict[str, Any]], started: float, wall: float) -> dict[str, float]:
    """Seconds from the process start to the first log entry (data, setup), the span of each
    stage's log entries, and the rest of the wall time (between stages, saving)."""
    stages = list(dict.fromkeys(r["stage"] for r in log))
    spans = {s: [r["time"] for r in log if r["stage"] == s] for s in stages}
    times = {"setup_before_first_log_entry": round(log[0]["time"] - started, 1)}
    times.update({s: round(t[-1] - t[0], 1) for s, t in spans.items()})
    times["rest"] = round(wall - sum(times.values()), 1)
    return times


def step_windows(log: list[dict[str, Any]], stage: str = "generator") -> list[dict[str, float]]:
    """Seconds per step between consecutive log entries of ``stage``."""
    rows = [r for r in log if r["stage"] == stage]
    return [
        {"step": b["step"], "s_per_step": round((b["time"] - a["time"]) / (b["step"] - a["step"]), 3)}
        for a, b in itertools.pairwise(rows)
    ]


def weight_difference(a: Path, b: Path) -> dict[str, Any]:
    """Largest absolute difference between the tensors of two safetensors files."""
    from safetensors.numpy import load_file

    ta, tb = load_file(str(a)), load_file(str(b))
    if ta.keys() != tb.keys():
        return {"same_tensors": False, "max_abs_diff": None}
    diffs = [float(np.max(np.abs(ta[k].astype(np.float64) - tb[k]))) if ta[k].size else 0.0 for k in ta]
    return {"same_tensors": True, "max_abs_diff": max(diffs), "identical": max(diffs) == 0.0}


def _has_avx512() -> bool:
    """Whether the CPU has AVX-512 (its matrix kernels run about twice as fast as AVX2 ones)."""
    try:
        return " avx512f " in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def final_losses(log: list[dict[str, Any]]) -> dict[str, Any]:
    last = [r for r in log if r["stage"] == "generator"][-1]
    return {k: v for k, v in last.items() if k not in ("stage", "time")}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    stages = result["stage_s"]
    left = 0.0
    for name, seconds in stages.items():
        ax1.barh(0, seconds / 60, left=left / 60, label=name)
        left += seconds
    ax1.barh(1, result["run"]["wall_s"] / 60, color="grey", label="wall clock")
    ax1.axvline(TARGET_S / 60, color="red", ls="--", label="30-minute target")
    ax1.set_yticks([0, 1], ["stages (log)", "whole command"])
    ax1.set_xlabel("minutes")
    ax1.legend(fontsize=7, loc="lower right")
    windows = result["generator_s_per_step"]
    ax2.plot([w["step"] for w in windows], [w["s_per_step"] for w in windows], marker=".")
    ax2.set_xlabel("generator step")
    ax2.set_ylabel("s per step (50-step windows)")
    ax2.set_ylim(bottom=0)
    fig.suptitle(f"rt-smile train, shipped command: {result['machine']['cpu']}, {result['threads']} threads")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep the run's output folder here")
    parser.add_argument("--json", type=Path, default=RESULTS / "train_time_cpu.json")
    args = parser.parse_args()
    shipped = json.loads(LOG.read_text())
    command = shipped["info"]["command"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        started = time.time()
        run = run_command(command, out, args.threads)
        log = json.loads((out / "train_log.json").read_text())["log"]
        result = {
            "benchmark": "train_time",
            "machine": {**machine_info(), "torch_threads": args.threads, "avx512": _has_avx512()},
            "threads": args.threads,
            "command": command,
            "target_s": TARGET_S,
            "run": run,
            "within_target": run["wall_s"] <= TARGET_S,
            "stage_s": stage_times(log, started, run["wall_s"]),
            "generator_s_per_step": step_windows(log),
            "final_losses": final_losses(log),
            "shipped_final_losses": final_losses(shipped["log"]),
            "weights_vs_shipped": weight_difference(out / "cmmnet.safetensors", SHIPPED_WEIGHTS),
        }
        if args.keep:
            shutil.copytree(out, args.keep, dirs_exist_ok=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.json.with_suffix(".png"))
    summary = ("run", "within_target", "stage_s", "weights_vs_shipped")
    print(json.dumps({k: result[k] for k in summary}, indent=1))


if __name__ == "__main__":
    main()
