"""ONNX export of the per-frame graphs: onnxruntime matches torch FP32 (‖out − ref‖ / ‖ref‖ ≤ 1e-4)
over many generator steps with the state fed back, at other batch sizes than exported, and every
graph passes the TensorRT 10 ONNX-parser support check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from rt_smile.cli import main
from rt_smile.config import CropConfig, DetectorConfig
from rt_smile.data.expressions import apply_expression
from rt_smile.face.align import crop_face
from rt_smile.face.landmarks import LandmarkDetector, detect_face
from rt_smile.io.checkpoint import load_cmmnet
from rt_smile.io.images import load_image
from rt_smile.models.cmmnet import CMMNet
from rt_smile.models.translator import Translator, prepare_face
from trt_build.export import (
    GraphSpec,
    export_graph,
    generator_feedback,
    generator_spec,
    parity,
    translator_spec,
    vae_spec,
)
from trt_build.trt_ops import check_file, check_model

TOL = 1e-4


@pytest.fixture(scope="module")
def model() -> CMMNet:
    return load_cmmnet()


@pytest.fixture(scope="module")
def translator_graph(detector: LandmarkDetector, sample_file: Path) -> GraphSpec:
    img = load_image(sample_file)
    crop = crop_face(img, detect_face(img, DetectorConfig(), detector), CropConfig(size=256))
    prior = prepare_face(crop.image, crop.landmarks)
    smiles = [{"AU12": 0.9, "AU6": 0.5}, {"AU12": 0.7, "AU25": 0.7, "AU26": 0.4}, {"AU45": 1.0}]
    targets = np.stack([apply_expression(crop.landmarks, e) for e in smiles])
    return translator_spec(Translator(256), prior, torch.from_numpy(targets).float())


def test_generator_step_matches_torch_over_many_steps(model: CMMNet, tmp_path: Path) -> None:
    path = export_graph(generator_spec(model, batch=2), tmp_path / "generator_step.onnx")
    assert parity(generator_spec(model, batch=2), path, steps=60, feedback=generator_feedback) <= TOL
    # another batch than the one exported (dynamic batch axis)
    assert parity(generator_spec(model, batch=5), path, steps=10, feedback=generator_feedback) <= TOL
    assert check_file(path) == []


def test_a_generator_with_mode_noise_exports_with_the_noise_in_its_state(tmp_path: Path) -> None:
    from rt_smile.models.cmmnet import CMMNetConfig
    from rt_smile.models.multimode import MultiModeConfig
    from rt_smile.models.vae import VAEConfig

    torch.manual_seed(3)
    config = CMMNetConfig(VAEConfig(decoder="linear"), multimode=MultiModeConfig(noise_dim=8))
    noisy = CMMNet(config).eval()
    with torch.no_grad():
        noisy.vae.to_coords.weight.normal_(0.0, 0.1)  # (zero at init)
    spec = generator_spec(noisy, batch=2)
    assert spec.inputs[-1].shape == (2 * noisy.modes, 32 + 8), "z0_modes holds the mode noise"
    path = export_graph(spec, tmp_path / "generator_step.onnx")
    assert parity(generator_spec(noisy, batch=3), path, steps=20, feedback=generator_feedback) <= TOL
    assert check_file(path) == []


def test_vae_decode_matches_torch(model: CMMNet, tmp_path: Path) -> None:
    path = export_graph(vae_spec(model, batch=8), tmp_path / "vae_decode.onnx")
    assert parity(vae_spec(model, batch=3), path) <= TOL
    assert check_file(path) == []


def test_translator_matches_torch_on_a_real_face(translator_graph: GraphSpec, tmp_path: Path) -> None:
    path = export_graph(translator_graph, tmp_path / "translator.onnx")
    assert parity(translator_graph, path) <= TOL
    one = GraphSpec(**{**translator_graph.__dict__, "inputs": tuple(t[:1] for t in translator_graph.inputs)})
    assert parity(one, path) <= TOL
    # two photos (one mirrored), three frames each: other sizes of both dynamic axes
    image, basis, neutral, target, palette = translator_graph.inputs
    two = (torch.cat([image, image.flip(3)]), basis.repeat(2, 1, 1), neutral.repeat(2, 1, 1))
    two_photos = GraphSpec(
        **{**translator_graph.__dict__, "inputs": (*two, target.repeat(2, 1, 1), palette.repeat(2, 1, 1))}
    )
    assert parity(two_photos, path) <= TOL
    graph = onnx.load(str(path))
    assert "GridSample" in {n.op_type for n in graph.graph.node}
    assert check_model(graph) == []


def test_the_support_check_finds_what_tensorrt_rejects(model: CMMNet, tmp_path: Path) -> None:
    graph = onnx.load(str(export_graph(vae_spec(model), tmp_path / "vae.onnx")))
    bad = onnx.helper.make_node("Unique", ["z"], ["u"], name="unique")
    graph.graph.node.append(bad)
    grid = onnx.helper.make_node("GridSample", ["x5", "g5"], ["y5"], name="grid5d")
    graph.graph.node.append(grid)
    graph.graph.input.extend(
        [
            onnx.helper.make_tensor_value_info("x5", onnx.TensorProto.FLOAT, [1, 1, 2, 2, 2]),
            onnx.helper.make_tensor_value_info("g5", onnx.TensorProto.FLOAT, [1, 2, 2, 2, 3]),
        ]
    )
    problems = check_model(graph)
    assert any(p.startswith("Unique") for p in problems)
    assert any("grid5d" in p and "4-D" in p for p in problems)


def test_export_command_writes_and_checks_every_graph(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "--out", str(tmp_path / "onnx")]) == 0
    names = sorted(p.name for p in (tmp_path / "onnx").iterdir())
    assert names == ["generator_step.onnx", "translator_256.onnx", "vae_decode.onnx"]
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all("TensorRT 10 parser: ok" in line for line in lines)
    assert all(float(line.split("parity ")[1].split()[0]) <= TOL for line in lines)


def test_export_to_an_unwritable_place_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["export", "--out", str(blocker / "onnx")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot write" in err
