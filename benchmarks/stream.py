"""Live streaming to N concurrent aiortc receivers over loopback (one mode each).

    python benchmarks/stream.py [--peers 1 2 4 8] [--seconds 60] [--size 256]

The server (``SmileServer`` with the shipped weights, the engine's default smile rhythm) runs in
this process; the N receiving peers run in a child process (``--receive``), as a remote viewer
would, and decode every frame (VP8). Per N: delivered fps per peer (frames decoded per second from
its first frame on), frame interval p50/p99 at the receiver, frame age p50/p99 (from the moment
the engine rendered the frame to the moment the receiver decoded it: both processes read the same
monotonic clock, and each received frame is matched to its render time through its timestamp),
the server process's CPU use (cores) and its RSS. Also the server's own share of the age (render
to hand-over to the encoder). aiortc's receiver completes a frame only when the first packet of the
next one arrives, so every age measured with it includes about one frame period (33 ms) of wait
at the receiver that a browser, which uses the RTP marker bit, does not have.
Writes benchmarks/results/stream_cpu.json and stream_cpu.png. Target on a 2-core machine:
4 peers at >= 29 fps with frame age p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "stream_cpu.json"
#: 90 kHz ticks a received pts may differ from the sent one (codec rounding); frames are ~3000 apart.
TOLERANCE = 45
#: Received frames used to identify a receiver's track and alignment.
PROBE = 90


# --- receiving side (child process) -----------------------------------------------------------


async def _receive_one(url: str, size: int, seconds: float) -> list[tuple[int, float]]:
    """(pts relative to the first frame, monotonic decode time) of every decoded frame."""
    import aiohttp
    from aiortc import RTCPeerConnection, RTCSessionDescription

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    @pc.on("track")
    def on_track(track: Any) -> None:
        if not got.done():
            got.set_result(track)

    await pc.setLocalDescription(await pc.createOffer())
    body = {"sdp": pc.localDescription.sdp, "type": "offer", "face_id": "sample", "modes": 1}
    async with aiohttp.ClientSession() as http, http.post(url + "/api/offer", json=body) as r:
        answer = await r.json()
    await pc.setRemoteDescription(RTCSessionDescription(**answer))
    track = await asyncio.wait_for(got, 20)
    frames: list[tuple[int, float]] = []
    try:
        first = await track.recv()
        start = time.monotonic()
        frames.append((int(first.pts), start))
        if (first.width, first.height) != (size, size):
            raise SystemExit(f"received {first.width}x{first.height}, expected {size}x{size}")
        while time.monotonic() - start < seconds:
            frame = await track.recv()
            frames.append((int(frame.pts), time.monotonic()))
    finally:
        await pc.close()
    return frames


async def _receive(url: str, peers: int, size: int, seconds: float) -> None:
    results = []
    tasks = []
    for _ in range(peers):  # connect one by one, as viewers arrive, then receive concurrently
        tasks.append(asyncio.create_task(_receive_one(url, size, seconds)))
        await asyncio.sleep(0.2)
    results = await asyncio.gather(*tasks)
    print(json.dumps(results))


# --- serving side (this process) --------------------------------------------------------------


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


class _Sent:
    """One server track's (pts, render time) history, sorted by pts."""

    def __init__(self, history: list[tuple[int, float, float]]) -> None:
        self.pts = np.array([p for p, _, _ in history], dtype=np.int64)
        self.made = np.array([t for _, t, _ in history])
        #: Render → hand-over to the encoder (ms): the server's own share of the frame age.
        self.handover_ms = np.array([(h - t) * 1000.0 for _, t, h in history])

    def nearest(self, pts: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Index of the sent frame nearest each pts, and the distance in ticks."""
        i = np.clip(np.searchsorted(self.pts, pts), 1, len(self.pts) - 1)
        i = np.where(np.abs(self.pts[i - 1] - pts) <= np.abs(self.pts[i] - pts), i - 1, i)
        return i, np.abs(self.pts[i] - pts)

    def misfit(self, origin: int, got: NDArray[np.int64]) -> float:
        return float(self.nearest(origin + got[:PROBE])[1].mean())


def _match(tracks: list[_Sent], received: list[tuple[int, float]]) -> list[float]:
    """Render-to-decode ages (ms) of one receiver's frames. Its pts count from its first frame
    and may differ from the sent ones by a tick of codec rounding; frame intervals jitter by
    tens of ticks, so the (track, first sent frame) under which the receiver's first PROBE pts
    land on sent pts with the least error identifies both the track and the alignment."""
    got = np.array([p for p, _ in received], dtype=np.int64)
    fits = [(t.misfit(int(o), got), k, int(o)) for k, t in enumerate(tracks) for o in t.pts[:PROBE]]
    _, k, origin = min(fits)
    index, err = tracks[k].nearest(origin + got)
    ok = err <= TOLERANCE
    decoded = np.array([t for _, t in received])
    return ((decoded[ok] - tracks[k].made[index[ok]]) * 1000.0).tolist()


def _summarise(peers: int, received: list[list[tuple[int, float]]], tracks: list[Any]) -> dict[str, Any]:
    sent = [_Sent(list(t.history)) for t in tracks]
    fps: list[float] = []
    intervals: list[float] = []
    ages: list[float] = []
    handover = np.concatenate([t.handover_ms for t in sent])
    for frames in received:
        times = np.array([t for _, t in frames])
        fps.append(float((len(times) - 1) / (times[-1] - times[0])))
        intervals.extend((np.diff(times) * 1000.0).tolist())
        ages.extend(_match(sent, frames))
    return {
        "peers": peers,
        "delivered_fps_per_peer": [round(f, 2) for f in fps],
        "delivered_fps_min": float(np.min(fps)),
        "delivered_fps_mean": float(np.mean(fps)),
        "frame_interval_ms_p50": float(np.percentile(intervals, 50)),
        "frame_interval_ms_p99": float(np.percentile(intervals, 99)),
        "frame_age_ms_p50": float(np.percentile(ages, 50)),
        "frame_age_ms_p99": float(np.percentile(ages, 99)),
        "handover_age_ms_p50": float(np.percentile(handover, 50)),
        "handover_age_ms_p99": float(np.percentile(handover, 99)),
        "frames_received": sum(len(f) for f in received),
        "frames_matched": len(ages),
    }


async def _serve_and_measure(server: Any, url: str, peers: int, size: int, seconds: float) -> dict[str, Any]:
    cpu0, wall0, rss_peak = time.process_time(), time.monotonic(), _rss_mb()
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--receive", url, "--peers", str(peers),
        "--size", str(size), "--seconds", str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    reader = asyncio.create_task(child.communicate())
    tracks: dict[int, Any] = {}
    while not reader.done():
        rss_peak = max(rss_peak, _rss_mb())
        for peer in server.peers.values():
            for track in peer.tracks:
                tracks.setdefault(id(track), track)  # keep closed peers' tracks for their history
        await asyncio.sleep(0.25)
    out, _ = reader.result()
    if child.returncode != 0:
        raise RuntimeError(f"receivers failed (exit {child.returncode})")
    cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    result = _summarise(peers, json.loads(out), list(tracks.values()))
    result.update(server_cpu_cores=round(cpu, 3), server_rss_mb_peak=round(rss_peak, 1))
    result.update(engine_step_ms=round(server.runner.step_ms, 2))
    while server.peers:  # let the server notice the closed peers before the next round
        await asyncio.sleep(0.2)
    return result


async def run(peer_counts: list[int], size: int, seconds: float) -> list[dict[str, Any]]:
    from aiohttp import web

    from rt_smile.config import EngineConfig, ServerConfig
    from rt_smile.runtime.engine import SmileEngine
    from rt_smile.stream.server import SmileServer

    engine = SmileEngine.load(None, EngineConfig(size=size, max_sessions=max(peer_counts)))
    server = SmileServer(engine, ServerConfig())
    runner = web.AppRunner(server.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    results = []
    try:
        for peers in peer_counts:
            results.append(await _serve_and_measure(server, url, peers, size, seconds))
            print(json.dumps(results[-1]), flush=True)
    finally:
        await runner.cleanup()
    return results


def plot(results: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["peers"] for r in results]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    a.plot(n, [r["delivered_fps_mean"] for r in results], "o-", label="mean over peers")
    a.plot(n, [r["delivered_fps_min"] for r in results], "s--", label="worst peer")
    a.axhline(29, color="k", lw=0.8, ls=":", label="target 29 fps")
    a.set(xlabel="concurrent peers", ylabel="delivered fps", xticks=n, ylim=(0, 32))
    a.legend(fontsize=8, loc="lower left")
    b.plot(n, [r["frame_age_ms_p50"] for r in results], "o-", label="frame age p50")
    b.plot(n, [r["frame_age_ms_p99"] for r in results], "s--", label="frame age p99")
    b.plot(n, [r["frame_interval_ms_p99"] for r in results], "^:", label="frame interval p99")
    b.axhline(100, color="k", lw=0.8, ls=":", label="target 100 ms")
    b.set(xlabel="concurrent peers", ylabel="ms", xticks=n)
    b.legend(fontsize=8, loc="upper left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--receive", metavar="URL", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.receive:
        asyncio.run(_receive(args.receive, args.peers[0], args.size, args.seconds))
        return
    from _machine import machine_info

    results = asyncio.run(run(args.peers, args.size, args.seconds))
    machine = machine_info()
    doc = {
        "benchmark": "stream",
        "machine": machine,
        "size": args.size,
        "fps": 30,
        "seconds_per_run": args.seconds,
        "codec": "VP8 (aiortc default), loopback",
        "receiver": "aiortc in a child process; its jitter buffer holds each frame until the next arrives",
        "results": results,
    }
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    plot(results, OUT.with_suffix(".png"), f"{args.size}² at 30 fps, VP8 over loopback — {machine['cpu']}")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
