"""Every available backend against torch FP32 on the CPU (the contract), the ONNX cache, and the
errors a user meets: unknown or uninstalled backends, missing or corrupt graphs."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from rt_smile.config import EngineConfig
from rt_smile.face.landmarks import LandmarkDetector
from rt_smile.io.checkpoint import load_cmmnet
from rt_smile.io.images import load_image
from rt_smile.models.cmmnet import CMMNet
from rt_smile.runtime import backends as be
from rt_smile.runtime.backends import BackendError, BackendOptions, available_backends, make_backend
from rt_smile.runtime.backends.torch_backend import (
    TorchBackend,
    TracedStage,
    dimension_scalar_constants,
    drop_full_slices,
)
from rt_smile.runtime.bench import relative_error
from rt_smile.runtime.engine import SmileEngine, prepare_photo
from rt_smile.runtime.onnx_cache import ensure_onnx, graphs_in
from rt_smile.runtime.step import RecurrentState, bench_inputs, frame_step

STEPS = 12


@pytest.fixture(scope="module")
def model() -> CMMNet:
    return load_cmmnet()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rt_smile_cache")


def _unroll(backend: be.StepBackend, model: CMMNet, sessions: int, modes: int) -> list[torch.Tensor]:
    inputs, state, noise = bench_inputs(model, 256, sessions, modes, seed=3)
    inputs, state = inputs.to(backend.device), state.to(backend.device)
    frames = []
    with torch.inference_mode():
        for t in range(STEPS):
            out, state = frame_step(backend, inputs, noise[t].to(backend.device), state)
            frames.append(out.float().cpu().clone())
    assert isinstance(state, RecurrentState)
    return frames


@pytest.mark.parametrize("name", available_backends())
def test_every_available_backend_matches_torch_fp32(model: CMMNet, cache: Path, name: str) -> None:
    """Two sessions of K = 3 modes (the model has 4: modes are cut per session), 12 steps with
    each backend's own state fed back: the frames match torch FP32 on the CPU."""
    reference = TorchBackend(model, 256, torch.device("cpu"), cuda_graphs=False, trace=False)
    backend = make_backend(name, model, BackendOptions(size=256, cache=cache))
    ref, out = _unroll(reference, model, 2, 3), _unroll(backend, model, 2, 3)
    assert out[0].shape == (6, 3, 256, 256)
    tol = 1e-4 if backend.info.precision_of("step") == "fp32" else 2e-2
    errors = [relative_error(o, r) for o, r in zip(out, ref, strict=True)]
    assert max(errors) <= tol, errors
    assert relative_error(out[-1], out[0]) > 1e-3, "the frames move over the steps"


def test_the_traced_translator_gives_the_eager_frames(model: CMMNet) -> None:
    """On the CPU the torch backend runs the translator as a graph traced once per input shape:
    12 steps of two sessions of K = 3 (new landmarks every step, one graph) give the frames of
    the eager translator."""
    eager = TorchBackend(model, 256, torch.device("cpu"), cuda_graphs=False, trace=False)
    traced = TorchBackend(model, 256, torch.device("cpu"), cuda_graphs=False)
    stage = traced._traced
    assert stage is not None and traced.info.graphs["translator"] == "torchscript"
    stage.background = False  # trace on the first call, so that the other 11 run the graph
    ref, out = _unroll(eager, model, 2, 3), _unroll(traced, model, 2, 3)
    assert max(relative_error(o, r) for o, r in zip(out, ref, strict=True)) <= 1e-6
    assert not stage.eager and len(stage.graphs) == 1


def test_the_traced_translator_gives_the_eager_frame_of_one_session(model: CMMNet) -> None:
    """One frame per call (the CPU samples it as two halves on two cores): the traced graph's
    frames are the eager translator's."""
    eager = TorchBackend(model, 256, torch.device("cpu"), cuda_graphs=False, trace=False)
    traced = TorchBackend(model, 256, torch.device("cpu"), cuda_graphs=False)
    assert traced._traced is not None
    traced._traced.background = False
    ref, out = _unroll(eager, model, 1, 1), _unroll(traced, model, 1, 1)
    assert max(relative_error(o, r) for o, r in zip(out, ref, strict=True)) <= 1e-6
    assert len(traced._traced.graphs) == 1


