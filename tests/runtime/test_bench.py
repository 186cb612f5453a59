"""``rt-smile bench`` and ``rt-smile build`` from the command line: the sweep, the JSON schema,
the plot, the table, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from rt_smile.cli import main
from rt_smile.runtime.backends import has_package

KEYS = {
    "backend", "device", "precision", "graphs", "threads", "stage", "modes", "size", "batch",
    "p50_ms", "p99_ms", "fps", "parity",
}  # fmt: skip


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench_cache")


def test_quick_bench_writes_json_plot_and_table(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    argv = ["bench", "--quick", "--backend", "torch,hybrid", "--modes", "2", "--batch", "1,2"]
    assert main([*argv, "--size", "256", "--threads", "2", "--json", str(out), "--cache", str(cache)]) == 0
    data = json.loads(out.read_text())
    machine = data["machine"]
    assert machine["cores"] >= 1 and machine["cpu"] and machine["libraries"]["torch"]
    assert machine["torch_cpu_capability"] in {"DEFAULT", "AVX2", "AVX512", "ZVECTOR", "SVE256", "VSX"}
    rows = data["results"]
    assert len(rows) == 2 * 2 * 4  # backends × batches × stages
    assert all(set(r) >= KEYS for r in rows)
    assert {r["stage"] for r in rows} == {"generator", "vae_decode", "translator", "step"}
    assert {(r["backend"], r["batch"]) for r in rows} == {(b, n) for b in ("torch", "hybrid") for n in (1, 2)}
    for r in rows:
        assert r["modes"] == 2 and r["size"] == 256 and r["threads"] == 2
        assert 0 < r["p50_ms"] <= r["p99_ms"]
        assert r["fps"] == pytest.approx(r["batch"] * r["modes"] * 1000 / r["p50_ms"], rel=1e-3)
        assert r["parity"] <= 1e-4
    hybrid = {r["stage"]: r["graphs"] for r in rows if r["backend"] == "hybrid"}
    assert hybrid["generator"] == "onnxruntime" and hybrid["translator"] == "torchscript"
    p50 = {(r["backend"], r["batch"], r["stage"]): r["p50_ms"] for r in rows}
    for backend, batch, stage in p50:
        if stage == "step":  # the step includes the translator's work
            assert p50[backend, batch, "step"] >= 0.5 * p50[backend, batch, "translator"]
    with Image.open(out.with_suffix(".png")) as plot:
        assert plot.size[0] > 500
    table = capsys.readouterr().out
    assert "p50_ms" in table and table.count("hybrid") >= 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "300"], "sizes must be 256 or 512"),
        (["--modes", "0"], "positive integer"),
        (["--batch", "2,x"], "positive integer"),
        (["--backend", "cuda-magic"], "unknown backend"),
    ],
)
def test_bad_bench_arguments_are_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "--quick", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


@pytest.mark.skipif(has_package("tensorrt"), reason="TensorRT is installed here")
@pytest.mark.parametrize("command", [["bench", "--quick", "--backend", "tensorrt"], ["build"]])
def test_tensorrt_without_tensorrt_is_one_actionable_line(
    command: list[str], capsys: pytest.CaptureFixture[str], cache: Path
) -> None:
    assert main([*command, "--cache", str(cache)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'rt_smile[trt]'" in err


@pytest.mark.skipif(has_package("tensorrt"), reason="TensorRT is installed here")
def test_serving_on_a_missing_backend_stops_before_binding(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--backend", "tensorrt", "--port", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'rt_smile[trt]'" in err
