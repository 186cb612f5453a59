"""``SmileVideoTrack``: an aiortc ``MediaStreamTrack`` showing one mode of a live face.

Inference runs in the ``EngineRunner``'s worker thread; ``recv()`` only paces to the frame rate
(handing a frame over as soon as the engine publishes it, within half a period of its turn),
takes the newest frame from the session's latest-frame-wins slot and wraps it, so a slow consumer
gets fresh frames rather than a growing backlog. Timestamps come from the wall clock (90 kHz).

For a call bot::

    from rt_smile import SmileVideoTrack
    track = SmileVideoTrack.from_photo("face.jpg", smile_class="posed")
    pc.addTrack(track)   # any aiortc RTCPeerConnection
    ...
    track.stop()         # also stops the engine the track owns
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from rt_smile.config import EngineConfig
from rt_smile.runtime.engine import FaceSession, SmileEngine, prepare_photo
from rt_smile.runtime.runner import EngineRunner, Frame

if TYPE_CHECKING:
    from av import VideoFrame

CLOCK_RATE = 90_000
TIME_BASE = fractions.Fraction(1, CLOCK_RATE)
#: How often ``recv`` looks for a newly published frame while waiting for its turn.
POLL_SECONDS = 0.002
#: How long ``recv`` waits for the engine's first frame before giving up.
FIRST_FRAME_TIMEOUT = 20.0


@dataclass
class TrackStats:
    """Counters of one track."""

    delivered: int = 0
    delivered_fps: float = 0.0
    #: Milliseconds between a frame's rendering and its hand-over to the encoder (latest).
    frame_age_ms: float = 0.0


#: How many (pts, made_at, handed_at) entries a track remembers (two minutes at 30 fps), for latency tools.
HISTORY = 3600


class SmileVideoTrack(MediaStreamTrack):  # type: ignore[misc]
    """Video track of mode ``(featured + track_index) mod K`` of ``session``."""

    kind = "video"

    def __init__(
        self, runner: EngineRunner, session: FaceSession, track_index: int = 0, owns_runner: bool = False
    ) -> None:
        super().__init__()
        self.runner, self.session, self.track_index = runner, session, track_index
        self.stats = TrackStats()
        self._slot = runner.slot(session.id)
        self._owns = owns_runner
        self._start: float | None = None
        self._window = (0.0, 0)
        self._sent_index = -1
        self._grid, self._slots_passed = 0.0, 0
        #: (pts, time.monotonic() when the frame was rendered, when it was handed to the encoder)
        #: of the latest delivered frames: lets a receiver on this machine measure latency per frame.
        self.history: deque[tuple[int, float, float]] = deque(maxlen=HISTORY)
        runner.start()

    @classmethod
    def from_photo(
        cls,
        photo: Any,
        smile_class: str = "spontaneous",
        modes: int = 1,
        size: int = 256,
        weights: str | None = None,
        episode_every: float = 6.0,
    ) -> SmileVideoTrack:
        """A self-contained track (own engine) of a photo: a path, bytes or an RGB array."""
        import numpy as np

        from rt_smile.io.images import load_image

        rgb = photo if isinstance(photo, np.ndarray) else load_image(photo)
        engine = SmileEngine.load(
            weights, EngineConfig(size=size, episode_every=episode_every, max_sessions=1)
        )
        session = engine.open_session(prepare_photo(rgb, size), smile_class, modes)
        return cls(EngineRunner(engine), session, owns_runner=True)

    async def _next_frame(self) -> Frame:
        waited = 0.0
        while (frame := self._slot.latest()) is None:
            if waited > FIRST_FRAME_TIMEOUT or self.readyState != "live":
                raise MediaStreamError("the engine produced no frame")
            await asyncio.sleep(0.01)
            waited += 0.01
        return frame

    async def _pace(self) -> float:
        """Wait for this frame's turn on the track's clock (``fps`` from its first frame). Within
        half a period either side of it, hand over as soon as the engine publishes a frame not yet
        sent, so frames leave fresh instead of waiting for a clock that is out of phase with the
        engine; past that window, the newest frame goes anyway (the rate never drops)."""
        period = 1.0 / self.runner.engine.config.fps
        now = time.monotonic()
        if self._start is None:
            self._start = self._grid = now
            return now
        self._slots_passed += 1
        due = self._grid + self._slots_passed * period
        if now > due + period:  # the consumer fell behind: restart the clock, no catch-up burst
            self._grid, self._slots_passed, due = now, 0, now
        if due - 0.5 * period > now:
            await asyncio.sleep(due - 0.5 * period - now)
        while not self._fresh() and time.monotonic() < due + 0.5 * period:
            await asyncio.sleep(POLL_SECONDS)
        return time.monotonic()

    def _fresh(self) -> bool:
        frame = self._slot.latest()
        return frame is not None and frame.index > self._sent_index

    def _count_delivery(self, now: float, frame: Frame) -> None:
        self.stats.delivered += 1
        self.stats.frame_age_ms = (now - frame.made_at) * 1000.0
        since, n = self._window
        if now - since >= 1.0:
            self.stats.delivered_fps = n / (now - since) if since else 0.0
            self._window = (now, 1)
        else:
            self._window = (since, n + 1)

    async def recv(self) -> VideoFrame:
        from av import VideoFrame

        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._next_frame()
        now = await self._pace()
        frame = self._slot.latest() or frame
        image = frame.images[self.session.mode_for_track(self.track_index) % len(frame.images)]
        out = VideoFrame.from_ndarray(image, format="rgb24")
        assert self._start is not None
        out.pts = round((now - self._start) * CLOCK_RATE)
        out.time_base = TIME_BASE
        self._sent_index = frame.index
        self.history.append((out.pts, frame.made_at, now))
        self._count_delivery(now, frame)
        return out

    def stop(self) -> None:
        super().stop()
        if self._owns:
            self.runner.release(self.session.id)
            self.runner.stop()
