"""TensorRT 10 engine builder and engine cache.

``build_engine`` parses an ONNX file with TensorRT's ONNX parser and builds a serialized engine with
``build_serialized_network``: FP16 when asked, one optimization profile (min/opt/max batch) and
a timing cache kept beside the engines so rebuilds are fast.

``EngineCache`` keeps engines keyed by the ONNX file's SHA-256, the TensorRT version, the GPU's
compute capability, the precision and the profile. Engines are not portable across GPUs or
TensorRT versions, so an engine whose recorded key differs from this machine's, or whose bytes
do not match their recorded hash (corrupt), or that TensorRT refuses to deserialize, is rebuilt
and the reason logged.

The ``tensorrt`` module is passed in (``import tensorrt`` by default), so the cache logic is
tested here with a stand-in named as such (``tests/trt_build/fake_tensorrt.py``); TensorRT itself
cannot be installed on machines without NVIDIA's index.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

logger = logging.getLogger(__name__)

#: ONNX symbolic batch axes: ``batch`` (rows: generator rows, or frames), ``batch_modes`` (the
#: generator's per-mode rows, batch × K) and ``photos`` (the translator's per-photo inputs, each
#: shared by the frames of one photo; from 1 up to the batch).
AXIS_UNITS = ("batch", "batch_modes", "photos")


class EngineError(RuntimeError):
    """An engine cannot be built or loaded (with what to do about it)."""


@dataclass(frozen=True)
class Profile:
    """Batch sizes of one optimization profile."""

    min: int = 1
    opt: int = 4
    max: int = 64

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ValueError(f"profile needs 1 ≤ min ≤ opt ≤ max, got {self}")


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on."""

    onnx_sha256: str
    tensorrt: str
    compute_capability: str
    precision: str
    profile: Profile

    def file_stem(self, name: str) -> str:
        """Engines of the same graph, precision and profile share a file name, so an engine
        from another GPU or TensorRT version is found, recognised and replaced."""
        p = self.profile
        return f"{name}-{self.onnx_sha256[:12]}-{self.precision}-b{p.min}_{p.opt}_{p.max}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as exc:
        raise EngineError(
            "TensorRT is not installed: pip install 'rt_smile[trt]' on a machine with an NVIDIA GPU "
            "(TensorRT 10 wheels come from NVIDIA's package index)"
        ) from exc
    return tensorrt


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _onnx_inputs(onnx_bytes: bytes) -> dict[str, list[int | str]]:
    """Input name → dims (int, or the symbolic axis name) of an ONNX model."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    return {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input
    }


def profile_shapes(
    dims: list[int | str], profile: Profile, modes: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) shapes of one input whose dims may name a batch axis."""

    def at(batch: int, photos: int) -> tuple[int, ...]:
        unit = {"batch": batch, "batch_modes": batch * modes, "photos": photos}
        out = []
        for d in dims:
            if isinstance(d, str):
                if d not in unit:
                    raise EngineError(f"unknown dynamic axis {d!r} (expected one of {AXIS_UNITS})")
                out.append(unit[d])
            else:
                out.append(int(d))
        return tuple(out)

    return at(profile.min, 1), at(profile.opt, 1), at(profile.max, profile.max)


