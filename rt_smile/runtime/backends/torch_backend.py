"""The torch backend: eager FP32 on the CPU; FP16 recurrent stages and CUDA-graph replay on CUDA.

On CUDA the generator and the VAE decoder run in FP16 and the translator in FP32 (its sampling
coordinates need FP32 precision at 512², as is common for grid-sampling layers). With
``cuda_graphs`` each stage is captured once per input shape and replayed: one launch instead of
hundreds of small kernels, which is what makes a K-mode step sub-millisecond.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rt_smile.models.cmmnet import CMMNet
from rt_smile.models.translator import Translator
from rt_smile.runtime.backends import BackendInfo

Stage = Callable[..., tuple[Tensor, ...]]


class _Generator(nn.Module):
    def __init__(self, model: CMMNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, cls: Tensor, noise: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        z, cond_h, cond_c, mm_h, mm_c, z0_modes = state
        z_t, (ch, cc) = self.model.conditional.step(z, cls, noise, (cond_h, cond_c))
        z_modes, (mh, mc, _) = self.model.multimode.step(z_t, (mm_h, mm_c, z0_modes))
        return z_modes, z_t, ch, cc, mh, mc


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


class _GraphedStage:
    """A stage captured as a CUDA graph per input signature, replayed on static buffers."""

    def __init__(self, fn: Stage, warmup: int = 3) -> None:
        self.fn = fn
        self.warmup = warmup
        self.graphs: dict[tuple[tuple[tuple[int, ...], torch.dtype], ...], _Graph] = {}

    def __call__(self, *args: Tensor) -> tuple[Tensor, ...]:
        key = tuple((tuple(a.shape), a.dtype) for a in args)
        entry = self.graphs.get(key)
        if entry is None:
            entry = self.graphs[key] = self._capture(args)
        for static, value in zip(entry.inputs, args, strict=True):
            static.copy_(value)
        entry.graph.replay()
        return entry.outputs

    def _capture(self, args: tuple[Tensor, ...]) -> _Graph:
        static = tuple(a.clone() for a in args)
        side = torch.cuda.Stream()  # type: ignore[no-untyped-call]
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.fn(*static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = self.fn(*static)
        return _Graph(graph, static, outputs)


class TorchBackend:
    """``StepBackend`` on torch: a copy of the model on ``device``."""

    def __init__(self, model: CMMNet, size: int, device: torch.device, cuda_graphs: bool = True) -> None:
        self.device = device
        cuda = device.type == "cuda"
        self.half = cuda
        model = copy.deepcopy(model).eval().to(device)
        self._generator_module = _Generator(model.half() if self.half else model)
        self._vae = model.vae
        self._translator = Translator(size).eval().to(device)
        low = "fp16" if self.half else "fp32"
        name = torch.cuda.get_device_name(device) if cuda else "cpu"
        self.info = BackendInfo(
            "torch",
            name,
            {"generator": low, "vae_decode": low, "translator": "fp32"},
            dict.fromkeys(("generator", "vae_decode", "translator"), "torch"),
            torch.get_num_threads(),
        )
        stages: tuple[Stage, Stage, Stage] = (self._run_generator, self._run_vae, self._run_translator)
        if cuda and cuda_graphs:
            stages = (_GraphedStage(stages[0]), _GraphedStage(stages[1]), _GraphedStage(stages[2]))
        self._stages = stages

    # Each stage casts to the stage's precision inside, so graphs capture the casts too.
    @torch.inference_mode()
    def _run_generator(self, cls: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        dtype = torch.float16 if self.half else torch.float32
        out = self._generator_module(cls, *(t.to(dtype) for t in rest))
        return tuple(t.float() for t in out)

    @torch.inference_mode()
    def _run_vae(self, z: Tensor) -> tuple[Tensor, ...]:
        dtype = torch.float16 if self.half else torch.float32
        return (self._vae.decode(z.to(dtype)).float(),)

    @torch.inference_mode()
    def _run_translator(self, *args: Tensor) -> tuple[Tensor, ...]:
        return (self._translator(*args),)

    def generator(self, cls: Tensor, noise: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        return self._stages[0](cls, noise, *state)

    def vae_decode(self, z: Tensor) -> Tensor:
        return self._stages[1](z)[0]

    def translator(
        self, image: Tensor, flow_basis: Tensor, neutral: Tensor, target: Tensor, palette: Tensor
    ) -> Tensor:
        return self._stages[2](image, flow_basis, neutral, target, palette)[0]

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
