"""Print the Markdown tables of the README, docs/translator.md, docs/evaluation.md and docs/streaming.md from
benchmarks/results/*.json.

python benchmarks/tables.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def translator_table(data: dict[str, Any]) -> str:
    rows = ["| crop | batch | run as | p50 per call | p99 per call | frames/s |", "|---|---|---|---|---|---|"]
    for r in data["results"]:
        times = f"{r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms"
        rows.append(f"| {r['size']}² | {r['batch']} | {r.get('mode', 'eager')} | {times} | {r['fps']:.0f} |")
    return "\n".join(rows)


def closed_loop_table(data: dict[str, Any]) -> str:
    names = ["neutral", "closed smile", "open smile", "blink"]
    rows = [
        "| photo | size | neutral | "
        + " | ".join(f"{n}: error / moved-point ratio" for n in names[1:])
        + " | AU12 0.9: lip corners move | AU45 1: lid gaps (horizontal part; vertical part) "
        "| AU25 0.7 + AU26 0.4: lips open by |",
        "|---" * (len(names) + 5) + "|",
    ]
    for e in data["results"]:
        err = {x["expression"]: x["mean_error_iod"] for x in e["expressions"]}
        moved = {x["expression"]: x["moved_error_ratio"] for x in e["expressions"]}
        c = e["checks"]
        lids, flat = c["eyelid_gap_ratio_AU45_1"], c["eyelid_gap_horizontal_part_AU45_1"]
        tall = c["eyelid_gap_vertical_part_AU45_1"]
        rows.append(
            f"| {e['photo']} | {e['size']} | {err['neutral']:.3f} | "
            + " | ".join(f"{err[n]:.3f} / {moved[n]:.2f}" for n in names[1:])
            + f" | {c['lip_corner_shift_iod_AU12_0.9']:.3f}"
            f" | {lids[0]:.2f} / {lids[1]:.2f} ({flat[0]:.2f} / {flat[1]:.2f}; {tall[0]:.2f} / {tall[1]:.2f})"
            f" | {c['inner_lip_opening_iod_AU25_0.7_AU26_0.4']:.3f} |"
        )
    return "\n".join(rows)


def stream_table(data: dict[str, Any]) -> str:
    rows = [
        "| peers | delivered fps (worst peer) | frame interval p50 / p99 | frame age p50 / p99 "
        "| server CPU | server RSS |",
        "|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        rows.append(
            f"| {r['peers']} | {r['delivered_fps_min']:.1f} | {r['frame_interval_ms_p50']:.1f} / "
            f"{r['frame_interval_ms_p99']:.1f} ms | "
            f"{r['frame_age_ms_p50']:.0f} / {r['frame_age_ms_p99']:.0f} ms "
            f"| {r['server_cpu_cores']:.2f} cores | {r['server_rss_mb_peak']:.0f} MB |"
        )
    return "\n".join(rows)


def _floor(r: dict[str, Any]) -> str:
    """Noise floor, with the range of its independent draws where the result has them."""
    lo_hi = r.get("frechet_noise_floor_range")
    rng = f" ({lo_hi[0]:.1f}–{lo_hi[1]:.1f})" if lo_hi else ""
    return f"{r['frechet_noise_floor']:.1f}{rng}"


def _novelty(r: dict[str, Any]) -> str:
    """Novelty, and with the data's detection jitter where the result has it (generated
    sequences; the data's own carry it already)."""
    seen = r.get("novelty_observed_iod")
    shown = seen is not None and seen != r["novelty_iod"]
    return f"{r['novelty_iod']:.4f}" + (f" ({seen:.4f})" if shown else "")


