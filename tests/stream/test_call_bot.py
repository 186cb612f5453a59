"""examples/call_bot.py publishes the avatar to a second aiortc peer over aiortc's TCP signaling."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.signaling import BYE, TcpSocketSignaling
from numpy.typing import NDArray

from rt_smile import SmileVideoTrack
from rt_smile.io.images import load_image

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "call_bot.py"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("call_bot", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["call_bot"] = module
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _receiver(port: int, frames_wanted: int) -> tuple[list[NDArray[np.uint8]], list[dict[str, Any]]]:
    """A plain aiortc peer: answers the bot's offer, collects frames, asks for a smile, hangs up."""
    signaling = TcpSocketSignaling("127.0.0.1", port)
    pc = RTCPeerConnection()
    got: asyncio.Queue[Any] = asyncio.Queue()
    replies: list[dict[str, Any]] = []
    pc.on("track", got.put_nowait)

    @pc.on("datachannel")
    def on_channel(channel: Any) -> None:
        channel.on("message", lambda m: replies.append(json.loads(m)))
        channel.on("open", lambda: channel.send(json.dumps({"smile": "posed"})))
        if channel.readyState == "open":
            channel.send(json.dumps({"smile": "posed"}))

    for _ in range(100):  # the bot's listening socket may not be up yet
        try:
            offer = await signaling.receive()
            break
        except OSError:
            await asyncio.sleep(0.1)
    assert isinstance(offer, RTCSessionDescription) and offer.type == "offer"
    await pc.setRemoteDescription(offer)
    await pc.setLocalDescription(await pc.createAnswer())
    await signaling.send(pc.localDescription)
    track = await asyncio.wait_for(got.get(), 10.0)
    frames = [
        (await asyncio.wait_for(track.recv(), 10.0)).to_ndarray(format="rgb24") for _ in range(frames_wanted)
    ]
    await asyncio.sleep(0.3)
    await signaling.send(BYE)
    await pc.close()
    await signaling.close()
    return frames, replies


def test_call_bot_publishes_to_a_second_aiortc_peer(sample_file) -> None:
    bot = _example()
    port = _free_port()
    track = SmileVideoTrack.from_photo(load_image(sample_file), smile_class="posed", episode_every=0.0)

    async def run() -> tuple[list[NDArray[np.uint8]], list[dict[str, Any]]]:
        publishing = asyncio.create_task(bot.publish(TcpSocketSignaling("127.0.0.1", port), track))
        frames, replies = await _receiver(port, 45)
        await asyncio.wait_for(publishing, 10.0)
        return frames, replies

    frames, replies = asyncio.run(run())
    assert all(f.shape == (256, 256, 3) for f in frames)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 0.5, "a live face"
    assert {"ok": "smile", "value": "posed"} in replies
    assert track.readyState == "ended" and not track.runner.running, "the bot stopped its engine"
