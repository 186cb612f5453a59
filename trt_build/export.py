"""ONNX export of the per-frame graphs, each with a dynamic batch axis:

- ``generator_step``: one step of the conditional LSTM and the multi-mode generator, recurrent state
  as explicit inputs and outputs (``CMMNet.step`` without the decode);
- ``vae_decode``: latent codes → aligned landmarks;
- ``translator``: photo inputs + target landmarks → frames (one photo per batch row).

The same ``step`` functions serve training, the runtime and these graphs. Parity with torch is
checked by ``parity`` (onnxruntime, many steps with the state fed back).
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from rt_smile.models.cmmnet import CMMNet
from rt_smile.models.translator import FacePrior, Translator

logger = logging.getLogger(__name__)

GRAPHS = ("generator_step", "vae_decode", "translator")
OPSET = 17
#: I/O tensor names of the graphs, in call order (the backends feed and read them by name).
GENERATOR_INPUTS = ("cls", "noise", "z", "cond_h", "cond_c", "mm_h", "mm_c", "z0_modes")
GENERATOR_OUTPUTS = ("z_modes", "z_next", "cond_h_next", "cond_c_next", "mm_h_next", "mm_c_next")
TRANSLATOR_INPUTS = ("image", "flow_basis", "neutral", "target", "palette")


class GeneratorStep(nn.Module):
    """Flat-tensor view of one generator step."""

    def __init__(self, model: CMMNet) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, cls: Tensor, noise: Tensor, z: Tensor, cond_h: Tensor, cond_c: Tensor,
        mm_h: Tensor, mm_c: Tensor, z0_modes: Tensor,
    ) -> tuple[Tensor, ...]:  # fmt: skip
        """cls (B,) int64, noise (B, n), z (B, z), cond_h/c (L, B, H), mm_h/c (Lm, B·K, Hm),
        z0_modes (B·K, z + mode noise) → z_modes (B, K, z), z, cond_h, cond_c, mm_h, mm_c."""
        z_t, (ch, cc) = self.model.conditional.step(z, cls, noise, (cond_h, cond_c))
        z_modes, (mh, mc, _) = self.model.multimode.step(z_t, (mm_h, mm_c, z0_modes))
        return z_modes, z_t, ch, cc, mh, mc


class VaeDecode(nn.Module):
    def __init__(self, model: CMMNet) -> None:
        super().__init__()
        self.vae = model.vae

    def forward(self, z: Tensor) -> Tensor:
        """z (N, z) → landmarks (N, 468, 2)."""
        return self.vae.decode(z)


class TranslatorGraph(nn.Module):
    def __init__(self, translator: Translator) -> None:
        super().__init__()
        self.translator = translator

    def forward(
        self, image: Tensor, flow_basis: Tensor, neutral: Tensor, target: Tensor, palette: Tensor
    ) -> Tensor:
        """P photos with K frames each (B = P·K): image (P, 3, S, S), flow_basis (P, N, G²),
        neutral (P, N, 2), palette (P, 6, 3), target (B, N, 2) → frames (B, 3, S, S)."""
        return self.translator(image, flow_basis, neutral, target, palette)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class GraphSpec:
    """One graph: its module, example inputs, I/O names and which axes are the batch."""

    name: str
    module: nn.Module
    inputs: tuple[Tensor, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    #: name → axis → symbolic size ("batch", or "batch_modes" = batch × K)
    dynamic_axes: dict[str, dict[int, str]]


def generator_spec(model: CMMNet, batch: int = 2) -> GraphSpec:
    cfg = model.config
    k, z = model.modes, cfg.vae.z_dim
    g = torch.Generator().manual_seed(0)
    neutral = 0.05 * torch.randn(batch, 468, 2, generator=g) + model.vae.mean.reshape(468, 2)
    with torch.no_grad():
        state = model.start(neutral, torch.arange(batch) % 2, model.multimode.sample_noise(batch, g))
    inputs = (
        torch.arange(batch) % 2,
        torch.randn(batch, cfg.conditional.noise_dim, generator=g),
        state.z, *state.conditional, state.multimode[0], state.multimode[1], state.multimode[2],
    )  # fmt: skip
    b, bk = {0: "batch"}, {0: "batch_modes"}
    axes = {
        "cls": b, "noise": b, "z": b, "cond_h": {1: "batch"}, "cond_c": {1: "batch"},
        "mm_h": {1: "batch_modes"}, "mm_c": {1: "batch_modes"}, "z0_modes": bk,
        "z_modes": b, "z_next": b, "cond_h_next": {1: "batch"}, "cond_c_next": {1: "batch"},
        "mm_h_next": {1: "batch_modes"}, "mm_c_next": {1: "batch_modes"},
    }  # fmt: skip
    assert inputs[-1].shape == (batch * k, z + cfg.multimode.cond_dim)  # neutral code, mode noise, style
    return GraphSpec(
        "generator_step",
        GeneratorStep(model),
        inputs,
        GENERATOR_INPUTS,
        GENERATOR_OUTPUTS,
        axes,
    )


def vae_spec(model: CMMNet, batch: int = 8) -> GraphSpec:
    z = torch.randn(batch, model.config.vae.z_dim, generator=torch.Generator().manual_seed(1))
    # one row per generator row and mode: the per-mode axis, as the generator's z0_modes
    axes = {"z": {0: "batch_modes"}, "landmarks": {0: "batch_modes"}}
    return GraphSpec("vae_decode", VaeDecode(model), (z,), ("z",), ("landmarks",), axes)


def translator_spec(translator: Translator, prior: Any, targets: Tensor, photos: int = 1) -> GraphSpec:
    """``prior``: a ``FacePrior`` used for each of ``photos`` photos; ``targets`` (K, N, 2)
    example target landmarks of every photo. The graph has two dynamic axes: ``photos`` (the
    per-photo inputs) and ``batch`` (frames: photos × K)."""
    n = prior.neutral.shape[0]
    inputs = (
        prior.image.expand(photos, -1, -1, -1).contiguous(),
        prior.flow_basis.expand(photos, -1, -1).contiguous(),
        prior.neutral.expand(photos, -1, -1).contiguous(),
        targets[:, :n].repeat(photos, 1, 1).contiguous(),
        prior.palette.expand(photos, -1, -1).contiguous(),
    )
    names = TRANSLATOR_INPUTS
    axes: dict[str, dict[int, str]] = {name: {0: "photos"} for name in names}
    axes["target"] = axes["frames"] = {0: "batch"}
    return GraphSpec("translator", TranslatorGraph(translator), inputs, names, ("frames",), axes)


def export_graph(spec: GraphSpec, path: Path, opset: int = OPSET) -> Path:
    """Write ``spec`` as ONNX to ``path`` (atomically) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".onnx.tmp")
    spec.module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # torch's TorchScript-based exporter: fixed-shape tensor ops export as they are, with no
        # extra dependency; it warns that newer torch prefers its torch.export-based exporter.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            spec.module, spec.inputs, str(tmp), dynamo=False, opset_version=opset,
            input_names=list(spec.input_names), output_names=list(spec.output_names),
            dynamic_axes=spec.dynamic_axes, do_constant_folding=True,
        )  # fmt: skip
    tmp.replace(path)
    logger.info("exported %s (%s)", path, file_hash(path)[:12])
    return path


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def relative_error(out: NDArray[Any], ref: NDArray[Any]) -> float:
    """‖out − ref‖₂ / ‖ref‖₂."""
    ref64 = np.asarray(ref, np.float64)
    norm = max(float(np.linalg.norm(ref64)), 1e-12)
    return float(np.linalg.norm(np.asarray(out, np.float64) - ref64)) / norm


