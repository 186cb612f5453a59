"""Run a TensorRT 10 engine with torch tensors as its I/O buffers.

Named tensors (``set_input_shape``, ``set_tensor_address``) and ``execute_async_v3`` on torch's
current CUDA stream: torch owns the one CUDA context and every buffer, so there is no pycuda and
no second context, and the engine's work is ordered with the torch work around it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from trt_build.builder import EngineError

Shape = tuple[int, ...]
#: TensorRT needs I/O buffers aligned to 256 bytes.
ALIGNMENT = 256


def torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {
        trt.DataType.FLOAT: torch.float32,
        trt.DataType.HALF: torch.float16,
        trt.DataType.INT32: torch.int32,
        trt.DataType.INT64: torch.int64,
        trt.DataType.BOOL: torch.bool,
        trt.DataType.INT8: torch.int8,
    }
    if dtype not in table:
        raise EngineError(f"engine tensor type {dtype} has no torch equivalent")
    return table[dtype]


def check_shape(name: str, shape: Shape, bounds: tuple[Shape, Shape, Shape]) -> None:
    """Raise EngineError unless ``shape`` lies within the profile's (min, opt, max) shapes."""
    low, _opt, high = (tuple(int(d) for d in b) for b in bounds)
    if len(shape) != len(low):
        raise EngineError(f"input {name!r} has {len(shape)} dimensions, the engine expects {len(low)}")
    for axis, (d, lo, hi) in enumerate(zip(shape, low, high, strict=True)):
        if not lo <= d <= hi:
            what = "batch" if axis == 0 or lo != hi else "size"
            raise EngineError(
                f"input {name!r} has {what} {d} on axis {axis}, outside the engine's profile "
                f"{lo}..{hi}; rebuild with a larger --max-batch (rt-smile build --max-batch N)"
            )


class TrtRunner:
    """One deserialized engine and its execution context."""

    def __init__(self, trt: Any, engine: Any, device: torch.device) -> None:
        """``engine``: serialized bytes, or an engine TensorRT already deserialized."""
        self.trt = trt
        self.device = device
        if isinstance(engine, (bytes, bytearray, memoryview)):
            engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine)
        self.engine = engine
        if self.engine is None:
            raise EngineError("TensorRT could not deserialize the engine; rebuild it with 'rt-smile build'")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) != mode]
        self.dtypes = {n: torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        self.bounds = {n: self.engine.get_tensor_profile_shape(n, 0) for n in self.inputs}

    def _bind_input(self, name: str, tensor: Tensor) -> Tensor:
        """The tensor TensorRT reads for ``name``: on the device, of the engine's dtype,
        contiguous and 256-byte aligned (a view into a larger tensor may not be)."""
        t = tensor.to(self.device, self.dtypes[name]).contiguous()
        if t.data_ptr() % ALIGNMENT:
            t = t.clone()
        check_shape(name, tuple(t.shape), self.bounds[name])
        if not self.context.set_input_shape(name, tuple(t.shape)):
            raise EngineError(f"TensorRT refused the shape {tuple(t.shape)} of input {name!r}")
        self._address(name, t)
        return t

    def _address(self, name: str, t: Tensor) -> None:
        if not self.context.set_tensor_address(name, t.data_ptr()):
            raise EngineError(f"TensorRT refused the buffer of tensor {name!r}")

    def __call__(self, feed: dict[str, Tensor]) -> dict[str, Tensor]:
        """Inputs by name (on the engine's device) → outputs by name."""
        missing = [n for n in self.inputs if n not in feed]
        if missing:
            raise EngineError(f"engine inputs {missing} not given (has {sorted(feed)})")
        # Every bound buffer stays referenced until the work is enqueued: a converted input
        # dropped earlier could hand its memory to an output allocated below.
        bound = [self._bind_input(name, feed[name]) for name in self.inputs]
        outs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            outs[name] = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
            self._address(name, outs[name])
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise EngineError("TensorRT failed to enqueue the engine (see its log above)")
        # Freed after return, the inputs' memory goes only to work queued later on this stream.
        del bound
        return outs
