"""A call bot that publishes a live smiling avatar to a remote aiortc peer.

Signaling uses aiortc's own helpers (``aiortc.contrib.signaling``): with ``--signaling
tcp-socket`` the bot listens on --signaling-host/--signaling-port, sends its offer to the peer that
connects and applies the answer; ``copy-and-paste`` prints the offer and reads the answer from
the terminal. Run a receiving peer (for example aiortc's ``examples/videostream-cli`` in answer
mode, or the test of this file) on the other side::

    python examples/call_bot.py --photo face.jpg --class posed --signaling tcp-socket

Embed it in your own bot with three lines::

    from rt_smile import SmileVideoTrack
    track = SmileVideoTrack.from_photo("face.jpg", smile_class="posed")
    pc.addTrack(track)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.signaling import BYE, BaseSignaling, add_signaling_arguments, create_signaling

from rt_smile import SmileVideoTrack

logger = logging.getLogger("call_bot")


async def publish(signaling: BaseSignaling, track: SmileVideoTrack, smile_every: float = 0.0) -> None:
    """Offer ``track`` to the peer behind ``signaling``; run until the peer says bye or hangs up.

    A data channel ``control`` takes the same messages as the server's ({"smile": class},
    {"mode": k}, {"intensity": x}); with ``smile_every`` > 0 the bot also smiles on its own."""
    pc = RTCPeerConnection()
    pc.addTrack(track)
    channel = pc.createDataChannel("control")
    channel.on("message", lambda message: _control(track, channel, message))
    done = asyncio.Event()

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        logger.info("connection %s", pc.connectionState)
        if pc.connectionState in ("failed", "closed"):
            done.set()

    try:
        await signaling.connect()
        await pc.setLocalDescription(await pc.createOffer())
        await signaling.send(pc.localDescription)
        await _answer_loop(signaling, pc, done)
    finally:
        track.stop()
        await pc.close()
        await signaling.close()


async def _answer_loop(signaling: BaseSignaling, pc: RTCPeerConnection, done: asyncio.Event) -> None:
    while not done.is_set():
        receive = asyncio.ensure_future(signaling.receive())
        finished = asyncio.ensure_future(done.wait())
        await asyncio.wait({receive, finished}, return_when=asyncio.FIRST_COMPLETED)
        finished.cancel()
        if not receive.done():
            receive.cancel()
            return
        obj = receive.result()
        if isinstance(obj, RTCSessionDescription) and obj.type == "answer":
            await pc.setRemoteDescription(obj)
        elif obj is BYE or obj is None:
            logger.info("peer hung up")
            return


def _control(track: SmileVideoTrack, channel: Any, message: Any) -> None:
    from rt_smile.runtime.engine import SessionError
    from rt_smile.stream.server import apply_control

    try:
        reply = apply_control(track.session, message)
    except SessionError as exc:
        reply = {"error": str(exc)}
    channel.send(json.dumps(reply))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", default="sample", help="face photo (default: the bundled sample)")
    parser.add_argument("--class", dest="smile_class", default="spontaneous", help="spontaneous or posed")
    parser.add_argument("--size", type=int, choices=(256, 512), default=256)
    parser.add_argument("--episode-every", type=float, default=6.0, help="mean seconds between smiles")
    add_signaling_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    photo: Any = args.photo
    if photo == "sample":
        from importlib import resources

        photo = resources.files("rt_smile.assets").joinpath("astronaut.png").read_bytes()
    track = SmileVideoTrack.from_photo(
        photo, smile_class=args.smile_class, size=args.size, episode_every=args.episode_every
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(publish(create_signaling(args), track))


if __name__ == "__main__":
    main()
