"""SmileVideoTrack on its own: wall-clock pts, latest-frame-wins delivery, counters, stop."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
from aiortc.mediastreams import MediaStreamError

from rt_smile import SmileVideoTrack
from rt_smile.io.images import load_image
from rt_smile.stream.track import CLOCK_RATE


def test_track_paces_to_the_wall_clock_and_never_builds_a_backlog(sample_file) -> None:
    track = SmileVideoTrack.from_photo(load_image(sample_file), smile_class="posed", modes=2)

    async def run() -> tuple[list[int], list[float], list[tuple[int, ...]], float]:
        pts: list[int] = []
        ages: list[float] = []
        shapes: list[tuple[int, ...]] = []
        for _ in range(30):  # a consumer at the frame rate
            frame = await track.recv()
            pts.append(int(frame.pts or 0))
            shapes.append(frame.to_ndarray(format="rgb24").shape)
        for _ in range(5):  # a slow consumer: 4 fps
            await asyncio.sleep(0.25)
            await track.recv()
            ages.append(track.stats.frame_age_ms)
        started = track.runner.frames
        await asyncio.sleep(1.0)
        return pts, ages, shapes, (track.runner.frames - started) / 1.0

    pts, ages, shapes, inference_fps = asyncio.run(run())
    assert shapes[0] == (256, 256, 3)
    seconds = np.diff(pts) / CLOCK_RATE
    assert np.all(seconds > 0) and abs(float(np.median(seconds)) - 1 / 30) < 0.01
    assert max(ages) < 100.0, f"a slow consumer still gets fresh frames ({ages} ms old)"
    assert inference_fps > 20
    assert track.stats.delivered == 35
    track.stop()
    assert track.readyState == "ended"
    time.sleep(0.3)
    assert not track.runner.running, "stop() ends the engine thread"
    assert track.runner._thread is None and not any(
        t.name == "rt-smile-engine" and t.is_alive() for t in threading.enumerate()
    )

    async def after_stop() -> None:
        await track.recv()

    try:
        asyncio.run(after_stop())
    except MediaStreamError:
        pass
    else:
        raise AssertionError("recv() after stop() must raise MediaStreamError")
