"""The TensorRT backend: FP16 engines of the three graphs, torch tensors as I/O buffers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from rt_smile.runtime.backends import STAGES, BackendError, BackendInfo
from rt_smile.runtime.onnx_cache import OnnxGraphs
from trt_build.export import GENERATOR_INPUTS, GENERATOR_OUTPUTS, TRANSLATOR_INPUTS

if TYPE_CHECKING:
    from trt_build.builder import LoadedEngine

logger = logging.getLogger(__name__)


def cached_engines(
    graphs: OnnxGraphs, cache: Path, max_batch: int, modes: int, precision: str = "fp16"
) -> dict[str, LoadedEngine]:
    """Every graph's engine from the cache, built where missing or stale: the recurrent graphs
    at ``precision``, the translator in FP32."""
    from trt_build.builder import EngineCache, EngineError, Profile

    try:
        engines = EngineCache(cache)
        profile = Profile(1, min(4, max_batch), max_batch)
        return {
            stage: engines.load(
                path.stem, path, "fp32" if stage == "translator" else precision, profile, modes
            )
            for stage, path in graphs.paths().items()
        }
    except EngineError as exc:
        raise BackendError(str(exc)) from exc


class TensorRTBackend:
    """``StepBackend`` on TensorRT engines (one CUDA device)."""

    def __init__(self, engines: dict[str, Any], device: torch.device, precision: str = "fp16") -> None:
        """``engines``: per stage, serialized bytes or an engine TensorRT already deserialized."""
        from trt_build.builder import EngineError, load_tensorrt
        from trt_build.runner import TrtRunner

        self.device = device
        self.stream = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
        try:
            trt = load_tensorrt()
            self._runners = {stage: TrtRunner(trt, engines[stage], device) for stage in STAGES}
        except EngineError as exc:
            raise BackendError(str(exc)) from exc
        self.info = BackendInfo(
            "tensorrt",
            torch.cuda.get_device_name(device),
            {"generator": precision, "vae_decode": precision, "translator": "fp32"},
            dict.fromkeys(STAGES, "tensorrt"),
            torch.get_num_threads(),
        )

    @classmethod
    def build(
        cls, graphs: OnnxGraphs, cache: Path, device: torch.device, max_batch: int, modes: int,
        precision: str = "fp16",
    ) -> TensorRTBackend:  # fmt: skip
        """Engines for ``graphs`` (``modes``: the model's K) from ``cache``, built as needed."""
        engines = cached_engines(graphs, cache, max_batch, modes, precision)
        loaded = {stage: e.data if e.engine is None else e.engine for stage, e in engines.items()}
        return cls(loaded, device, precision)

    def _run(
        self, stage: str, names: tuple[str, ...], args: tuple[Tensor, ...], outputs: tuple[str, ...]
    ) -> list[Tensor]:
        """One engine on the backend's own stream (TensorRT syncs on the legacy default stream),
        ordered after the caller's queued work and before its next."""
        from trt_build.builder import EngineError

        caller = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(caller)
        try:
            with torch.cuda.stream(self.stream):
                out = self._runners[stage](dict(zip(names, args, strict=True)))
        except EngineError as exc:
            raise BackendError(str(exc)) from exc
        caller.wait_stream(self.stream)
        return [out[name] for name in outputs]

    def generator(self, cls: Tensor, noise: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        return tuple(self._run("generator", GENERATOR_INPUTS, (cls, noise, *state), GENERATOR_OUTPUTS))

    def vae_decode(self, z: Tensor) -> Tensor:
        return self._run("vae_decode", ("z",), (z,), ("landmarks",))[0]

    def translator(
        self, image: Tensor, flow_basis: Tensor, neutral: Tensor, target: Tensor, palette: Tensor
    ) -> Tensor:
        args = (image, flow_basis, neutral, target, palette)
        return self._run("translator", TRANSLATOR_INPUTS, args, ("frames",))[0]

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)
