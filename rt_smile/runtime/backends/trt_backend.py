"""The TensorRT backend: FP16 engines of the three graphs, torch tensors as I/O buffers."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from rt_smile.runtime.backends import STAGES, BackendError, BackendInfo
from rt_smile.runtime.onnx_cache import OnnxGraphs

logger = logging.getLogger(__name__)

_GENERATOR_INPUTS = ("cls", "noise", "z", "cond_h", "cond_c", "mm_h", "mm_c", "z0_modes")
_TRANSLATOR_INPUTS = ("image", "flow_basis", "neutral", "target", "palette")


def cached_engines(
    graphs: OnnxGraphs, cache: Path, max_batch: int, modes: int, precision: str = "fp16"
) -> dict[str, tuple[bytes, Path]]:
    """Every graph's engine (bytes, file) from the cache, built where missing or stale."""
    from trt_build.builder import EngineCache, EngineError, Profile

    try:
        engines = EngineCache(cache)
        profile = Profile(1, min(4, max_batch), max_batch)
        return {
            stage: engines.load(path.stem, path, precision, profile, modes)
            for stage, path in graphs.paths().items()
        }
    except EngineError as exc:
        raise BackendError(str(exc)) from exc


class TensorRTBackend:
    """``StepBackend`` on TensorRT engines (one CUDA device)."""

    def __init__(self, engines: dict[str, bytes], device: torch.device) -> None:
        from trt_build.builder import EngineError, load_tensorrt
        from trt_build.runner import TrtRunner

        self.device = device
        try:
            trt = load_tensorrt()
            self._runners = {stage: TrtRunner(trt, engines[stage], device) for stage in STAGES}
        except EngineError as exc:
            raise BackendError(str(exc)) from exc
        self.info = BackendInfo(
            "tensorrt",
            torch.cuda.get_device_name(device),
            dict.fromkeys(STAGES, "fp16"),
            dict.fromkeys(STAGES, "tensorrt"),
            torch.get_num_threads(),
        )

    @classmethod
    def build(
        cls, graphs: OnnxGraphs, cache: Path, device: torch.device, max_batch: int, modes: int
    ) -> TensorRTBackend:
        """Engines for ``graphs`` (``modes``: the model's K) from ``cache``, built as needed."""
        engines = cached_engines(graphs, cache, max_batch, modes)
        return cls({stage: data for stage, (data, _path) in engines.items()}, device)

    def _run(self, stage: str, names: tuple[str, ...], args: tuple[Tensor, ...]) -> list[Tensor]:
        from trt_build.builder import EngineError

        try:
            return self._runners[stage](dict(zip(names, args, strict=True)))
        except EngineError as exc:
            raise BackendError(str(exc)) from exc

    def generator(self, cls: Tensor, noise: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        return tuple(self._run("generator", _GENERATOR_INPUTS, (cls, noise, *state)))

    def vae_decode(self, z: Tensor) -> Tensor:
        return self._run("vae_decode", ("z",), (z,))[0]

    def translator(
        self, image: Tensor, flow_basis: Tensor, neutral: Tensor, target: Tensor, palette: Tensor
    ) -> Tensor:
        return self._run("translator", _TRANSLATOR_INPUTS, (image, flow_basis, neutral, target, palette))[0]

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)
