"""``rt-smile bench``: per-stage and whole-step latency of every backend.

For each backend × crop size × K modes × batch (sessions), on the canonical face over the bundled
sample photo (no face detector needed), it times the generator step, the VAE decode, the
translator and the whole per-frame step (``frame_step``, the recurrent state fed back): warm-up
calls first, the device synchronised around every timed call, then p50/p99 over many repeats.
``fps`` is frames rendered per second at the p50 latency: batch × K × 1000 / p50. ``parity`` is
‖out − ref‖₂ / ‖ref‖₂ against torch FP32 on the CPU on the same inputs (for ``step``, the frames
after ``parity_steps`` steps with each backend's own state fed back).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from rt_smile.models.cmmnet import CMMNet
from rt_smile.runtime.backends import BackendOptions, StepBackend, make_backend
from rt_smile.runtime.step import FrameInputs, RecurrentState, bench_inputs, frame_step, targets_from

logger = logging.getLogger(__name__)

STAGE_ROWS = ("generator", "vae_decode", "translator", "step")


@dataclass(frozen=True)
class Timing:
    """How long to measure each case."""

    warmup: int = 10
    repeats: int = 200
    #: stop repeating after this many seconds (but never below ``min_repeats``)
    max_seconds: float = 8.0
    min_repeats: int = 20

    @classmethod
    def quick(cls) -> Timing:
        return cls(warmup=3, repeats=40, max_seconds=1.5, min_repeats=10)


@dataclass(frozen=True)
class BenchPlan:
    """What to sweep."""

    backends: tuple[str, ...]
    modes: tuple[int, ...] = (1, 4)
    batches: tuple[int, ...] = (1, 4)
    sizes: tuple[int, ...] = (256, 512)
    timing: Timing = Timing()
    #: steps fed back before the step's parity is measured
    parity_steps: int = 10

    def cases(self) -> list[tuple[int, int, int]]:
        return [(s, k, b) for s in self.sizes for k in self.modes for b in self.batches]


def relative_error(out: Tensor, ref: Tensor) -> float:
    """‖out − ref‖₂ / ‖ref‖₂ in float64 on the CPU."""
    o, r = out.detach().double().cpu(), ref.detach().double().cpu()
    return float((o - r).norm() / r.norm().clamp_min(1e-12))


def time_call(fn: Callable[[], object], sync: Callable[[], None], timing: Timing) -> NDArray[np.float64]:
    """Per-call latencies in ms, the device synchronised before and after each call."""
    for _ in range(timing.warmup):
        fn()
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < timing.repeats:
        if len(times) >= timing.min_repeats and time.perf_counter() - start > timing.max_seconds:
            break
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return np.asarray(times)


@dataclass
class _Case:
    """One size × K × batch: inputs on the backend's device and torch-CPU reference outputs."""

    inputs: FrameInputs
    state: RecurrentState
    noise: Tensor  # (T, G, n)
    ref_gen: tuple[Tensor, ...]
    ref_landmarks: Tensor
    target: Tensor
    ref_frames: Tensor
    ref_step: Tensor


def _reference(ref: StepBackend, model: CMMNet, size: int, modes: int, batch: int, steps: int) -> _Case:
    inputs, state, noise = bench_inputs(model, size, batch, modes)
    with torch.inference_mode():
        gen = tuple(t.clone() for t in ref.generator(inputs.cls, noise[0], *state.tensors()))
        landmarks = ref.vae_decode(gen[0].flatten(0, 1)).clone()
        target = targets_from(landmarks, inputs)
        frames = _render(ref, inputs, target).clone()
        ref_step = _unroll(ref, inputs, noise, state, steps)
    return _Case(inputs, state, noise, gen, landmarks, target, frames, ref_step)


def _render(backend: StepBackend, inputs: FrameInputs, target: Tensor) -> Tensor:
    return backend.translator(inputs.image, inputs.flow_basis, inputs.neutral, target, inputs.palette)


def _unroll(
    backend: StepBackend, inputs: FrameInputs, noise: Tensor, state: RecurrentState, steps: int
) -> Tensor:
    frames = torch.empty(0)
    for t in range(steps):
        frames, state = frame_step(backend, inputs, noise[t % noise.shape[0]], state)
    return frames.clone()


def _on(case: _Case, device: torch.device) -> _Case:
    """The case with the backend's inputs on ``device`` (references stay on the CPU)."""
    if device.type == "cpu":
        return case
    return replace(
        case,
        inputs=case.inputs.to(device),
        state=case.state.to(device),
        noise=case.noise.to(device),
        target=case.target.to(device),
    )


class _Stepper:
    """``frame_step`` called over and over, its state fed back."""

    def __init__(self, backend: StepBackend, case: _Case) -> None:
        self.backend, self.case, self.state, self.t = backend, case, case.state, 0

    def __call__(self) -> Tensor:
        noise = self.case.noise[self.t % self.case.noise.shape[0]]
        frames, self.state = frame_step(self.backend, self.case.inputs, noise, self.state)
        self.t += 1
        return frames