def parity(spec: GraphSpec, path: Path, steps: int = 1, feedback: Callable[..., Any] | None = None) -> float:
    """Largest relative error of onnxruntime against torch FP32 over ``steps`` calls; with
    ``feedback(inputs, outputs) -> inputs`` (the generator's state), each call feeds the next."""
    from rt_smile.runtime.backends.ort_backend import open_session

    session = open_session(path)
    torch_in, ort_in = spec.inputs, [t.numpy() for t in spec.inputs]
    worst = 0.0
    with torch.no_grad():
        for _ in range(steps):
            ref = spec.module(*torch_in)
            ref = ref if isinstance(ref, tuple) else (ref,)
            out = session.run(list(spec.output_names), dict(zip(spec.input_names, ort_in, strict=True)))
            worst = max(worst, *(relative_error(o, r.numpy()) for o, r in zip(out, ref, strict=True)))
            if feedback is None:
                break
            torch_in = feedback(torch_in, ref)
            ort_in = [np.asarray(x) for x in feedback(tuple(ort_in), tuple(out))]
    return worst


def generator_feedback(inputs: tuple[Any, ...], outputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """Next step's inputs: same class and noise, the step's new z and states, same z0_modes."""
    cls, noise, *_rest, z0_modes = inputs
    _z_modes, z, ch, cc, mh, mc = outputs
    return (cls, noise, z, ch, cc, mh, mc, z0_modes)


def example_prior(size: int) -> tuple[FacePrior, Tensor]:
    """Translator inputs that need no face detector (so export runs where MediaPipe does not):
    the canonical neutral face placed in a ``size`` crop over the bundled sample photo, and three
    smiling targets (closed, open, blink). Returns (prior, targets (3, 468, 2))."""
    from importlib import resources

    from PIL import Image

    from rt_smile.config import CropConfig
    from rt_smile.data.expressions import apply_expression
    from rt_smile.face.align import canonical_template, canonical_to_crop
    from rt_smile.models.translator import prepare_face

    sample = resources.files("rt_smile.assets").joinpath("astronaut.png")
    with resources.as_file(sample) as path:
        image = np.array(Image.open(path).convert("RGB").resize((size, size)), np.uint8)
    neutral = canonical_to_crop(CropConfig(size=size)).apply(canonical_template())
    smiles = [{"AU12": 0.9, "AU6": 0.5}, {"AU12": 0.7, "AU25": 0.7, "AU26": 0.4}, {"AU45": 1.0}]
    targets = np.stack([apply_expression(neutral, e) for e in smiles])
    return prepare_face(image, neutral), torch.from_numpy(targets).float()


@dataclass(frozen=True)
class Exported:
    """One exported graph and its checks."""

    name: str
    path: Path
    parity: float
    tensorrt_problems: list[str]


def export_all(model: CMMNet, size: int, out: Path, opset: int = OPSET) -> list[Exported]:
    """Export every graph into ``out`` and check each: onnxruntime parity against torch FP32
    (the generator over 60 steps with its state fed back) and TensorRT 10 parser support."""
    from trt_build.trt_ops import check_file

    prior, targets = example_prior(size)
    specs = [
        (generator_spec(model), 60, generator_feedback),
        (vae_spec(model), 1, None),
        (translator_spec(Translator(size), prior, targets, photos=2), 1, None),
    ]
    done = []
    for spec, steps, feedback in specs:
        stem = f"{spec.name}_{size}" if spec.name == "translator" else spec.name
        path = export_graph(spec, out / f"{stem}.onnx", opset)
        done.append(Exported(spec.name, path, parity(spec, path, steps, feedback), check_file(path)))
    return done
