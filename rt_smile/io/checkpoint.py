"""CMM-Net weights as safetensors files, with the configuration and provenance as metadata."""

from __future__ import annotations

import json
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from rt_smile.errors import RtSmileError
from rt_smile.models.cmmnet import MODEL_VERSION, CMMNet, CMMNetConfig

FORMAT = "rt_smile.cmmnet"
#: The weights shipped in the package (trained on SynthSmile; see docs/training.md).
DEFAULT_WEIGHTS = "cmmnet_synthsmile.safetensors"


class WeightsError(RtSmileError):
    """A weights file is missing, corrupt, or from another model version."""


def default_weights_path() -> Path:
    return Path(str(resources.files("rt_smile.weights").joinpath(DEFAULT_WEIGHTS)))


def save_cmmnet(path: str | Path, model: CMMNet, info: dict[str, Any] | None = None) -> Path:
    """Write the model atomically (temporary file, then rename); floating-point tensors are
    stored as float16 (half the size; loading casts them back to the model's float32)."""
    from safetensors.torch import save_file

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    meta = {
        "format": FORMAT,
        "model_version": str(MODEL_VERSION),
        "config": json.dumps(model.config.to_dict()),
        "info": json.dumps(info or {}),
    }
    fd, tmp = tempfile.mkstemp(prefix=out.name, suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def read_info(path: str | Path) -> dict[str, Any]:
    """The provenance recorded with a weights file (training command, seed, data)."""
    meta = _metadata(Path(path))
    return dict(json.loads(meta.get("info", "{}")))


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise WeightsError(f"{path} is not a safetensors weights file (or is corrupt): {exc}") from exc


def load_cmmnet(path: str | Path | None = None) -> CMMNet:
    """Load a model; raises WeightsError with what to do for any problem."""
    from safetensors.torch import load_file

    p = Path(path) if path is not None else default_weights_path()
    meta = _metadata(p)
    if meta.get("format") != FORMAT:
        raise WeightsError(f"{p} is not an rt_smile CMM-Net weights file")
    if meta.get("model_version") != str(MODEL_VERSION):
        raise WeightsError(
            f"{p} is for model version {meta.get('model_version')}, this rt_smile needs "
            f"{MODEL_VERSION}; retrain with 'rt-smile train' or use the shipped weights"
        )
    try:
        model = CMMNet(CMMNetConfig.from_dict(json.loads(meta["config"])))
        model.load_state_dict(load_file(str(p)))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{p} does not match the CMM-Net architecture: {exc}") from exc
    return model.eval()
