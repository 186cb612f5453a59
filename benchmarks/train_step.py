"""Seconds per generator training step on the CPU: the shipped command's configuration at LSTM
widths 256 and 192 (``rt-smile train --hidden``).

    python benchmarks/train_step.py [--rounds 5] [--steps 3] [--threads 2]

Widths alternate within each round, so the machine's drift spreads over both. The data are a
small SynthSmile draw with an untrained VAE: a step's cost does not depend on the values. Writes
benchmarks/results/train_step_cpu.json and train_step_cpu.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info
from _shipped import LOG, train_args

from rt_smile.cli import _train_config, build_parser
from rt_smile.train.trainer import Trainer, synth_data

RESULTS = Path(__file__).resolve().parent / "results"
WIDTHS = (256, 192)


def step_runner(hidden: int, out: Path) -> Callable[[], None]:
    """One generator training step (loss, backward, clipping, optimiser) of the shipped command's
    configuration at width ``hidden``."""
    command = json.loads(LOG.read_text())["info"]["command"]
    config = _train_config(build_parser().parse_args(train_args(command, out)))
    config = replace(config, hidden=hidden, n_sequences=200, n_identities=50)
    trainer = Trainer(config, synth_data(config), out)
    trainer._vae_setup()
    codes = trainer._encode_sequences()
    labels = torch.from_numpy(trainer.train_set.labels)
    params = [*trainer.model.conditional.parameters(), *trainer.model.multimode.parameters()]

    def run() -> None:
        idx = torch.randint(len(codes), (config.gen_batch,), generator=trainer.rng)
        loss, _ = trainer.generator_losses(codes[idx], labels[idx], trainer.styles[idx])
        trainer.opt_gen.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        trainer.opt_gen.step()

    return run


def measure(rounds: int, steps: int) -> list[dict[str, Any]]:
    times: dict[int, list[float]] = {h: [] for h in WIDTHS}
    with tempfile.TemporaryDirectory() as tmp:
        runners = {h: step_runner(h, Path(tmp) / str(h)) for h in WIDTHS}
        for run in runners.values():  # warm-up
            run()
        for _ in range(rounds):
            for h, seconds in times.items():
                for _ in range(steps):
                    start = time.perf_counter()
                    runners[h]()
                    seconds.append(time.perf_counter() - start)
    return [
        {
            "hidden": h,
            "steps": len(s),
            "median_s": float(np.median(s)),
            "p10_s": float(np.percentile(s, 10)),
            "p90_s": float(np.percentile(s, 90)),
        }
        for h, s in times.items()
    ]


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    med = np.array([r["median_s"] for r in results])
    err = np.array([[m - r["p10_s"], r["p90_s"] - m] for m, r in zip(med, results, strict=True)]).T
    ax.bar(np.arange(len(results)), med, 0.5, yerr=err, capsize=3)
    ax.set_xticks(np.arange(len(results)), [f"hidden {r['hidden']}" for r in results])
    ax.set_ylabel("s per generator step (batch 64)")
    ax.set_title("generator training step, CPU (median, p10–p90)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="steps per width and round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "train_step_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = measure(args.rounds, args.steps)
    record = {
        "benchmark": "train_step",
        "what": "seconds per generator training step of the shipped command's configuration "
        "(batch 64, 150 frames, K = 4), by LSTM width",
        "machine": machine_info(),
        "rounds": args.rounds,
        "results": results,
    }
    args.out.write_text(json.dumps(record, indent=1))
    plot(results, args.out.with_suffix(".png"))
    for r in results:
        print(f"hidden {r['hidden']}: {r['median_s']:.3f} s per step")


if __name__ == "__main__":
    main()
