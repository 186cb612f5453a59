"""The onnxruntime backend (CPU), and a composite that runs each stage on another backend."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rt_smile.runtime.backends import STAGES, BackendError, BackendInfo, StepBackend
from rt_smile.runtime.onnx_cache import OnnxGraphs
from trt_build.export import GENERATOR_INPUTS, TRANSLATOR_INPUTS

logger = logging.getLogger(__name__)


def open_session(path: Any, threads: int = 0) -> Any:
    """An onnxruntime CPU session on ``path`` with ``threads`` intra-op threads (0: onnxruntime's
    default). Raises ImportError naming the extra when onnxruntime is missing, BackendError when
    it cannot load the file."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ImportError(
            "onnxruntime is not installed; install it with: pip install 'rt_smile[onnx]'"
        ) from exc

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle intra-op threads would otherwise spin for a while after each run, taking the cores
    # from torch (the warp, in ``hybrid``) and from the other sessions of the step.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
        raise BackendError(
            f"onnxruntime cannot load {path} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
            "re-export it with 'rt-smile export' or delete it from the cache"
        ) from exc


class OnnxRuntimeBackend:
    """``StepBackend`` on onnxruntime's CPU provider; torch CPU tensors in and out (zero-copy
    through NumPy). With ``translator=False`` it runs the recurrent stages only."""

    def __init__(self, graphs: OnnxGraphs, threads: int, translator: bool = True) -> None:
        self.device = torch.device("cpu")
        self._generator = open_session(graphs.generator, threads)
        self._vae = open_session(graphs.vae_decode, threads)
        self._translator = open_session(graphs.translator, threads) if translator else None
        stages = STAGES if translator else STAGES[:2]
        self.info = BackendInfo(
            "onnxruntime",
            "cpu",
            dict.fromkeys(stages, "fp32"),
            dict.fromkeys(stages, "onnxruntime"),
            threads,
        )

    @staticmethod
    def _run(session: Any, names: tuple[str, ...], args: tuple[Tensor, ...]) -> list[Tensor]:
        feed = {n: np.ascontiguousarray(a.detach().cpu().numpy()) for n, a in zip(names, args, strict=True)}
        return [torch.from_numpy(o) for o in session.run(None, feed)]

    def generator(self, cls: Tensor, noise: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        return tuple(self._run(self._generator, GENERATOR_INPUTS, (cls, noise, *state)))

    def vae_decode(self, z: Tensor) -> Tensor:
        return self._run(self._vae, ("z",), (z,))[0]

    def translator(
        self, image: Tensor, flow_basis: Tensor, neutral: Tensor, target: Tensor, palette: Tensor
    ) -> Tensor:
        if self._translator is None:
            raise BackendError("this onnxruntime backend was built without the translator graph")
        args = (image, flow_basis, neutral, target, palette)
        return self._run(self._translator, TRANSLATOR_INPUTS, args)[0]

    def synchronize(self) -> None:
        """onnxruntime's CPU provider returns when the work is done."""


class CompositeBackend:
    """Each stage on its own backend (all on one device), e.g. ``hybrid``: onnxruntime for the
    recurrent stages, torch for the warp."""

    def __init__(self, name: str, stages: Mapping[str, StepBackend]) -> None:
        if set(stages) != set(STAGES):
            raise ValueError(f"a composite backend needs exactly the stages {STAGES}")
        self._stages = dict(stages)
        devices = {b.device for b in stages.values()}
        if len(devices) != 1:
            raise ValueError(f"a composite backend's stages must share one device, got {devices}")
        self.device = devices.pop()
        first = next(iter(stages.values())).info
        self.info = BackendInfo(
            name,
            first.device,
            {s: b.info.precision_of(s) for s, b in stages.items()},
            {s: b.info.graphs_of(s) for s, b in stages.items()},
            max(b.info.threads for b in stages.values()),
        )

    def generator(self, cls: Tensor, noise: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        return self._stages["generator"].generator(cls, noise, *state)

    def vae_decode(self, z: Tensor) -> Tensor:
        return self._stages["vae_decode"].vae_decode(z)

    def translator(
        self, image: Tensor, flow_basis: Tensor, neutral: Tensor, target: Tensor, palette: Tensor
    ) -> Tensor:
        return self._stages["translator"].translator(image, flow_basis, neutral, target, palette)

    def synchronize(self) -> None:
        for backend in {id(b): b for b in self._stages.values()}.values():
            backend.synchronize()
