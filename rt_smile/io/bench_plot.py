"""Plot of ``rt-smile bench`` results: whole-step latency per case and backend, and the stages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

STAGE_COLOURS = {"generator": "#4c72b0", "vae_decode": "#55a868", "translator": "#c44e52"}


def _label(row: dict[str, Any]) -> str:
    return f"{row['backend']} ({row['device']})"


def _step_panel(ax: Any, rows: list[dict[str, Any]], size: int) -> None:
    steps = [r for r in rows if r["stage"] == "step" and r["size"] == size]
    cases = sorted({(r["modes"], r["batch"]) for r in steps})
    backends = sorted({_label(r) for r in steps})
    width = 0.8 / max(len(backends), 1)
    for i, backend in enumerate(backends):
        by_case = {(r["modes"], r["batch"]): r["p50_ms"] for r in steps if _label(r) == backend}
        xs = [j + i * width for j, c in enumerate(cases) if c in by_case]
        ax.bar(xs, [by_case[c] for c in cases if c in by_case], width, label=backend)
    ax.axhline(1000.0 / 30.0, color="grey", ls="--", lw=0.8, label="30 fps budget")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cases))])
    ax.set_xticklabels([f"K={k}\nbatch {b}" for k, b in cases], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("step p50 (ms)")
    ax.set_title(f"whole step, {size}²")
    ax.legend(fontsize=7)


def _stage_panel(ax: Any, rows: list[dict[str, Any]], stages: tuple[str, ...]) -> None:
    """Stacked per-stage p50 of every backend at its most common case (K=4, batch 1 if run)."""
    chosen_stages = [r for r in rows if r["stage"] in stages]
    if not chosen_stages:
        return
    cases = {(r["size"], r["modes"], r["batch"]) for r in chosen_stages}
    pick = min(cases, key=lambda c: (c[1] != 4, c[2], c[0]))
    chosen = [r for r in chosen_stages if (r["size"], r["modes"], r["batch"]) == pick]
    backends = sorted({_label(r) for r in chosen})
    bottom = [0.0] * len(backends)
    for stage in stages:
        colour = STAGE_COLOURS[stage]
        vals = [
            next((r["p50_ms"] for r in chosen if _label(r) == b and r["stage"] == stage), 0.0)
            for b in backends
        ]
        ax.bar(range(len(backends)), vals, 0.6, bottom=bottom, color=colour, label=stage)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_xticks(range(len(backends)))
    ax.set_xticklabels(backends, fontsize=7, rotation=15)
    ax.set_ylabel("p50 (ms)")
    ax.set_title(f"{' + '.join(stages)}\n{pick[0]}² K={pick[1]} batch {pick[2]}", fontsize=9)
    ax.legend(fontsize=7)


def plot_bench(rows: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """One panel per crop size (step latency), one of the stages and one of the recurrent stages;
    written to ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sizes = sorted({r["size"] for r in rows})
    fig = Figure(figsize=(4.6 * (len(sizes) + 2), 4.4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(sizes) + 2, squeeze=False)[0]
    for ax, size in zip(axes, sizes, strict=False):
        _step_panel(ax, rows, size)
    _stage_panel(axes[-2], rows, tuple(STAGE_COLOURS))
    _stage_panel(axes[-1], rows, ("generator", "vae_decode"))
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(path))
    return path
