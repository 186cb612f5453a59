"""The torch backend: FP32 on the CPU, the translator as a traced graph; FP16 recurrent stages
and CUDA-graph replay on CUDA.

On CUDA the generator and the VAE decoder run in FP16 and the translator in FP32 (its sampling
coordinates need FP32 precision at 512², as is common for grid-sampling layers). With
``cuda_graphs`` each stage is captured once per input shape and replayed: one launch instead of
hundreds of small kernels, which is what makes a K-mode step sub-millisecond. On the CPU the
translator is traced once per input shape (``TracedStage``): its several hundred small ops then
run without Python between them: 9-25 % less time per call over two runs on 2 cores
(``benchmarks/results/translator_cpu.json``). Before its first run the graph loses what only
costs time: scalar constants that each call would copy into a tensor
(``dimension_scalar_constants``) and slices that keep a whole dimension (``drop_full_slices``).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rt_smile.models.cmmnet import CMMNet
from rt_smile.models.translator import Translator
from rt_smile.runtime.backends import BackendInfo
from trt_build.export import GeneratorStep

logger = logging.getLogger(__name__)

Stage = Callable[..., tuple[Tensor, ...]]
_Signature = tuple[tuple[tuple[int, ...], torch.dtype, torch.device], ...]


def _signature(args: tuple[Tensor, ...]) -> _Signature:
    """What a traced graph is specific to: every input's shape, dtype and device."""
    return tuple((tuple(a.shape), a.dtype, a.device) for a in args)


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


class _GraphedStage:
    """A stage captured as a CUDA graph per input signature and replayed on static buffers.

    All graphs share one memory pool; at most ``max_graphs`` are kept (least recently used
    first out), since a live server meets new shapes as sessions and smile episodes come and go.
    A stage that cannot be captured runs eagerly from then on, with a warning."""

    def __init__(self, fn: Stage, pool: Any, max_graphs: int = 16, warmup: int = 3) -> None:
        self.fn = fn
        self.pool = pool
        self.max_graphs = max_graphs
        self.warmup = warmup
        self.graphs: OrderedDict[_Signature, _Graph] = OrderedDict()
        self.eager = False

    def __call__(self, *args: Tensor) -> tuple[Tensor, ...]:
        if self.eager:
            return self.fn(*args)
        key = _signature(args)
        entry = self.graphs.get(key)
        if entry is None:
            try:
                entry = self._capture(args)
            except RuntimeError as exc:
                logger.warning("CUDA-graph capture failed, running %s eagerly: %s", self.fn.__name__, exc)
                self.eager = True
                return self.fn(*args)
            self.graphs[key] = entry
            while len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
        self.graphs.move_to_end(key)
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
        with torch.cuda.graph(graph, pool=self.pool):
            outputs = self.fn(*static)
        return _Graph(graph, static, outputs)


#: Elementwise ops with a floating result whose scalar operands ``dimension_scalar_constants``
#: may rewrite.
_ELEMENTWISE = frozenset(
    f"aten::{op}"
    for op in (
        "add",
        "sub",
        "rsub",
        "mul",
        "div",
        "where",
        "clamp",
        "clamp_min",
        "clamp_max",
        "maximum",
        "minimum",
    )
)


def dimension_scalar_constants(graph: torch._C.Graph) -> int:
    """Rewrite a traced graph's floating-point scalar constants as one-element FP32 tensors;
    returns how many. The tracer records ``x * 2.0`` with the 2.0 as a 0-dim tensor, which
    every call of the op copies into a tensor of ``x``'s type first (an extra ~2 µs op); a
    one-element tensor of that type broadcasts instead (same values). Only constants whose
    every use is an elementwise op (``_ELEMENTWISE``) with a float32 result of at least one
    dimension are rewritten, so no result changes shape or type. For graphs that run on the
    CPU (the new constants are CPU tensors, which a CUDA op would not take); top-level nodes
    only (a traced graph has no sub-blocks)."""
    count = 0
    for node in list(graph.nodes()):
        if node.kind() != "prim::Constant" or not _is_scalar_float(node.output().type()):
            continue
        if not all(_float_elementwise(use.user) for use in node.output().uses()):
            continue
        with graph.insert_point_guard(node):
            new = graph.insertConstant(node.t("value").to(torch.float32).reshape(1))  # type: ignore[attr-defined]
        node.output().replaceAllUsesWith(new)
        node.destroy()
        count += 1
    return count


def drop_full_slices(graph: torch._C.Graph) -> int:
    """Remove a traced graph's tensor slices that keep a whole dimension (``x[:, i]`` records
    one for the ``:``): each returns a view of its whole input, so its uses can take the input
    itself; returns how many were removed. Top-level nodes only."""
    count = 0
    for node in list(graph.nodes()):
        if node.kind() != "aten::slice" or node.inputsSize() != 5:  # 4 inputs: a list's slice
            continue
        if not isinstance(next(node.inputs()).type(), torch._C.TensorType):
            continue
        _, _, start, end, step = (_int_constant(v) for v in node.inputs())
        if start == 0 and step == 1 and end is not None and end >= 2**62:
            node.output().replaceAllUsesWith(next(node.inputs()))
            node.destroy()
            count += 1
    return count


