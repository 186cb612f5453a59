"""Exported ONNX graphs on demand, in a cache folder keyed by what they were made from.

``ensure_onnx`` returns the graphs of a model for one crop size, exporting them on the first call
(``trt_build.export``). The key covers the weights, the model and translator configurations, the
opset and the torch version, so changing any of them exports afresh. A manifest records each
file's SHA-256: a missing or altered file is logged and exported again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rt_smile.config import TranslatorConfig
from rt_smile.models.cmmnet import CMMNet

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class OnnxGraphs:
    """Paths of the three exported graphs."""

    generator: Path
    vae_decode: Path
    translator: Path

    def paths(self) -> dict[str, Path]:
        return {"generator": self.generator, "vae_decode": self.vae_decode, "translator": self.translator}


def default_cache() -> Path:
    """``$RT_SMILE_CACHE``, else ``$XDG_CACHE_HOME/rt_smile``, else ``~/.cache/rt_smile``."""
    if env := os.environ.get("RT_SMILE_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rt_smile"


#: Modules whose code shapes the graphs: a change to any of them exports afresh.
GRAPH_MODULES = (
    "rt_smile.models.translator", "rt_smile.models.cmmnet", "rt_smile.models.conditional",
    "rt_smile.models.multimode", "rt_smile.models.vae", "trt_build.export",
)  # fmt: skip


def _code_hash() -> str:
    h = hashlib.sha256()
    for name in GRAPH_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            h.update(Path(spec.origin).read_bytes())
    return h.hexdigest()


def model_key(model: CMMNet, size: int, opset: int) -> str:
    """A short hash of the weights, configurations, crop size, opset, torch version and the code
    of the modules that make the graphs."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    meta = {
        "config": model.config.to_dict(),
        "translator": asdict(TranslatorConfig()),
        "size": size,
        "opset": opset,
        "torch": torch.__version__.split("+")[0],
        "code": _code_hash(),
    }
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()[:16]


def graphs_in(folder: Path, size: int) -> OnnxGraphs:
    """The file names ``rt-smile export`` writes into ``folder``."""
    return OnnxGraphs(
        folder / "generator_step.onnx", folder / "vae_decode.onnx", folder / f"translator_{size}.onnx"
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _intact(folder: Path, graphs: OnnxGraphs) -> tuple[bool, str]:
    """Whether every graph is there with the hash the manifest recorded; else why not."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False, "no readable manifest"
    for path in graphs.paths().values():
        if not path.is_file():
            return False, f"{path.name} is missing"
        if manifest.get(path.name) != _sha256(path):
            return False, f"{path.name} does not match its recorded hash (corrupt or altered)"
    return True, ""


def ensure_onnx(
    model: CMMNet, size: int, cache: Path | None = None, weights: Path | None = None
) -> OnnxGraphs:
    """The model's graphs for ``size``, exported into ``cache`` (default: the user cache) unless
    an intact export is already there. ``weights`` is only logged."""
    from trt_build.export import OPSET, export_all

    folder = (cache or default_cache()) / "onnx" / model_key(model, size, OPSET)
    graphs = graphs_in(folder, size)
    ok, why = _intact(folder, graphs)
    if ok:
        return graphs
    if (folder / MANIFEST).exists() or any(p.exists() for p in graphs.paths().values()):
        logger.warning("re-exporting the ONNX graphs in %s: %s", folder, why)
    else:
        logger.info("exporting ONNX graphs of %s to %s", weights or "the shipped weights", folder)
    (folder / MANIFEST).unlink(missing_ok=True)
    try:
        done = export_all(model, size, folder)
    except ImportError as exc:  # onnx or onnxruntime (the parity check) missing
        from rt_smile.runtime.backends import BackendError

        raise BackendError(f"cannot export the ONNX graphs: {exc} (pip install 'rt_smile[onnx]')") from exc
    for item in done:
        if item.parity > 1e-4:
            logger.warning("%s: onnxruntime parity %.2e exceeds 1e-4", item.name, item.parity)
    manifest = {p.name: _sha256(p) for p in graphs.paths().values()}
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(folder / MANIFEST)
    return graphs
