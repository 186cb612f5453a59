"""A live rt-smile server on 127.0.0.1 in a background thread (its own event loop), shared by the
streaming tests, with counters for leak checks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from aiohttp import web

from rt_smile.config import EngineConfig, ServerConfig
from rt_smile.io.checkpoint import load_cmmnet
from rt_smile.runtime.engine import SmileEngine
from rt_smile.stream.server import SmileServer

T = TypeVar("T")


@dataclass
class LiveServer:
    server: SmileServer
    loop: asyncio.AbstractEventLoop
    runner: web.AppRunner
    url: str
    thread: threading.Thread

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def counts(self) -> dict[str, int]:
        """Peers, sessions, slots, server-loop tasks and engine thread: all must return to their
        idle values after any request."""

        async def tasks() -> int:
            # A browser keeps its HTTP connections alive; aiohttp serves each in a task until the
            # keep-alive timeout. Those are the client's to close, not ours: count the rest.
            def ours(t: asyncio.Task[Any]) -> bool:
                return not getattr(t.get_coro(), "__qualname__", "").startswith("RequestHandler.")

            return sum(ours(t) for t in asyncio.all_tasks())

        return {
            "peers": len(self.server.peers),
            "sessions": len(self.server.engine.sessions),
            "slots": len(self.server.runner.slots),
            "tasks": self.call(tasks()),
            "engine_thread": int(self.server.runner.running),
        }

    def wait_idle(self, baseline: dict[str, int], timeout: float = 10.0) -> dict[str, int]:
        """Counts once they are back at ``baseline`` (or the last counts after ``timeout``)."""
        import time

        end = time.monotonic() + timeout
        while True:
            now = self.counts()
            if now == baseline or time.monotonic() > end:
                return now
            time.sleep(0.1)


def start_server(config: ServerConfig, engine_config: EngineConfig) -> LiveServer:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-server-loop", daemon=True)
    thread.start()
    server = SmileServer(SmileEngine(load_cmmnet(), engine_config), config)

    async def boot() -> tuple[web.AppRunner, str]:
        runner = web.AppRunner(server.app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        return runner, f"http://127.0.0.1:{port}"

    runner, url = asyncio.run_coroutine_threadsafe(boot(), loop).result(60)
    return LiveServer(server, loop, runner, url, thread)


def stop_server(live: LiveServer) -> None:
    live.call(live.runner.cleanup())
    live.loop.call_soon_threadsafe(live.loop.stop)
    live.thread.join(10)
    live.loop.close()


#: Small caps so that the bad-input tests can reach them; smiles only on demand.
TEST_CONFIG = ServerConfig(max_upload_bytes=1_000_000, max_pixels=300_000, idle_timeout=2.0, max_modes=4)
TEST_ENGINE = EngineConfig(size=256, max_sessions=2, episode_every=0.0)


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    server = start_server(TEST_CONFIG, TEST_ENGINE)
    yield server
    stop_server(server)
