"""Machine description recorded with every benchmark result."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
from typing import Any

_LIBRARIES = ("torch", "numpy", "onnx", "onnxruntime", "tensorrt", "av", "aiortc", "mediapipe")


def _cpu_name() -> str:
    try:
        import cpuinfo

        return str(cpuinfo.get_cpu_info().get("brand_raw") or platform.processor())
    except ImportError:
        return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _driver() -> str | None:
    """The NVIDIA driver version from nvidia-smi, when there is one."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else None


def machine_info() -> dict[str, Any]:
    """CPU, the vector instructions torch's CPU kernels use (``AVX512``, ``AVX2``, ...: results
    and speeds differ between them), cores, threads, GPU, driver, CUDA and library versions."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "cpu": _cpu_name(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_capability": "sm_{}{}".format(*torch.cuda.get_device_capability(0)) if cuda else None,
        "driver": _driver() if cuda else None,
        "cuda": torch.version.cuda if cuda else None,
        "libraries": {name: _version(name) for name in _LIBRARIES},
    }