def _stage_calls(backend: StepBackend, case: _Case) -> dict[str, Callable[[], object]]:
    inp, state = case.inputs, case.state
    z = case.ref_gen[0].flatten(0, 1).to(backend.device)
    return {
        "generator": lambda: backend.generator(inp.cls, case.noise[0], *state.tensors()),
        "vae_decode": lambda: backend.vae_decode(z),
        "translator": lambda: _render(backend, inp, case.target),
        "step": _Stepper(backend, case),
    }


def _parities(backend: StepBackend, case: _Case, steps: int) -> dict[str, float]:
    """Each error is taken at once: a CUDA-graph backend's outputs are overwritten by its next call."""
    inp, state = case.inputs, case.state
    with torch.inference_mode():
        gen = backend.generator(inp.cls, case.noise[0], *state.tensors())
        errors = {"generator": max(relative_error(o, r) for o, r in zip(gen, case.ref_gen, strict=True))}
        lm = backend.vae_decode(case.ref_gen[0].flatten(0, 1).to(backend.device))
        errors["vae_decode"] = relative_error(lm, case.ref_landmarks)
        errors["translator"] = relative_error(_render(backend, inp, case.target), case.ref_frames)
        errors["step"] = relative_error(_unroll(backend, inp, case.noise, state, steps), case.ref_step)
    return errors


def bench_backend(
    backend: StepBackend, case: _Case, size: int, modes: int, batch: int, plan: BenchPlan
) -> Iterator[dict[str, Any]]:
    """The four result rows of one backend on one case."""
    case = _on(case, backend.device)
    parity = _parities(backend, case, plan.parity_steps)
    calls = _stage_calls(backend, case)
    info = backend.info
    for stage in STAGE_ROWS:
        with torch.inference_mode():
            ms = time_call(calls[stage], backend.synchronize, plan.timing)
        p50 = float(np.percentile(ms, 50))
        yield {
            "backend": info.name,
            "device": info.device,
            "precision": info.precision_of(stage),
            "graphs": info.graphs_of(stage),
            "threads": info.threads,
            "stage": stage,
            "modes": modes,
            "size": size,
            "batch": batch,
            "p50_ms": round(p50, 6),
            "p99_ms": round(float(np.percentile(ms, 99)), 6),
            "fps": round(batch * modes * 1000.0 / p50, 2),
            "parity": float(f"{parity[stage]:.3g}"),
            "repeats": len(ms),
            # sessions of K modes at 30 fps that this step rate sustains (step rows only)
            "streams_30fps": round(batch * 1000.0 / p50 / 30.0, 2) if stage == "step" else None,
        }


def run_bench(
    model: CMMNet, plan: BenchPlan, options: BackendOptions, progress: Callable[[str], None] = lambda _m: None
) -> list[dict[str, Any]]:
    """Every row of the sweep (see the module docstring)."""
    rows: list[dict[str, Any]] = []
    from rt_smile.runtime.backends.torch_backend import TorchBackend

    for size in plan.sizes:
        reference = TorchBackend(model, size, torch.device("cpu"), cuda_graphs=False, trace=False)
        backends = [make_backend(name, model, replace(options, size=size)) for name in plan.backends]
        for modes in plan.modes:
            for batch in plan.batches:
                case = _reference(reference, model, size, modes, batch, plan.parity_steps)
                for backend in backends:
                    rows.extend(bench_backend(backend, case, size, modes, batch, plan))
                    progress(f"{backend.info.name} {size}² K={modes} batch={batch}")
    return rows


_COLUMNS = (
    ("backend", "{:<11}"), ("device", "{:<14.14}"), ("precision", "{:<9}"), ("stage", "{:<10}"),
    ("modes", "{:>2}"), ("size", "{:>4}"), ("batch", "{:>5}"), ("p50_ms", "{:>9.3f}"),
    ("p99_ms", "{:>9.3f}"), ("fps", "{:>9.0f}"), ("parity", "{:>8.1e}"), ("streams_30fps", "{:>13}"),
)  # fmt: skip


def _cell(fmt: str, value: Any) -> str:
    """``value`` formatted, or blanks of the column's width for None."""
    width = re.match(r"\{:[<>]?(\d+)", fmt)
    return " " * int(width.group(1) if width else 0) if value is None else fmt.format(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    """The results as a fixed-width text table (``streams_30fps``: on step rows)."""
    head = " ".join(f"{name:>{len(_cell(fmt, rows[0][name]))}}" if rows else name for name, fmt in _COLUMNS)
    lines = [head]
    for row in rows:
        lines.append(" ".join(_cell(fmt, row[name]) for name, fmt in _COLUMNS))
    return "\n".join(lines)