def _int_constant(value: torch._C.Value) -> int | None:
    node = value.node()
    if node.kind() != "prim::Constant" or not isinstance(value.type(), torch._C.IntType):
        return None
    return int(node.i("value"))


def _is_scalar_float(t: torch._C.JitType) -> bool:
    return isinstance(t, torch._C.TensorType) and t.dim() == 0 and t.scalarType() in ("Double", "Float")


def _float_elementwise(node: torch._C.Node) -> bool:
    if node.kind() not in _ELEMENTWISE:
        return False
    out = node.output().type()
    return isinstance(out, torch._C.TensorType) and (out.dim() or 0) >= 1 and out.scalarType() == "Float"


class TracedStage:
    """A module run as a TorchScript graph traced once per input signature (``_signature``), so
    its ops run one after another without Python in between; the module must be a fixed
    sequence of tensor ops for inputs of one shape, as the translator is.

    A new signature runs eagerly (the module's own errors are raised as they are), and its graph
    is traced, and run twice so that TorchScript's first optimising runs happen there, in a
    background thread: a live engine meeting a new batch shape (a session joins) does not stall
    for the trace. Calls of that shape run eagerly until the graph is ready. At most
    ``max_graphs`` are kept (least recently used first out). ``torch.jit`` is deprecated in
    recent torch: where tracing fails or is gone, the module runs eagerly from then on (the same
    computation), with a warning."""

    def __init__(self, module: nn.Module, max_graphs: int = 16, background: bool = True) -> None:
        self.module = module
        self.max_graphs = max(1, max_graphs)
        self.background = background
        self.graphs: OrderedDict[_Signature, Callable[..., Tensor]] = OrderedDict()
        self.eager = False
        self._lock = threading.Lock()
        self._pending: dict[_Signature, threading.Thread] = {}

    @torch.inference_mode()
    def __call__(self, *args: Tensor) -> Tensor:
        key = _signature(args)
        with self._lock:
            graph = None if self.eager else self.graphs.get(key)
            if graph is not None:
                self.graphs.move_to_end(key)
        if graph is not None:
            return graph(*args)
        out: Tensor = self.module(*args)
        self._start_trace(key, args)
        return out

    def join(self) -> None:
        """Wait for the traces in progress."""
        with self._lock:
            threads = list(self._pending.values())
        for thread in threads:
            thread.join()

    def _start_trace(self, key: _Signature, args: tuple[Tensor, ...]) -> None:
        with self._lock:
            if self.eager or key in self._pending or key in self.graphs:
                return
            example = tuple(a.detach().clone() for a in args)
            thread = threading.Thread(
                target=self._trace, args=(key, example), name="rt-smile-trace", daemon=True
            )
            self._pending[key] = thread
        if self.background:
            thread.start()
        else:
            thread.run()

    @torch.inference_mode()
    def _trace(self, key: _Signature, example: tuple[Tensor, ...]) -> None:
        try:
            graph = torch.jit.trace(self.module, example, check_trace=False)  # type: ignore[no-untyped-call]
            dimension_scalar_constants(graph.graph)
            drop_full_slices(graph.graph)
            for _ in range(2):
                graph(*example)
        except Exception as exc:  # any tracer failure: the eager module computes the same
            logger.warning("tracing %s failed, running it eagerly: %s", type(self.module).__name__, exc)
            with self._lock:
                self.eager = True
                self._pending.pop(key, None)
            return
        with self._lock:
            self.graphs[key] = graph
            while len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
            self._pending.pop(key, None)


class TorchBackend:
    """``StepBackend`` on torch: a copy of the model on ``device``."""

    def __init__(
        self, model: CMMNet, size: int, device: torch.device, cuda_graphs: bool = True,
        half: bool | None = None, trace: bool = True,
    ) -> None:  # fmt: skip
        """``half``: FP16 recurrent stages (default: on CUDA only). ``trace``: on the CPU, run the
        translator as a traced graph (``TracedStage``; the same output as eager)."""
        self.device = device
        cuda = device.type == "cuda"
        self.half = cuda if half is None else half
        model = copy.deepcopy(model).eval().to(device)
        self._generator_module = GeneratorStep(model.half() if self.half else model)
        self._vae = model.vae
        self._translator = Translator(size).eval().to(device)
        self._traced = TracedStage(self._translator) if trace and not cuda else None
        low = "fp16" if self.half else "fp32"
        name = torch.cuda.get_device_name(device) if cuda else "cpu"
        self.info = BackendInfo(
            "torch",
            name,
            {"generator": low, "vae_decode": low, "translator": "fp32"},
            {
                "generator": "torch",
                "vae_decode": "torch",
                "translator": "torch" if self._traced is None else "torchscript",
            },
            torch.get_num_threads(),
        )
        stages: tuple[Stage, Stage, Stage] = (self._run_generator, self._run_vae, self._run_translator)
        if cuda and cuda_graphs:
            pool = torch.cuda.graph_pool_handle()
            stages = tuple(_GraphedStage(stage, pool) for stage in stages)  # type: ignore[assignment]
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
        return (self._traced(*args) if self._traced is not None else self._translator(*args),)

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
