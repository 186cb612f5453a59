"""Inference backends for the per-frame step, behind one small protocol.

Every backend runs the three stages of ``rt_smile.runtime.step`` on torch tensors:

- ``torch``: eager PyTorch, FP32 on the CPU; on CUDA, FP16 recurrent stages and CUDA-graph replay;
- ``onnxruntime``: the exported ONNX graphs in onnxruntime (CPU);
- ``hybrid``: onnxruntime for the recurrent stages, torch for the warp (onnxruntime's GridSample
  is slower than torch's on CPUs);
- ``tensorrt``: TensorRT 10 engines built from the ONNX graphs (NVIDIA GPUs).

``make_backend(name)`` builds one; ``auto`` picks the best available and logs why. Optional
packages are imported inside their backend; a missing one raises ``BackendError`` saying what
to install.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

from rt_smile.errors import RtSmileError

if TYPE_CHECKING:
    from rt_smile.models.cmmnet import CMMNet
    from rt_smile.runtime.onnx_cache import OnnxGraphs

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "hybrid", "tensorrt")
STAGES = ("generator", "vae_decode", "translator")


class BackendError(RtSmileError):
    """A backend cannot run here: a missing package, a missing or corrupt model file, an input
    outside what a compiled engine was built for."""


@dataclass(frozen=True)
class BackendInfo:
    """What a backend is, as benchmark rows report it."""

    name: str
    #: "cpu", or the GPU's name
    device: str
    #: precision per stage ("fp32", "fp16")
    precision: dict[str, str]
    #: which engine runs each stage ("torch", "torchscript": torch's traced graph, "onnxruntime",
    #: "tensorrt")
    graphs: dict[str, str]
    #: CPU threads the backend uses
    threads: int

    def precision_of(self, stage: str) -> str:
        if stage in self.precision:
            return self.precision[stage]
        return "+".join(sorted(set(self.precision.values())))

    def graphs_of(self, stage: str) -> str:
        if stage in self.graphs:
            return self.graphs[stage]
        return ",".join(f"{s}={self.graphs[s]}" for s in STAGES)


class StepBackend(Protocol):
    """The three stages of the per-frame step (shapes as in ``trt_build.export``). Inputs and
    outputs are torch tensors on ``device``; outputs stay valid until the same stage runs again."""

    info: BackendInfo
    device: torch.device

    def generator(self, cls: Tensor, noise: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        """cls (B,), noise (B, n), state (z, cond_h, cond_c, mm_h, mm_c, z0_modes) →
        z_modes (B, Km, z), z_next, cond_h_next, cond_c_next, mm_h_next, mm_c_next."""
        ...

    def vae_decode(self, z: Tensor) -> Tensor:
        """z (N, z) → aligned landmarks (N, 468, 2)."""
        ...

    def translator(
        self, image: Tensor, flow_basis: Tensor, neutral: Tensor, target: Tensor, palette: Tensor
    ) -> Tensor:
        """Per row: image (B, 3, S, S), flow_basis (B, N, G²), neutral/target (B, N, 2),
        palette (B, 6, 3) → frames (B, 3, S, S) in [0, 1]."""
        ...

    def synchronize(self) -> None:
        """Wait until all queued work on the device is done (timing)."""
        ...


@dataclass(frozen=True)
class BackendOptions:
    """How to build a backend."""

    #: crop size the translator renders (256 or 512)
    size: int = 256
    #: "cpu", "cuda", or "auto" (CUDA when available)
    device: str = "auto"
    #: CPU threads for torch and onnxruntime (0: leave torch's setting)
    threads: int = 0
    #: folder of exported ONNX graphs and built engines (None: the user cache)
    cache: Path | None = None
    #: weights file the graphs were made from (None: the shipped weights); keys the cache
    weights: Path | None = None
    #: folder written by ``rt-smile export`` to use instead of exporting into the cache
    onnx: Path | None = None
    #: torch on CUDA: replay CUDA graphs
    cuda_graphs: bool = True
    #: largest batch (generator rows, frames) a TensorRT engine profile accepts
    max_batch: int = 64
    #: TensorRT precision of the recurrent graphs (the translator's engine is always FP32: its
    #: sampling coordinates need it at 512²)
    precision: str = "fp16"


def has_package(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def cuda_available() -> bool:
    return torch.cuda.is_available()


def available_backends(device: str = "auto") -> list[str]:
    """Backends whose packages (and device, for TensorRT) are present and that run on ``device``
    ("cpu", "cuda" or "auto": either)."""
    out = ["torch"]
    if device != "cuda" and has_package("onnxruntime") and has_package("onnx"):
        out += ["onnxruntime", "hybrid"]
    if device != "cpu" and has_package("tensorrt") and cuda_available():
        out.append("tensorrt")
    return out


def choose_auto(device: str = "auto") -> tuple[str, str]:
    """(backend, reason) for ``--backend auto`` on ``device`` ("cpu", "cuda" or "auto")."""
    if device != "cpu" and cuda_available():
        if has_package("tensorrt"):
            return "tensorrt", "a CUDA GPU and TensorRT are present"
        return "torch", "a CUDA GPU is present but TensorRT is not installed (pip install 'rt_smile[trt]')"
    if has_package("onnxruntime") and has_package("onnx"):
        return "hybrid", "no CUDA GPU; onnxruntime runs the recurrent stages fastest, torch the warp"
    return "torch", "no CUDA GPU and no onnxruntime (pip install 'rt_smile[onnx]' for a faster CPU path)"


def _require(package: str, extra: str, backend: str) -> None:
    if not has_package(package):
        raise BackendError(
            f"backend {backend!r} needs the {package} package, which is not installed: "
            f"pip install 'rt_smile[{extra}]'"
        )


def _resolve_device(options: BackendOptions, name: str) -> torch.device:
    wanted = options.device
    if wanted == "auto":
        return torch.device("cuda" if cuda_available() and name in ("torch", "tensorrt") else "cpu")
    if wanted.startswith("cuda") and not cuda_available():
        raise BackendError(f"device {wanted!r} asked for, but torch sees no CUDA GPU; use --device cpu")
    return torch.device(wanted)


def make_backend(name: str, model: CMMNet, options: BackendOptions = BackendOptions()) -> StepBackend:
    """A backend by name (one of ``BACKENDS`` or "auto") for ``model``."""
    if name == "auto":
        name, reason = choose_auto(options.device)
        logger.info("backend auto → %s: %s", name, reason)
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of auto, {', '.join(BACKENDS)}")
    if options.threads > 0:
        torch.set_num_threads(options.threads)
    device = _resolve_device(options, name)
    if name == "torch":
        from rt_smile.runtime.backends.torch_backend import TorchBackend

        return TorchBackend(model, options.size, device, cuda_graphs=options.cuda_graphs)
    if name in ("onnxruntime", "hybrid"):
        if options.device.startswith("cuda"):
            raise BackendError(
                f"backend {name!r} runs on the CPU; use --device cpu, or torch or tensorrt on CUDA"
            )
        _require("onnxruntime", "onnx", name)
        _require("onnx", "onnx", name)
        return _onnx_backend(name, model, options)
    return _tensorrt_backend(model, options, device)


def _onnx_backend(name: str, model: CMMNet, options: BackendOptions) -> StepBackend:
    from rt_smile.runtime.backends.ort_backend import CompositeBackend, OnnxRuntimeBackend
    from rt_smile.runtime.backends.torch_backend import TorchBackend

    graphs = _graphs(model, options)
    threads = options.threads or torch.get_num_threads()
    recurrent = OnnxRuntimeBackend(graphs, threads, translator=name == "onnxruntime")
    if name == "onnxruntime":
        return recurrent
    warp = TorchBackend(model, options.size, torch.device("cpu"), cuda_graphs=False)
    return CompositeBackend("hybrid", {"generator": recurrent, "vae_decode": recurrent, "translator": warp})


def _engine_folder(options: BackendOptions) -> Path:
    """Where TensorRT engines are kept: ``engines/`` in the cache folder."""
    from rt_smile.runtime.onnx_cache import default_cache

    return (options.cache or default_cache()) / "engines"


def _tensorrt_backend(model: CMMNet, options: BackendOptions, device: torch.device) -> StepBackend:
    _require("tensorrt", "trt", "tensorrt")
    if device.type != "cuda":
        raise BackendError("backend 'tensorrt' needs a CUDA GPU, and torch sees none")
    from rt_smile.runtime.backends.trt_backend import TensorRTBackend

    graphs = _graphs(model, options)
    return TensorRTBackend.build(
        graphs, _engine_folder(options), device, options.max_batch, model.modes, options.precision
    )


def _graphs(model: CMMNet, options: BackendOptions) -> OnnxGraphs:
    """The user's exported graphs (``options.onnx``), or the cache's (exporting on demand)."""
    from rt_smile.runtime.onnx_cache import ensure_onnx, graphs_in

    if options.onnx is None:
        return ensure_onnx(model, options.size, options.cache, options.weights)
    graphs = graphs_in(options.onnx, options.size)
    for path in graphs.paths().values():
        if not path.is_file():
            raise BackendError(
                f"{path} not found; write it with: rt-smile export --out {options.onnx} --size {options.size}"
            )
    return graphs


def build_all_engines(model: CMMNet, options: BackendOptions) -> dict[str, Path]:
    """Build (or find in the cache) the TensorRT engine of every graph: ``rt-smile build``."""
    _require("tensorrt", "trt", "tensorrt")
    if not cuda_available():
        raise BackendError("building TensorRT engines needs a CUDA GPU, and torch sees none")
    from rt_smile.runtime.backends.trt_backend import cached_engines

    graphs = _graphs(model, options)
    engines = cached_engines(
        graphs, _engine_folder(options), options.max_batch, model.modes, options.precision
    )
    return {stage: e.path for stage, e in engines.items()}
