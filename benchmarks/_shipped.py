"""The shipped weights' training run, as the benchmarks that rerun or time it need it."""

from __future__ import annotations

import shlex
from pathlib import Path

#: The shipped run's log: its command is ``["info"]["command"]``.
LOG = Path(__file__).resolve().parent / "results" / "training" / "train_log.json"


def train_args(command: str, out: Path) -> list[str]:
    """``command`` (an ``rt-smile train`` line) as arguments after ``rt-smile``, writing to ``out``."""
    argv = shlex.split(command)[1:]
    argv[argv.index("--out") + 1] = str(out)
    return argv
