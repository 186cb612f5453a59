"""Per-frame latency of the translator on the CPU (sample face, real expressions).

    python benchmarks/translator.py [--repeats 200] [--against REV [REV ...]] [--out F.json]

Records p50/p99 per call at 256² and 512², batch 1 and 4, with machine info, and a plot; each
case twice: the eager module, and the graph traced once per input shape that the torch backend
runs on the CPU (``TracedStage``). With ``--against REV ...``, once more per revision: the
traced translator of that git revision (its translator, configuration and ``TracedStage``), to
measure changes on one machine at one time. The modes run in alternating rounds, so that a machine whose
speed drifts (a shared host) slows them alike.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
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
from rt_smile.runtime.backends.torch_backend import TracedStage

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "rt_smile" / "assets" / "astronaut.png"
EXPRESSIONS = [{"AU12": 0.9, "AU6": 0.5}, {"AU12": 0.8, "AU25": 0.7, "AU26": 0.4}, {"AU45": 1.0}, {}]


def _targets(landmarks: NDArray[Any], batch: int, step: int) -> torch.Tensor:
    rows = [
        apply_expression(landmarks, EXPRESSIONS[(step + i) % len(EXPRESSIONS)])[:468] for i in range(batch)
    ]
    return torch.from_numpy(np.stack(rows)).float()


def run_case(
    photo: NDArray[Any], size: int, batch: int, repeats: int, warmup: int, against: Sequence[Revision] = ()
) -> list[dict[str, Any]]:
    """Each mode of one case, ``repeats`` calls each in 10 alternating rounds: the eager module,
    its traced graph, and the graph of each revision's translator in ``against``."""
    face = detect_face(photo, DetectorConfig())
    crop = crop_face(photo, face, CropConfig(size=size))
    prior = prepare_face(crop.image, crop.landmarks)
    translator = Translator(size)
    traced = TracedStage(translator, background=False)  # traced on its first call, before timing
    modes: dict[str, tuple[Callable[..., torch.Tensor], Any]] = {
        "eager": (translator, prior),
        "traced": (traced, prior),
    }
    for revision in against:
        modes[f"traced@{revision.name}"] = revision.stage(crop.image, crop.landmarks, size)
    targets = [_targets(crop.landmarks, batch, s) for s in range(len(EXPRESSIONS))]
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    rounds = 10
    with torch.inference_mode():
        for r in range(rounds):
            for mode, (run, p) in modes.items():
                n = max(1, repeats // rounds) + (warmup if r == 0 else 0)
                for i in range(n):
                    t0 = time.perf_counter()
                    target = targets[i % len(targets)]
                    run(p.image, p.flow_basis, p.neutral, target, p.palette)
                    if r > 0 or i >= warmup:
                        times[mode].append((time.perf_counter() - t0) * 1e3)
    return [_row(size, batch, mode, np.asarray(t)) for mode, t in times.items()]


class Revision:
    """The translator, its configuration and ``TracedStage`` as they were at a git revision of
    this repository, loaded beside the working tree's, so both run in one process, in the same
    alternating rounds (a shared machine's drift slows both alike). Only those three files come
    from the revision: what they import comes from the working tree (that revision's
    ``TranslatorConfig`` is passed to its translator explicitly, not taken from the package)."""

    def __init__(self, rev: str) -> None:
        self.name = rev
        self.commit = _git("rev-parse", "--verify", f"{rev}^{{commit}}").strip()
        self._config = self._load("rt_smile/config.py").TranslatorConfig()
        self._translator = self._load("rt_smile/models/translator.py")
        backend = self._load("rt_smile/runtime/backends/torch_backend.py")
        if not hasattr(backend, "TracedStage"):
            raise SystemExit(f"{rev}: its torch backend has no TracedStage to time")
        self._stage = backend.TracedStage

    def _load(self, path: str) -> Any:
        name = f"_rev_{self.commit[:10]}_{Path(path).stem}"
        spec = importlib.util.spec_from_loader(name, loader=None)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while being defined
        exec(compile(_git("show", f"{self.commit}:{path}"), f"{self.name}:{path}", "exec"), module.__dict__)
        return module

    def stage(self, image: NDArray[Any], landmarks: NDArray[Any], size: int) -> tuple[Any, Any]:
        """That revision's traced translator and its per-photo prior for one crop."""
        prior = self._translator.prepare_face(image, landmarks, self._config)
        return self._stage(self._translator.Translator(size, self._config), background=False), prior


def _git(*args: str) -> str:
    run = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, encoding="utf-8")
    if run.returncode != 0:
        raise SystemExit(f"git {' '.join(args)}: {run.stderr.strip()}")
    return run.stdout


def _row(size: int, batch: int, mode: str, t: NDArray[Any]) -> dict[str, Any]:
    p50 = float(np.percentile(t, 50))
    return {
        "size": size,
        "batch": batch,
        "mode": mode,
        "repeats": len(t),
        "p50_ms": round(p50, 3),
        "p99_ms": round(float(np.percentile(t, 99)), 3),
        "p50_ms_per_frame": round(p50 / batch, 3),
        "fps": round(1e3 * batch / p50, 1),
    }


def plot(results: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    cases = list(dict.fromkeys((r["size"], r["batch"]) for r in results))
    x = np.arange(len(cases))
    modes = list(dict.fromkeys(r["mode"] for r in results))
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        offset = (i - (len(modes) - 1) / 2) * width
        rows = [next(r for r in results if (r["size"], r["batch"]) == c and r["mode"] == mode) for c in cases]
        ax.bar(x + offset, [r["p50_ms"] for r in rows], width, label=f"{mode} p50")
        ax.scatter(x + offset, [r["p99_ms"] for r in rows], marker="_", s=200, color="k", zorder=3)
    ax.scatter([], [], marker="_", s=200, color="k", label="p99")
    ax.axhline(4.0, color="k", ls="--", lw=0.8, label="target 4 ms (256², ×1)")
    ax.set_xticks(x, [f"{s}² ×{b}" for s, b in cases])
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
    ap.add_argument(
        "--against",
        metavar="REV",
        nargs="+",
        default=[],
        help="also time these git revisions' traced translators, in the same rounds",
    )
    args = ap.parse_args()
    if len(set(args.against)) < len(args.against):
        raise SystemExit(f"--against names a revision twice: {' '.join(args.against)}")
    torch.set_num_threads(args.threads)
    against = [Revision(rev) for rev in args.against]
    photo = load_image(SAMPLE)
    cases = [(s, b) for s in (256, 512) for b in (1, 4)]
    results = [row for s, b in cases for row in run_case(photo, s, b, args.repeats, args.warmup, against)]
    info = machine_info()
    report: dict[str, Any] = {"benchmark": "translator", "machine": info, "results": results}
    if against:
        report["against"] = [{"revision": r.name, "commit": r.commit} for r in against]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    plot(results, args.out.with_suffix(".png"), f"translator per call, {info['cpu']}, {args.threads} threads")
    for r in results:
        print(r)


if __name__ == "__main__":
    main()
