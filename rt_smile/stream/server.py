"""``rt-smile serve``: the page, face uploads and WebRTC offers/answers (aiohttp + aiortc).

Endpoints: ``GET /`` (the page), ``GET /api/config``, ``POST /api/faces`` (multipart field
``image``), ``POST /api/offer`` (``{"sdp", "type", "face_id", "smile_class", "modes"}``),
``GET /api/stats``, ``GET /healthz``. Every error is JSON ``{"error": message}`` with a 4xx
status (503 with ``Retry-After`` when the engine is full). One video track per mode is answered
on the offer's recvonly video transceivers; a data channel ``control`` takes ``{"smile": class}``,
``{"mode": k}`` and ``{"intensity": x}``, answers ``{"ok": ...}`` or ``{"error": ...}`` and sends
``{"stats": ...}`` once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from rt_smile.config import ServerConfig
from rt_smile.data.sequences import CLASSES
from rt_smile.errors import FaceError, ImageError, ImageTooLargeError
from rt_smile.face.landmarks import LandmarkDetector, make_detector
from rt_smile.io.images import load_image
from rt_smile.runtime.engine import FaceSession, PreparedFace, SessionError, SmileEngine, prepare_photo
from rt_smile.runtime.runner import EngineRunner
from rt_smile.stream.track import SmileVideoTrack

logger = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
SAMPLE_ID = "sample"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An HTTP error answered as JSON."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost")


def check_bind(config: ServerConfig) -> None:
    """Refuse a non-loopback bind without a token or an explicit --insecure."""
    if not is_loopback(config.host) and config.token is None and not config.insecure:
        raise SessionError(
            f"binding {config.host} exposes the server to the network: pass --token SECRET "
            "(clients send 'Authorization: Bearer SECRET') or --insecure"
        )


@dataclass
class Peer:
    """One browser or bot connection and the live face it watches."""

    pc: RTCPeerConnection
    session: FaceSession
    tracks: list[SmileVideoTrack]
    unconnected_since: float | None = field(default_factory=time.monotonic)
    stats_task: asyncio.Task[None] | None = None


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


class SmileServer:
    """The aiohttp application around one ``SmileEngine``."""

    def __init__(self, engine: SmileEngine, config: ServerConfig = ServerConfig()) -> None:
        self.engine, self.config = engine, config
        self.runner = EngineRunner(engine)
        self.faces: OrderedDict[str, PreparedFace] = OrderedDict()
        self.peers: dict[RTCPeerConnection, Peer] = {}
        self._detector: LandmarkDetector | None = None
        self._detect_lock = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ app
    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._errors, self._auth], client_max_size=self.config.max_upload_bytes
        )
        app.router.add_get("/", self.index)
        app.router.add_get("/static/{name}", self.static)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/api/config", self.client_config)
        app.router.add_post("/api/faces", self.upload_face)
        app.router.add_post("/api/offer", self.offer)
        app.router.add_get("/api/stats", self.stats)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return _json_error(exc.status, exc.message, exc.headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _json_error(exc.status, exc.reason)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        token = self.config.token
        if token is not None and request.path.startswith("/api/"):
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise ApiError(401, "missing or wrong bearer token (Authorization: Bearer TOKEN)")
        return await handler(request)

    async def _on_startup(self, app: web.Application) -> None:
        self._reaper = asyncio.create_task(self._reap_idle())

    async def _on_shutdown(self, app: web.Application) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await asyncio.gather(*(self.close_peer(p) for p in list(self.peers.values())))
        self.runner.stop()
        if self._detector is not None:
            self._detector.close()

    # ------------------------------------------------------------------ static
    async def index(self, request: web.Request) -> web.StreamResponse:
        return self._web_file("index.html")

    async def static(self, request: web.Request) -> web.StreamResponse:
        return self._web_file(request.match_info["name"])

    def _web_file(self, name: str) -> web.StreamResponse:
        path = WEB_DIR / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise ApiError(404, f"no such page file: {name}")
        return web.FileResponse(path)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "sessions": len(self.engine.sessions)})

    async def client_config(self, request: web.Request) -> web.Response:
        servers = [
            {"urls": url, **({"username": u} if u else {}), **({"credential": c} if c else {})}
            for url, u, c in self.config.ice_servers
        ]
        return web.json_response(
            {
                "ice_servers": servers,
                "size": self.engine.config.size,
                "classes": list(CLASSES),
                "max_modes": self.config.max_modes,
                "sample_face": SAMPLE_ID,
            }
        )

    # ------------------------------------------------------------------ faces
    async def _read_upload(self, request: web.Request) -> bytes:
        if not request.content_type.startswith("multipart/"):
            raise ApiError(415, "send the photo as multipart/form-data with a field named 'image'")
        if (request.content_length or 0) > self.config.max_upload_bytes:
            raise ApiError(413, f"upload larger than {self.config.max_upload_bytes} bytes")
        reader = await request.multipart()
        async for part in reader:
            if getattr(part, "name", None) == "image":
                return await self._read_part(part)
        raise ApiError(400, "the form has no field named 'image'")

    async def _read_part(self, part: Any) -> bytes:
        data = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            data += chunk
            if len(data) > self.config.max_upload_bytes:
                raise ApiError(413, f"upload larger than {self.config.max_upload_bytes} bytes")
        if not data:
            raise ApiError(400, "the 'image' field is empty")
        return bytes(data)

    async def _prepare(self, data: bytes) -> PreparedFace:
        try:
            # decoding a large photo takes a while: off the event loop, which paces every stream
            rgb = await asyncio.to_thread(load_image, data, max_pixels=self.config.max_pixels)
        except ImageTooLargeError as exc:
            raise ApiError(413, str(exc)) from exc
        except ImageError as exc:
            raise ApiError(400, str(exc)) from exc
        async with self._detect_lock:  # one detector, used by one thread at a time
            if self._detector is None:
                self._detector = make_detector()
            try:
                return await asyncio.to_thread(prepare_photo, rgb, self.engine.config.size, self._detector)
            except FaceError as exc:
                raise ApiError(422, str(exc)) from exc

    def _remember(self, face_id: str, face: PreparedFace) -> None:
        self.faces[face_id] = face
        self.faces.move_to_end(face_id)
        while len(self.faces) > self.config.max_faces:
            self.faces.popitem(last=False)

    async def upload_face(self, request: web.Request) -> web.Response:
        data = await self._read_upload(request)
        face_id = (await asyncio.to_thread(hashlib.sha256, data)).hexdigest()[:16]
        if face_id in self.faces:
            self.faces.move_to_end(face_id)
            return web.json_response(
                {"face_id": face_id, "warnings": self.faces[face_id].warnings}, status=200
            )
        face = await self._prepare(data)
        self._remember(face_id, face)
        return web.json_response({"face_id": face_id, "warnings": face.warnings}, status=201)

    async def face(self, face_id: str) -> PreparedFace:
        if face_id == SAMPLE_ID and SAMPLE_ID not in self.faces:
            from importlib import resources

            data = resources.files("rt_smile.assets").joinpath("astronaut.png").read_bytes()
            self._remember(SAMPLE_ID, await self._prepare(data))
        if face_id not in self.faces:
            raise ApiError(404, f"unknown face_id {face_id!r}: upload the photo to /api/faces first")
        return self.faces[face_id]

    # ------------------------------------------------------------------ offer
    async def _offer_request(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        sdp, kind = body.get("sdp"), body.get("type")
        if not isinstance(sdp, str) or not sdp.strip():
            raise ApiError(400, "'sdp' must be a non-empty SDP offer string")
        if kind != "offer":
            raise ApiError(400, f"'type' must be 'offer', got {kind!r}")
        smile_class = body.get("smile_class", "spontaneous")
        if smile_class not in CLASSES:
            raise ApiError(400, f"unknown smile_class {smile_class!r}; choose {' or '.join(CLASSES)}")
        modes = body.get("modes", 1)
        if isinstance(modes, bool) or not isinstance(modes, int) or not 1 <= modes <= self.config.max_modes:
            raise ApiError(
                400, f"'modes' must be an integer within 1..{self.config.max_modes}, got {modes!r}"
            )
        return {
            "sdp": sdp,
            "face_id": str(body.get("face_id", SAMPLE_ID)),
            "class": smile_class,
            "modes": modes,
        }

    def _rtc_config(self) -> RTCConfiguration:
        servers = [RTCIceServer(urls=u, username=n, credential=c) for u, n, c in self.config.ice_servers]
        return RTCConfiguration(iceServers=servers or None)

    def _open_session(self, face: PreparedFace, smile_class: str, modes: int) -> FaceSession:
        try:
            return self.engine.open_session(face, smile_class, modes)
        except SessionError as exc:
            if "too many sessions" in str(exc):
                retry = {"Retry-After": str(self.config.retry_after_s)}
                raise ApiError(503, f"{exc}; try again later", retry) from exc
            raise ApiError(400, str(exc)) from exc

    async def offer(self, request: web.Request) -> web.Response:
        req = await self._offer_request(request)
        face = await self.face(req["face_id"])
        session = self._open_session(face, req["class"], req["modes"])
        pc = RTCPeerConnection(self._rtc_config())
        peer = Peer(pc, session, [])
        self.peers[pc] = peer
        try:
            answer = await self._negotiate(peer, req["sdp"], req["modes"])
        except BaseException:
            await self.close_peer(peer)
            raise
        return web.json_response({"sdp": answer.sdp, "type": answer.type})

    async def _negotiate(self, peer: Peer, sdp: str, modes: int) -> RTCSessionDescription:
        pc = peer.pc
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:  # aiortc raises ValueError and others on a bad SDP
            raise ApiError(400, f"malformed SDP offer: {exc}") from exc
        videos = [
            t for t in pc.getTransceivers() if t.kind == "video" and t.direction in ("recvonly", "sendrecv")
        ]
        if len(videos) < modes:
            raise ApiError(
                400, f"the offer has {len(videos)} video transceivers; modes={modes} needs {modes}"
            )
        for i, transceiver in enumerate(videos[:modes]):
            track = SmileVideoTrack(self.runner, peer.session, i)
            peer.tracks.append(track)
            transceiver.sender.replaceTrack(track)
            transceiver.direction = "sendonly"
        self._wire(peer)
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription

    def _wire(self, peer: Peer) -> None:
        pc = peer.pc

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            peer.unconnected_since = (
                None if state == "connected" else peer.unconnected_since or time.monotonic()
            )
            if state in ("failed", "closed"):
                await self.close_peer(peer)

        @pc.on("datachannel")
        def on_channel(channel: Any) -> None:
            if channel.label != "control":
                return
            channel.on("message", lambda msg: self._control(peer, channel, msg))
            peer.stats_task = asyncio.create_task(self._send_stats(peer, channel))

    # ------------------------------------------------------------------ control channel
    def _control(self, peer: Peer, channel: Any, message: Any) -> None:
        try:
            reply = apply_control(peer.session, message)
        except SessionError as exc:
            reply = {"error": str(exc)}
        if channel.readyState == "open":
            channel.send(json.dumps(reply))

    async def _send_stats(self, peer: Peer, channel: Any) -> None:
        with contextlib.suppress(Exception):
            while peer.pc in self.peers:
                if channel.readyState == "open":
                    channel.send(json.dumps({"stats": self._peer_stats(peer)}))
                await asyncio.sleep(1.0)

    # ------------------------------------------------------------------ lifecycle
    async def close_peer(self, peer: Peer) -> None:
        if self.peers.pop(peer.pc, None) is None:
            return
        for track in peer.tracks:
            track.stop()
        if peer.stats_task is not None:
            peer.stats_task.cancel()
        self.runner.release(peer.session.id)
        if not self.engine.sessions:
            self.runner.stop()
        await peer.pc.close()

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for peer in list(self.peers.values()):
                since = peer.unconnected_since
                if since is not None and now - since > self.config.idle_timeout:
                    logger.info("closing idle peer of session %s", peer.session.id)
                    await self.close_peer(peer)

    # ------------------------------------------------------------------ stats
    def _peer_stats(self, peer: Peer) -> dict[str, Any]:
        return {
            "session": peer.session.id,
            "state": peer.pc.connectionState,
            "smile_class": peer.session.smile_class,
            "featured_mode": peer.session.featured,
            "in_episode": peer.session.episode is not None,
            "tracks": [
                {
                    "track": i,
                    "mode": peer.session.mode_for_track(i),
                    "delivered": t.stats.delivered,
                    "delivered_fps": round(t.stats.delivered_fps, 2),
                    "frame_age_ms": round(t.stats.frame_age_ms, 2),
                }
                for i, t in enumerate(peer.tracks)
            ],
        }

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "sessions": len(self.engine.sessions),
                "peers": len(self.peers),
                "faces": len(self.faces),
                "engine_running": self.runner.running,
                "inference_fps": round(self.runner.inference_fps, 2),
                "step_ms": round(self.runner.step_ms, 3),
                "engine_frames": self.runner.frames,
                "engine_errors": self.runner.errors,
                "peer_stats": [self._peer_stats(p) for p in self.peers.values()],
            }
        )


def apply_control(session: FaceSession, message: Any) -> dict[str, Any]:
    """Apply one control-channel message; raises SessionError on a bad one."""
    try:
        data = json.loads(message) if isinstance(message, (str, bytes)) else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict) or len(data) != 1:
        raise SessionError(
            'expected a JSON object with one key: {"smile": class}, {"mode": k} or {"intensity": x}'
        )
    key, value = next(iter(data.items()))
    if key == "smile":
        session.trigger(value if isinstance(value, str) else repr(value))
    elif key == "mode":
        session.set_mode(value)
    elif key == "intensity":
        session.set_intensity(value)
    else:
        raise SessionError(f"unknown control {key!r}; use smile, mode or intensity")
    return {"ok": key, "value": value}


async def serve(engine: SmileEngine, config: ServerConfig) -> None:
    """Run until cancelled (Ctrl-C), then close every peer."""
    check_bind(config)
    server = SmileServer(engine, config)
    runner = web.AppRunner(server.app())
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    logger.warning("rt-smile serving on http://%s:%d/", config.host, config.port)
    print(f"rt-smile: open http://{config.host}:{config.port}/ (Ctrl-C to stop)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