def _scalars(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scalars in elementwise ops with tensor results, and one with a 0-dim result; slices."""
    y = ((x - 1.5) / 1.5).clamp(0.0, 1.0) * 2.0 + torch.where(x > 0.5, x, 0.25)
    return y, x.sum() * 3.0, x[:, 1:] * x[:, 0:1], x[::2]


def test_traced_scalar_constants_become_one_element_tensors() -> None:
    """The three constants of ``_scalars``' tensor-valued arithmetic are rewritten; the one of
    the 0-dim product is not (so every output keeps its values, shape and type), nor the
    where's, which the tracer records as a number. Before the graph's first run, so the calls
    then copy two scalars into tensors instead of five."""
    x = torch.rand(4, 3)
    copies = []
    for rewrite in (False, True):
        graph = torch.jit.trace(_scalars, (x,), check_trace=False)  # type: ignore[no-untyped-call]
        if rewrite:
            assert dimension_scalar_constants(graph.graph) == 3
        for got, want in zip(graph(x), _scalars(x), strict=True):
            assert got.shape == want.shape and got.dtype == want.dtype
            assert torch.equal(got, want)
        with torch.profiler.profile() as prof:
            graph(x)
        copies.append(sum(e.count for e in prof.key_averages() if e.key == "aten::_to_copy"))
    assert copies == [5, 2]


def test_full_slices_are_dropped_from_a_traced_graph() -> None:
    """``x[:, 1:]`` and ``x[:, 0:1]`` record a slice keeping all of dimension 0 each: both go;
    the two partial slices and the every-other-row ``x[::2]`` stay; the outputs are unchanged."""
    x = torch.rand(4, 3)
    graph = torch.jit.trace(_scalars, (x,), check_trace=False)  # type: ignore[no-untyped-call]
    kinds = [n.kind() for n in graph.graph.nodes()]
    assert kinds.count("aten::slice") == 5
    assert drop_full_slices(graph.graph) == 2
    assert [n.kind() for n in graph.graph.nodes()].count("aten::slice") == 3
    for got, want in zip(graph(x), _scalars(x), strict=True):
        assert torch.equal(got, want)


class _Affine(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:
            raise ValueError("float32 only")
        return x * 2 + 1


def test_a_traced_stage_keeps_one_graph_per_shape() -> None:
    stage = TracedStage(_Affine(), max_graphs=2, background=False)
    for n in (1, 2, 1, 3):
        assert torch.equal(stage(torch.full((n, 3), float(n))), torch.full((n, 3), 2.0 * n + 1))
    assert [key[0][0] for key in stage.graphs] == [(1, 3), (3, 3)], "least recently used out first"
    with pytest.raises(ValueError, match="float32 only"):  # the module's own error, as it is
        stage(torch.ones(2, 3, dtype=torch.float64))
    assert not stage.eager and len(stage.graphs) == 2, "an input error does not stop tracing"


def test_a_traced_stage_traces_in_the_background() -> None:
    """A new shape runs eagerly at once; its graph is ready after the trace."""
    stage = TracedStage(_Affine())
    assert torch.equal(stage(torch.ones(2, 3)), torch.full((2, 3), 3.0))
    stage.join()
    assert len(stage.graphs) == 1 and torch.equal(stage(torch.zeros(2, 3)), torch.ones(2, 3))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # that warning is the point here
def test_an_untraceable_stage_runs_eagerly(caplog: pytest.LogCaptureFixture) -> None:
    class Count(nn.Module):  # a Python number out: not traceable
        def forward(self, x: torch.Tensor) -> int:
            return int(x.sum())

    stage = TracedStage(Count(), background=False)
    with caplog.at_level(logging.WARNING, logger="rt_smile.runtime.backends.torch_backend"):
        assert stage(torch.ones(4)) == 4
    assert stage.eager and "running it eagerly" in caplog.text
    assert stage(torch.ones(5)) == 5 and not stage.graphs


def test_fp16_recurrent_stages_stay_close_to_fp32(model: CMMNet) -> None:
    """The FP16 casts of the CUDA path, run on the CPU: 12 steps fed back stay within 5e-3 (frames;
    the recurrent stages alone differ by about 3e-4)."""
    reference = TorchBackend(model, 256, torch.device("cpu"), cuda_graphs=False)
    half = TorchBackend(model, 256, torch.device("cpu"), cuda_graphs=False, half=True)
    assert half.info.precision_of("generator") == "fp16" and half.info.precision_of("translator") == "fp32"
    ref, out = _unroll(reference, model, 2, 3), _unroll(half, model, 2, 3)
    errors = [relative_error(o, r) for o, r in zip(out, ref, strict=True)]
    assert 0 < max(errors) <= 5e-3, errors


def test_k_above_the_models_modes_runs_groups(model: CMMNet) -> None:
    """K = 6 > the model's 4 modes: each session runs two groups; the first 4 modes equal K = 4's."""
    backend = TorchBackend(model, 256, torch.device("cpu"), cuda_graphs=False)
    six, four = _unroll(backend, model, 1, 6), _unroll(backend, model, 1, 4)
    assert six[-1].shape[0] == 6
    assert relative_error(six[-1][:4], four[-1]) < 1e-6


def test_the_device_narrows_the_choice() -> None:
    assert "onnxruntime" not in be.available_backends("cuda") and "hybrid" in be.available_backends("cpu")
    assert "tensorrt" not in be.available_backends("cpu")
    assert be.choose_auto("cpu")[0] == "hybrid"


def test_auto_explains_its_choice(caplog: pytest.LogCaptureFixture, model: CMMNet, cache: Path) -> None:
    name, reason = be.choose_auto()
    if not torch.cuda.is_available():
        assert name == "hybrid" and "no CUDA GPU" in reason
    with caplog.at_level(logging.INFO, logger="rt_smile.runtime.backends"):
        backend = make_backend("auto", model, BackendOptions(cache=cache))
    assert backend.info.name == name
    assert f"backend auto → {name}" in caplog.text


def test_unknown_and_uninstalled_backends_say_what_to_do(
    model: CMMNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(BackendError, match="unknown backend 'tensorflow'"):
        make_backend("tensorflow", model)
    if not be.has_package("tensorrt"):
        with pytest.raises(BackendError, match=r"needs the tensorrt package.*pip install 'rt_smile\[trt\]'"):
            make_backend("tensorrt", model)
    with pytest.raises(BackendError, match=r"CPU|no CUDA GPU"):
        make_backend("hybrid", model, BackendOptions(device="cuda"))
    present = be.has_package
    monkeypatch.setattr(be, "has_package", lambda name: name != "onnxruntime" and present(name))
    with pytest.raises(BackendError, match=r"needs the onnxruntime package.*rt_smile\[onnx\]"):
        make_backend("hybrid", model)
    assert "hybrid" not in be.available_backends()


def test_missing_and_corrupt_user_graphs(model: CMMNet, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"generator_step\.onnx not found; write it with: rt-smile export"):
        make_backend("onnxruntime", model, BackendOptions(onnx=tmp_path))
    graphs = graphs_in(tmp_path, 256)
    for path in graphs.paths().values():
        path.write_bytes(b"\x08\x07 truncated")
    with pytest.raises(BackendError, match=r"onnxruntime cannot load .*re-export it"):
        make_backend("onnxruntime", model, BackendOptions(onnx=tmp_path))


def test_the_cache_reuses_and_repairs_its_graphs(
    model: CMMNet, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = ensure_onnx(model, 256, cache)
    stamp = first.translator.stat().st_mtime_ns
    assert ensure_onnx(model, 256, cache) == first and first.translator.stat().st_mtime_ns == stamp
    first.vae_decode.write_bytes(first.vae_decode.read_bytes()[:100])  # corrupt
    with caplog.at_level(logging.WARNING, logger="rt_smile.runtime.onnx_cache"):
        again = ensure_onnx(model, 256, cache)
    assert again == first and "vae_decode.onnx does not match its recorded hash" in caplog.text
    backend = make_backend("onnxruntime", model, BackendOptions(cache=cache))
    z = torch.randn(3, model.config.vae.z_dim)
    assert relative_error(backend.vae_decode(z), model.vae.decode(z).detach()) < 1e-5
    other = CMMNet(replace(model.config))  # other weights: another key, another folder
    assert ensure_onnx(other, 256, cache).generator.parent != first.generator.parent


@pytest.mark.parametrize("name", [n for n in available_backends() if n != "torch"])
def test_the_engine_streams_the_same_frames_on_any_backend(
    model: CMMNet, cache: Path, name: str, sample_file: Path, detector: LandmarkDetector
) -> None:
    """A live session with a smile episode on ``name`` renders what it renders on torch."""
    face = prepare_photo(load_image(sample_file), 256, detector)
    engines = [
        SmileEngine(model, EngineConfig(episode_every=0.0, seed=7), backend)
        for backend in (None, make_backend(name, model, BackendOptions(cache=cache)))
    ]
    sessions = [e.open_session(face, "posed", 2) for e in engines]
    for s in sessions:
        s.trigger()
    for _ in range(8):
        ref, out = (e.step()[s.id] for e, s in zip(engines, sessions, strict=True))
    assert ref.shape == out.shape == (2, 256, 256, 3)
    assert np.abs(ref.astype(int) - out.astype(int)).max() <= 2
    assert sessions[1].episode is not None and sessions[1].episode.frame == 8
