"""Runs a ``SmileEngine`` off the event loop: a worker thread steps it at the frame rate and
publishes each session's frames into a latest-frame-wins slot, so a slow consumer never builds a
queue (and never adds latency); counters for inference fps and step time."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from rt_smile.runtime.engine import SmileEngine

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    """One published frame set of a session."""

    #: (K, S, S, 3) RGB uint8, one image per mode.
    images: NDArray[np.uint8]
    #: Engine frame number (increasing).
    index: int
    #: time.monotonic() when it was rendered.
    made_at: float


class FrameSlot:
    """Holds only the newest frame; readers never wait for older ones."""

    def __init__(self) -> None:
        self._frame: Frame | None = None
        self._lock = threading.Lock()

    def put(self, frame: Frame) -> None:
        with self._lock:
            self._frame = frame

    def latest(self) -> Frame | None:
        with self._lock:
            return self._frame


class EngineRunner:
    """Steps ``engine`` at its frame rate in a daemon thread while any session is open."""

    def __init__(self, engine: SmileEngine) -> None:
        self.engine = engine
        self.slots: dict[str, FrameSlot] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.frames = 0
        self.step_ms = 0.0
        self.inference_fps = 0.0
        self.errors = 0

    def slot(self, sid: str) -> FrameSlot:
        with self._lock:
            return self.slots.setdefault(sid, FrameSlot())

    def release(self, sid: str) -> None:
        """Close a session and drop its slot."""
        self.engine.close_session(sid)
        with self._lock:
            self.slots.pop(sid, None)

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="rt-smile-engine", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _publish(self, frames: dict[str, NDArray[np.uint8]], made_at: float) -> None:
        """Into the slots of sessions someone watches (a released session's frames are dropped)."""
        with self._lock:
            slots = {sid: self.slots[sid] for sid in frames if sid in self.slots}
        for sid, slot in slots.items():
            slot.put(Frame(frames[sid], self.frames, made_at))

    def _tick(self) -> None:
        started = time.monotonic()
        try:
            frames = self.engine.step()
        except Exception:  # a failing step must not kill the stream thread silently
            self.errors += 1
            logger.exception("engine step failed")
            return
        done = time.monotonic()
        self._publish(frames, done)
        if frames:
            self.frames += 1
            ms = (done - started) * 1000.0
            self.step_ms = ms if self.frames == 1 else 0.9 * self.step_ms + 0.1 * ms

    def _loop(self) -> None:
        period = 1.0 / self.engine.config.fps
        next_at = time.monotonic()
        last, count = time.monotonic(), 0
        while not self._stop.is_set():
            self._tick()
            count += 1
            now = time.monotonic()
            if now - last >= 1.0:
                self.inference_fps, last, count = count / (now - last), now, 0
            next_at = max(next_at + period, now - period)  # never try to catch up more than a frame
            self._stop.wait(max(0.0, next_at - now))