def evaluation_table(data: dict[str, Any]) -> str:
    """The held-out table of docs/evaluation.md from ``rt-smile evaluate --json``."""
    rows = [
        "| method | class accuracy | Fréchet distance | novelty (IOD, median; with the data's jitter) "
        "| neutral start (IOD) | jerk ratio | motion (IOD) "
        "| peak lip-corner speed spontaneous / posed (IOD/s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in data["methods"]:
        rows.append(
            f"| {m['method']} | {m['class_accuracy']:.3f} | {m['frechet_distance']:.1f} | {_novelty(m)} "
            f"| {m['neutral_start_iod']:.4f} | {m['jerk_ratio']:.2f} | {m['motion_iod']:.4f} "
            f"| {m['peak_lip_corner_speed_spontaneous_iod_per_s']:.2f} / "
            f"{m['peak_lip_corner_speed_posed_iod_per_s']:.2f} |"
        )
    return "\n".join(rows)


def photos_table(data: dict[str, Any]) -> str:
    rows = [
        "| photo | class | class accuracy per mode | FD / noise floor (range) | FD K = 1 "
        "| modes ÷ reference pairs | modes ÷ own motion | novelty (with the data's jitter) / reference "
        "| peak lip speed / reference | video round trip |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in data["photos"]:
        trip = p["video_round_trip"]["mean_error_iod"]
        for name, r in p["classes"].items():
            acc = " ".join(f"{a:.2f}" for a in r["class_accuracy_per_mode"])
            rows.append(
                f"| {p['photo']} | {name} | {acc} "
                f"| {r['frechet_distance']:.1f} / {_floor(r)} "
                f"| {r['frechet_distance_k1']:.1f} | {r['ratio_to_reference_pairs']:.2f} "
                f"| {r['ratio_to_own_motion']:.2f} "
                f"| {_novelty(r)} / {r['reference_novelty_iod']:.4f} "
                f"| {r['peak_lip_corner_speed_iod_per_s']:.2f} / "
                f"{r['reference_peak_lip_corner_speed_iod_per_s']:.2f} | {trip:.4f} |"
            )
    return "\n".join(rows)


def bench_table(data: dict[str, Any], size: int = 256, modes: int = 4, batch: int = 1) -> str:
    """Per-stage p50 of every backend in one case of ``rt-smile bench``, plus the recurrent sum."""
    rows = [r for r in data["results"] if (r["size"], r["modes"], r["batch"]) == (size, modes, batch)]
    stages = ("generator", "vae_decode", "translator", "step")
    out = [
        "| backend | device | generator | vae_decode | generator + vae_decode | translator | step p50 "
        "| step p99 | frames/s | step parity |",
        "|---" * 10 + "|",
    ]
    for name in dict.fromkeys((r["backend"], r["device"]) for r in rows):
        p50 = {r["stage"]: r for r in rows if (r["backend"], r["device"]) == name}
        if set(stages) - set(p50):
            continue
        step = p50["step"]
        recurrent = p50["generator"]["p50_ms"] + p50["vae_decode"]["p50_ms"]
        gen, vae = p50["generator"]["p50_ms"], p50["vae_decode"]["p50_ms"]
        out.append(
            f"| {name[0]} | {name[1]} | {gen:.3f} ms | {vae:.3f} ms "
            f"| {recurrent:.3f} ms | {p50['translator']['p50_ms']:.2f} ms | **{step['p50_ms']:.2f} ms** "
            f"| {step['p99_ms']:.2f} ms | {step['fps']:.0f} | {step['parity']:.1e} |"
        )
    return "\n".join(out)


def bench_sweep_table(data: dict[str, Any]) -> str:
    """Whole-step p50 of every backend over the sweep."""
    steps = [r for r in data["results"] if r["stage"] == "step"]
    names = list(dict.fromkeys(r["backend"] for r in steps))
    out = ["| size | K | batch | " + " | ".join(names) + " |", "|---" * (3 + len(names)) + "|"]
    for case in dict.fromkeys((r["size"], r["modes"], r["batch"]) for r in steps):
        cell = {r["backend"]: r for r in steps if (r["size"], r["modes"], r["batch"]) == case}
        vals = [f"{cell[n]['p50_ms']:.1f} ms ({cell[n]['fps']:.0f} fps)" if n in cell else "" for n in names]
        out.append(f"| {case[0]}² | {case[1]} | {case[2]} | " + " | ".join(vals) + " |")
    return "\n".join(out)


def main() -> None:
    translator = json.loads((RESULTS / "translator_cpu.json").read_text())
    print(f"Translator, {translator['machine']['cpu']}, {translator['machine']['torch_threads']} threads:\n")
    print(translator_table(translator))
    print("\nClosed loop:\n")
    print(closed_loop_table(json.loads((RESULTS / "closed_loop.json").read_text())))
    print("\nHeld-out SynthSmile:\n")
    print(evaluation_table(json.loads((RESULTS / "evaluation_synthsmile.json").read_text())))
    print("\nPhotos:\n")
    print(photos_table(json.loads((RESULTS / "photos.json").read_text())))
    stream = json.loads((RESULTS / "stream_cpu.json").read_text())
    print(f"\nStreaming, {stream['machine']['cpu']}, {stream['machine']['cores']} cores:\n")
    print(stream_table(stream))
    for name in sorted(RESULTS.glob("bench_*.json")):
        bench = json.loads(name.read_text())
        m = bench["machine"]
        print(f"\n{name.name}: {m['gpu'] or m['cpu']}, {m['cores']} cores, K = 4 at 256², batch 1:\n")
        print(bench_table(bench))
        print("\nWhole step over the sweep:\n")
        print(bench_sweep_table(bench))


if __name__ == "__main__":
    main()