def build_engine(
    trt: Any, onnx_path: Path, precision: str, profile: Profile, modes: int, timing_cache: Path | None = None
) -> bytes:
    """A serialized TensorRT engine of ``onnx_path`` (TensorRT 10 API)."""
    data = onnx_path.read_bytes()
    log = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(log)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, log)
    if not parser.parse(data):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors or 'no details'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 4 << 30)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision != "fp32":
        raise EngineError(f"unknown precision {precision!r}; choose fp16 or fp32")
    opt_profile = builder.create_optimization_profile()
    for name, dims in _onnx_inputs(data).items():
        opt_profile.set_shape(name, *profile_shapes(dims, profile, modes))
    config.add_optimization_profile(opt_profile)
    cache = config.create_timing_cache(
        timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    )
    if not config.set_timing_cache(cache, False):
        logger.warning("the timing cache %s does not match this GPU or TensorRT; timing afresh", timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT could not build an engine from {onnx_path} (see its log above)")
    if timing_cache is not None:
        _write_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


class LoadedEngine(NamedTuple):
    """One engine from the cache: its bytes, its file, and the engine TensorRT deserialized
    from them while checking a cached file (None after a fresh build), so a runner need not
    deserialize it again."""

    data: bytes
    path: Path
    engine: Any = None


class EngineCache:
    """Engines in ``folder``: ``NAME-….engine`` with a ``.json`` sidecar holding its key and hash."""

    def __init__(self, folder: Path, trt: Any | None = None, compute_capability: str | None = None) -> None:
        self.folder = folder
        self.trt = trt if trt is not None else load_tensorrt()
        self.capability = compute_capability or _compute_capability()
        self.timing_cache = folder / f"timing-{self.capability}-trt{self.trt.__version__}.cache"

    def key(self, onnx_path: Path, precision: str, profile: Profile) -> EngineKey:
        try:
            digest = _sha256(onnx_path.read_bytes())
        except FileNotFoundError as exc:
            raise EngineError(f"{onnx_path} not found; export it with 'rt-smile export'") from exc
        return EngineKey(digest, str(self.trt.__version__), self.capability, precision, profile)

    def paths(self, name: str, key: EngineKey) -> tuple[Path, Path]:
        stem = key.file_stem(name)
        return self.folder / f"{stem}.engine", self.folder / f"{stem}.json"

    def stale_reason(self, name: str, key: EngineKey) -> str | None:
        """Why the cached engine cannot be used (None: it can)."""
        engine, sidecar = self.paths(name, key)
        if not engine.is_file():
            return "no engine built yet"
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            return "its key file is missing or unreadable"
        built = meta.get("key", {})
        for field, label in (("tensorrt", "TensorRT"), ("compute_capability", "GPU compute capability")):
            if built.get(field) != getattr(key, field):
                return f"it was built for {label} {built.get(field)}, this machine has {getattr(key, field)}"
        if built != key.to_dict():
            return "its key differs (ONNX, precision or profile)"
        if meta.get("engine_sha256") != _sha256(engine.read_bytes()):
            return "its bytes do not match the recorded hash (corrupt)"
        return None

    def load(
        self,
        name: str,
        onnx_path: Path,
        precision: str = "fp16",
        profile: Profile = Profile(),
        modes: int = 4,
    ) -> LoadedEngine:
        """The engine, built (and cached) if there is no usable one."""
        key = self.key(onnx_path, precision, profile)
        engine, sidecar = self.paths(name, key)
        reason = self.stale_reason(name, key)
        if reason is None:
            data = engine.read_bytes()
            runtime = self.trt.Runtime(self.trt.Logger(self.trt.Logger.ERROR))
            deserialized = runtime.deserialize_cuda_engine(data)
            if deserialized is not None:
                logger.info("engine %s from cache", engine.name)
                return LoadedEngine(data, engine, deserialized)
            reason = "TensorRT could not deserialize it"
        if engine.exists():
            logger.warning("rebuilding %s: %s", engine.name, reason)
        else:
            logger.info("building %s (%s, batch %s)", engine.name, precision, profile)
        data = build_engine(self.trt, onnx_path, precision, profile, modes, self.timing_cache)
        _write_atomic(engine, data)
        meta = {"key": key.to_dict(), "engine_sha256": _sha256(data), "onnx": str(onnx_path)}
        _write_atomic(sidecar, json.dumps(meta, indent=1).encode())
        return LoadedEngine(data, engine)


def _compute_capability() -> str:
    import torch

    if not torch.cuda.is_available():
        raise EngineError("TensorRT engines need a CUDA GPU, and torch sees none")
    major, minor = torch.cuda.get_device_capability()
    return f"sm_{major}{minor}"
