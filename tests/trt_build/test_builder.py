"""The TensorRT engine cache: keys, rebuilds on any mismatch or corruption, profiles, and the
runner's profile check. The builder calls go to FakeTensorRT (named as such: a stand-in for the
tensorrt module, which cannot be installed here); the ONNX graphs are real exports."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from rt_smile.io.checkpoint import load_cmmnet
from tests.trt_build.fake_tensorrt import MAGIC, FakeTensorRT
from trt_build.builder import EngineCache, EngineError, Profile, profile_shapes
from trt_build.export import export_graph, generator_spec, vae_spec
from trt_build.runner import check_shape


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    model = load_cmmnet()
    folder = tmp_path_factory.mktemp("onnx")
    return {
        "generator_step": export_graph(generator_spec(model), folder / "generator_step.onnx"),
        "vae_decode": export_graph(vae_spec(model), folder / "vae_decode.onnx"),
    }


def _cache(
    folder: Path, version: str = "10.15.1", capability: str = "sm_90"
) -> tuple[EngineCache, FakeTensorRT]:
    trt = FakeTensorRT(version)
    return EngineCache(folder, trt=trt, compute_capability=capability), trt


def test_builds_once_then_loads_from_the_cache(onnx_files: dict[str, Path], tmp_path: Path) -> None:
    cache, trt = _cache(tmp_path)
    data, path, engine = cache.load("vae_decode", onnx_files["vae_decode"])
    assert data.startswith(MAGIC) and path.is_file() and len(trt.record.builds) == 1
    assert engine is None, "a fresh build is deserialized once, by the runner"
    assert trt.record.builds[0]["precision"] == "fp16"
    again = cache.load("vae_decode", onnx_files["vae_decode"])
    assert again.data == data and len(trt.record.builds) == 1
    assert again.engine is not None, "the cached file was deserialized to check it: kept for the runner"
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["key"]["tensorrt"] == "10.15.1" and meta["key"]["compute_capability"] == "sm_90"
    assert cache.timing_cache.is_file(), "the timing cache is kept for the next build"


@pytest.mark.parametrize(
    ("version", "capability", "why"),
    [
        ("10.3.0", "sm_90", "built for TensorRT 10.3.0"),
        ("10.15.1", "sm_86", "built for GPU compute capability sm_86"),
    ],
)
def test_an_engine_from_another_tensorrt_or_gpu_is_rebuilt(
    onnx_files: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture,
    version: str, capability: str, why: str,
) -> None:  # fmt: skip
    other, _ = _cache(tmp_path, version, capability)
    path = other.load("vae_decode", onnx_files["vae_decode"]).path
    here, trt = _cache(tmp_path)
    with caplog.at_level(logging.WARNING, logger="trt_build.builder"):
        data, again, _ = here.load("vae_decode", onnx_files["vae_decode"])
    assert again == path and len(trt.record.builds) == 1, "same file name, rebuilt in place"
    assert any("rebuilding" in r.message and why in r.message for r in caplog.records), caplog.text
    assert json.loads(path.with_suffix(".json").read_text())["key"]["tensorrt"] == "10.15.1"
    assert data.startswith(MAGIC)


def test_a_corrupt_engine_is_rebuilt(
    onnx_files: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache, trt = _cache(tmp_path)
    data, path, _ = cache.load("vae_decode", onnx_files["vae_decode"])
    path.write_bytes(data[: len(data) // 2])  # truncated
    with caplog.at_level(logging.WARNING, logger="trt_build.builder"):
        again = cache.load("vae_decode", onnx_files["vae_decode"]).data
    assert again == data and len(trt.record.builds) == 2
    assert "corrupt" in caplog.text


def test_an_engine_tensorrt_refuses_is_rebuilt(
    onnx_files: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache, trt = _cache(tmp_path)
    path = cache.load("vae_decode", onnx_files["vae_decode"]).path
    garbage = b"not an engine at all"
    path.write_bytes(garbage)
    meta = json.loads(path.with_suffix(".json").read_text())
    import hashlib

    meta["engine_sha256"] = hashlib.sha256(garbage).hexdigest()  # hash matches: only TensorRT can tell
    path.with_suffix(".json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="trt_build.builder"):
        data = cache.load("vae_decode", onnx_files["vae_decode"]).data
    assert data.startswith(MAGIC) and len(trt.record.builds) == 2
    assert "could not deserialize" in caplog.text


def test_the_key_covers_precision_profile_and_onnx(onnx_files: dict[str, Path], tmp_path: Path) -> None:
    cache, trt = _cache(tmp_path)
    fp16 = cache.load("vae_decode", onnx_files["vae_decode"], "fp16").path
    fp32 = cache.load("vae_decode", onnx_files["vae_decode"], "fp32").path
    big = cache.load("vae_decode", onnx_files["vae_decode"], "fp16", Profile(1, 4, 128)).path
    gen = cache.load("generator_step", onnx_files["generator_step"], "fp16").path
    assert len({fp16, fp32, big, gen}) == 4 and len(trt.record.builds) == 4
    assert [b["precision"] for b in trt.record.builds] == ["fp16", "fp32", "fp16", "fp16"]


def test_profiles_follow_the_graphs_batch_axes(onnx_files: dict[str, Path], tmp_path: Path) -> None:
    cache, trt = _cache(tmp_path)
    cache.load("generator_step", onnx_files["generator_step"], "fp16", Profile(1, 2, 16), modes=4)
    shapes = trt.record.builds[0]["profiles"][0].shapes
    z = shapes["z"]
    assert [s[0] for s in z] == [1, 2, 16]
    mm_h = shapes["mm_h"]  # (layers, batch × K, hidden)
    assert [s[1] for s in mm_h] == [4, 8, 64] and mm_h[0][0] == mm_h[2][0] and mm_h[0][2] == mm_h[2][2]
    cache.load("vae_decode", onnx_files["vae_decode"], "fp16", Profile(1, 2, 16), modes=4)
    z_rows = trt.record.builds[1]["profiles"][0].shapes["z"]  # one row per generator row and mode
    assert [s[0] for s in z_rows] == [4, 8, 64]


def test_photos_axis_spans_one_to_the_batch() -> None:
    low, opt, high = profile_shapes(["photos", 3, 256, 256], Profile(1, 4, 32), modes=4)
    assert (low[0], opt[0], high[0]) == (1, 1, 32)
    with pytest.raises(EngineError, match="unknown dynamic axis"):
        profile_shapes(["sessions", 3], Profile(), modes=4)


def test_missing_or_unparsable_onnx_is_a_clear_error(tmp_path: Path) -> None:
    cache, _ = _cache(tmp_path)
    with pytest.raises(EngineError, match="not found; export it"):
        cache.load("vae_decode", tmp_path / "absent.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not onnx")
    with pytest.raises(EngineError, match="parser rejected"):
        cache.load("bad", bad)


def test_a_batch_over_the_profile_maximum_is_refused_before_tensorrt() -> None:
    bounds = ((1, 32), (4, 32), (16, 32))
    check_shape("z", (16, 32), bounds)
    with pytest.raises(EngineError, match=r"batch 17 .* profile 1\.\.16; rebuild with a larger --max-batch"):
        check_shape("z", (17, 32), bounds)
    with pytest.raises(EngineError, match="size 33"):
        check_shape("z", (2, 33), bounds)
    with pytest.raises(EngineError, match="3 dimensions"):
        check_shape("z", (2, 32, 1), bounds)
