"""FakeTensorRT: a stand-in for the ``tensorrt`` module, for the engine-cache tests only.

It implements just the TensorRT 10 calls that ``trt_build.builder`` makes, records them, and
"builds" an engine whose bytes are derived from the ONNX file, the precision and the version.
It runs nothing: the tests that use it check the cache's keys, rebuild decisions and profiles,
never inference. TensorRT itself cannot be installed on machines without NVIDIA's index.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

MAGIC = b"FAKE-TRT-ENGINE:"


class Logger:
    WARNING = 2
    ERROR = 1

    def __init__(self, severity: int = 2) -> None:
        self.severity = severity


class BuilderFlag:
    FP16 = "FP16"


class MemoryPoolType:
    WORKSPACE = "WORKSPACE"


class _Blob:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def serialize(self) -> bytes:
        return self.data

    def __bytes__(self) -> bytes:
        return self.data


class _Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, name: str, low: tuple[int, ...], opt: tuple[int, ...], high: tuple[int, ...]) -> None:
        self.shapes[name] = (low, opt, high)


class _Config:
    def __init__(self) -> None:
        self.flags: set[str] = set()
        self.profiles: list[_Profile] = []
        self.timing = b""

    def set_memory_pool_limit(self, pool: str, size: int) -> None:
        assert pool == MemoryPoolType.WORKSPACE and size > 0

    def set_flag(self, flag: str) -> None:
        self.flags.add(flag)

    def add_optimization_profile(self, profile: _Profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, data: bytes) -> _Blob:
        return _Blob(data)

    def set_timing_cache(self, cache: _Blob, ignore_mismatch: bool) -> bool:
        self.timing = cache.data
        return True

    def get_timing_cache(self) -> _Blob:
        return _Blob(self.timing + b"+timing")


class _Parser:
    def __init__(self, network: dict[str, Any], logger: Logger) -> None:
        self.network = network
        self.errors: list[str] = []

    def parse(self, data: bytes) -> bool:
        if not data.startswith(b"\x08"):  # every ONNX ModelProto starts with ir_version (field 1)
            self.errors.append("ModelImporter: failed to parse the ONNX model")
            return False
        self.network["onnx"] = data
        return True

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, i: int) -> str:
        return self.errors[i]


@dataclass
class Record:
    """What the module was asked to do."""

    builds: list[dict[str, Any]] = field(default_factory=list)


class FakeTensorRT:
    """The module object: ``FakeTensorRT(version)`` has the attributes the builder uses."""

    Logger = Logger
    BuilderFlag = BuilderFlag
    MemoryPoolType = MemoryPoolType

    def __init__(self, version: str = "10.15.1") -> None:
        self.__version__ = version
        self.record = Record()
        fake = self

        class Builder:
            def __init__(self, logger: Logger) -> None:
                self.logger = logger

            def create_network(self, flags: int) -> dict[str, Any]:
                assert flags == 0, "TensorRT 10 networks are created with flags 0 (explicit batch)"
                return {}

            def create_builder_config(self) -> _Config:
                return _Config()

            def create_optimization_profile(self) -> _Profile:
                return _Profile()

            def build_serialized_network(self, network: dict[str, Any], config: _Config) -> _Blob:
                precision = "fp16" if BuilderFlag.FP16 in config.flags else "fp32"
                digest = hashlib.sha256(network["onnx"] + precision.encode() + fake.__version__.encode())
                fake.record.builds.append({"precision": precision, "profiles": config.profiles})
                return _Blob(MAGIC + digest.hexdigest().encode())

        class Runtime:
            def __init__(self, logger: Logger) -> None:
                self.logger = logger

            def deserialize_cuda_engine(self, data: bytes) -> object | None:
                return object() if bytes(data).startswith(MAGIC) else None

        self.Builder = Builder
        self.Runtime = Runtime
        self.OnnxParser = _Parser
