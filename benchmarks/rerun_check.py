"""Rerun the shipped weights' training command with the current code, stopped after 100 generator
steps, and compare its losses with the shipped run's log (is the shipped file reproducible?).

The run is stopped from outside its configuration, so a learning-rate schedule stays the full
run's (``--gen-steps 100`` would change a cosine schedule). Run it with the thread setting of
the shipped run (``OMP_NUM_THREADS``).

python benchmarks/rerun_check.py [--json benchmarks/results/training/rerun_check.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info
from _shipped import LOG, train_args

from rt_smile.cli import _train_config, build_parser
from rt_smile.train.trainer import Trainer, synth_data

#: (stage, step) of the log entries compared.
CHECKS = (("vae", 3000), ("generator", 50), ("generator", 100))


class _Stop(Exception):
    pass


class _StoppingTrainer(Trainer):
    """A Trainer that stops after ``stop_after`` generator steps."""

    stop_after = 100

    def _after_step(self, bar: Any, parts: dict[str, float]) -> None:
        super()._after_step(bar, parts)
        if self.stage == "generator" and self.step >= self.stop_after:
            raise _Stop


def rerun_log(command: str, out: Path) -> list[dict[str, Any]]:
    """The log of ``command`` (an ``rt-smile train`` line) rerun into ``out`` until the stop."""
    config = _train_config(build_parser().parse_args(train_args(command, out)))
    trainer = _StoppingTrainer(config, synth_data(config), out)
    with contextlib.suppress(_Stop):
        trainer.run(progress=True, resume=False)
    return trainer.log


def compare(shipped: list[dict[str, Any]], rerun: list[dict[str, Any]]) -> list[dict[str, Any]]:
    entries = []
    for stage, step in CHECKS:
        a = next(r for r in shipped if r["stage"] == stage and r["step"] == step)
        b = next(r for r in rerun if r["stage"] == stage and r["step"] == step)
        keys = [k for k in a if k not in ("stage", "step", "time")]
        entries.append(
            {
                "stage": stage,
                "step": step,
                "shipped_run": {k: a[k] for k in keys},
                "rerun": {k: b[k] for k in keys},
                "max_abs_difference": max(abs(a[k] - b[k]) for k in keys),
            }
        )
    return entries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=LOG.parent / "rerun_check.json")
    args = ap.parse_args()
    shipped = json.loads(LOG.read_text())
    command = shipped["info"]["command"]
    with tempfile.TemporaryDirectory() as tmp:
        entries = compare(shipped["log"], rerun_log(command, Path(tmp) / "run"))
    result = {
        "what": "the shipped run's command rerun with the current code, its Trainer stopped after 100 "
        "generator steps (benchmarks/rerun_check.py), against the shipped run's train_log.json",
        "command": command,
        "machine": {**machine_info(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "entries": entries,
    }
    args.json.write_text(json.dumps(result, indent=1))
    print([e["max_abs_difference"] for e in entries], f"wrote {args.json}")


if __name__ == "__main__":
    main()
