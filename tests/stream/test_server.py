"""The server against a real aiortc peer: frames of the face on every track, control messages,
every kind of bad input answered as JSON, and no leaked peer, session, task or thread."""

from __future__ import annotations

import asyncio
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from numpy.typing import NDArray
from PIL import Image

from rt_smile.cli import main
from rt_smile.config import ServerConfig
from rt_smile.errors import RtSmileError
from rt_smile.face.landmarks import LandmarkDetector, detect_face, make_detector
from rt_smile.runtime.engine import PreparedFace
from rt_smile.stream.server import check_bind
from tests.conftest import turned
from tests.stream.conftest import TEST_CONFIG, TEST_ENGINE, LiveServer, start_server, stop_server

Frames = list[tuple[float, NDArray[np.uint8]]]


@dataclass
class Client:
    """A receiving aiortc peer."""

    pc: RTCPeerConnection
    channel: Any
    tracks: list[Any] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)


async def _post_json(url: str, body: Any) -> tuple[int, dict[str, Any], Any]:
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as r:
        return r.status, await r.json(), r.headers


async def connect(live: LiveServer, modes: int, face_id: str = "sample", smile: str = "posed") -> Client:
    pc = RTCPeerConnection()
    for _ in range(modes):
        pc.addTransceiver("video", direction="recvonly")
    client = Client(pc, pc.createDataChannel("control"))
    client.channel.on("message", lambda m: client.messages.append(json.loads(m)))
    pc.on("track", client.tracks.append)
    await pc.setLocalDescription(await pc.createOffer())
    body = {"sdp": pc.localDescription.sdp, "type": "offer", "face_id": face_id, "smile_class": smile}
    status, answer, _ = await _post_json(live.url + "/api/offer", {**body, "modes": modes})
    assert status == 200, answer
    await pc.setRemoteDescription(RTCSessionDescription(**answer))
    return client


async def collect(track: Any, seconds: float) -> Frames:
    """Frames received from the first one on, for ``seconds``."""
    out: Frames = []
    while not out or out[-1][0] - out[0][0] < seconds:
        frame = await asyncio.wait_for(track.recv(), 10.0)
        out.append((time.monotonic(), frame.to_ndarray(format="rgb24")))
    return out


def _faces(rgb: NDArray[np.uint8]) -> int:
    """Faces OpenCV's Haar cascade (independent of MediaPipe) finds."""
    xml = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
    cascade = cv2.CascadeClassifier(xml)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return len(cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(80, 80)))


def _png(rgb: NDArray[np.uint8]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


async def upload(
    live: LiveServer, data: bytes | None, field_name: str = "image"
) -> tuple[int, dict[str, Any]]:
    form = aiohttp.FormData()
    if data is not None:
        form.add_field(field_name, data, filename="face.png", content_type="image/png")
    else:
        form.add_field("other", b"x", filename="x.txt", content_type="text/plain")
    async with aiohttp.ClientSession() as http, http.post(live.url + "/api/faces", data=form) as r:
        return r.status, await r.json()


def test_aiortc_receiver_gets_the_uploaded_face_on_every_track(live: LiveServer, sample_file: Path) -> None:
    baseline = live.counts()

    async def run() -> list[Frames]:
        status, body = await upload(live, Path(sample_file).read_bytes())
        assert status in (200, 201) and body["face_id"] and body["warnings"] == []
        again, same = await upload(live, Path(sample_file).read_bytes())
        assert again == 200 and same == body, "the same photo again is not a new face"
        client = await connect(live, 2, face_id=body["face_id"])
        assert len(client.tracks) == 2
        try:
            return list(await asyncio.gather(*(collect(t, 3.0) for t in client.tracks)))
        finally:
            await client.pc.close()

    for frames in asyncio.run(run()):
        times = np.array([t for t, _ in frames])
        fps = (len(times) - 1) / (times[-1] - times[0])
        assert fps >= 25.0, f"{fps:.1f} fps from the first frame on"
        images = [f for _, f in frames]
        assert all(f.shape == (256, 256, 3) for f in images)
        assert _faces(images[0]) >= 1 and _faces(images[-1]) >= 1, "the face is on the track"
        changes = [
            np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(images, images[15:], strict=False)
        ]
        assert max(changes) > 0.5, "the face moves (idle blinks and head motion)"
    assert live.wait_idle(baseline) == baseline


def _mouth_widths(frames: Frames) -> NDArray[np.float64]:
    """Lip-corner distance (points 61-291) in IOD, by MediaPipe on every third received frame:
    unchanged by the idle head motion, grows with a smile."""
    detector = make_detector()
    try:
        faces = [detect_face(f, detector=detector) for _, f in frames[::3]]
    finally:
        detector.close()
    return np.array([np.linalg.norm(f.points[61] - f.points[291]) / f.iod for f in faces])


def test_control_channel_triggers_a_smile_and_answers_bad_messages(live: LiveServer) -> None:
    baseline = live.counts()

    async def run() -> tuple[float, float, list[dict[str, Any]]]:
        client = await connect(live, 1, smile="posed")
        track = client.tracks[0]
        idle = await collect(track, 1.0)
        while client.channel.readyState != "open":
            await asyncio.sleep(0.05)
        for bad in (
            "nonsense",
            json.dumps({"mode": 7}),
            json.dumps({"intensity": "x"}),
            json.dumps({"smile": "grin"}),
        ):
            client.channel.send(bad)
        client.channel.send(json.dumps({"smile": "posed"}))
        smiling = await collect(track, 1.5)
        await client.pc.close()
        idle_width, smile_width = _mouth_widths(idle), _mouth_widths(smiling)
        idle_change = float(idle_width.max() - idle_width.min())
        smile_change = float(smile_width.max() - np.median(idle_width))
        return idle_change, smile_change, client.messages

    idle_change, smile_change, messages = asyncio.run(run())
    replies = [m for m in messages if "stats" not in m]
    assert [("error" in m) for m in replies[:4]] == [True] * 4, replies
    assert replies[4] == {"ok": "smile", "value": "posed"}
    assert smile_change > max(0.05, 3 * idle_change), (idle_change, smile_change)
    assert live.wait_idle(baseline) == baseline


def test_bad_uploads_are_json_errors(live: LiveServer) -> None:
    baseline = live.counts()

    async def run() -> list[tuple[int, dict[str, Any]]]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(live.url + "/api/faces", json={"image": 1}) as r,
        ):
            not_multipart = (r.status, await r.json())
        blank = np.full((200, 200, 3), 128, np.uint8)
        return [
            not_multipart,
            await upload(live, None),
            await upload(live, b"definitely not an image"),
            await upload(live, np.random.default_rng(0).bytes(1_200_000)),
            await upload(live, _png(np.zeros((700, 700, 3), np.uint8))),
            await upload(live, _png(blank)),
        ]

    results = asyncio.run(run())
    assert [s for s, _ in results] == [415, 400, 400, 413, 413, 422], results
    assert all(isinstance(b.get("error"), str) and b["error"] for _, b in results)
    assert "image" in results[1][1]["error"]
    assert live.wait_idle(baseline) == baseline


def test_bad_offers_are_json_errors(live: LiveServer) -> None:
    baseline = live.counts()
    offer = {"type": "offer", "face_id": "sample", "smile_class": "posed", "modes": 1}

    async def run() -> list[tuple[int, dict[str, Any]]]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(live.url + "/api/offer", data=b"{not json") as r,
        ):
            not_json = (r.status, await r.json())
        cases = [
            {**offer, "sdp": ""},
            {**offer, "sdp": "v=0\r\nthis is not sdp\r\n"},
            {**offer, "sdp": "v=0", "face_id": "no-such-face"},
            {**offer, "sdp": "v=0", "smile_class": "grin"},
            {**offer, "sdp": "v=0", "modes": 0},
            {**offer, "sdp": "v=0", "type": "answer"},
        ]
        return [not_json] + [
            (s, b) for s, b, _ in [await _post_json(live.url + "/api/offer", c) for c in cases]
        ]

    results = asyncio.run(run())
    assert [s for s, _ in results] == [400, 400, 400, 404, 400, 400, 400], results
    assert all(b["error"] for _, b in results)
    assert live.wait_idle(baseline) == baseline


def test_too_many_sessions_is_503_with_retry_after(live: LiveServer) -> None:
    baseline = live.counts()

    async def run() -> tuple[int, dict[str, Any], Any]:
        clients = [await connect(live, 1), await connect(live, 1)]  # the test server's cap is 2
        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        body = {"sdp": pc.localDescription.sdp, "type": "offer", "face_id": "sample", "modes": 1}
        result = await _post_json(live.url + "/api/offer", body)
        for c in [*clients, Client(pc, None)]:
            await c.pc.close()
        return result

    status, body, headers = asyncio.run(run())
    assert status == 503 and "too many sessions" in body["error"]
    assert int(headers["Retry-After"]) > 0
    assert live.wait_idle(baseline) == baseline


def test_a_peer_that_vanishes_is_cleaned_up(live: LiveServer) -> None:
    """One peer goes away mid-stream; another never completes its connection (idle timeout)."""
    baseline = live.counts()

    async def run() -> None:
        client = await connect(live, 2)
        await collect(client.tracks[0], 0.5)
        await client.pc.close()  # gone mid-stream
        ghost = RTCPeerConnection()
        ghost.addTransceiver("video", direction="recvonly")
        await ghost.setLocalDescription(await ghost.createOffer())
        body = {"sdp": ghost.localDescription.sdp, "type": "offer", "face_id": "sample", "modes": 1}
        status, _, _ = await _post_json(live.url + "/api/offer", body)
        assert status == 200
        await ghost.close()  # never applied the answer: the server's peer never connects

    asyncio.run(run())
    assert live.counts()["peers"] == baseline["peers"] + 1, "the server holds the unconnected peer"
    assert live.wait_idle(baseline, timeout=15.0) == baseline, "the idle reaper closes the lost peer"


def test_stats_health_and_page(live: LiveServer) -> None:
    async def run() -> tuple[dict[str, Any], dict[str, Any], str, int]:
        async with aiohttp.ClientSession() as http:
            async with http.get(live.url + "/api/stats") as r:
                stats = await r.json()
            async with http.get(live.url + "/healthz") as r:
                health = await r.json()
            async with http.get(live.url + "/") as r:
                page = await r.text()
            async with http.get(live.url + "/static/..%2Fpyproject.toml") as r:
                escape = r.status
        return stats, health, page, escape

    stats, health, page, escape = asyncio.run(run())
    assert {"sessions", "peers", "inference_fps", "step_ms"} <= set(stats)
    assert stats["engine_errors"] == 0
    assert health["status"] == "ok"
    assert "rt_smile" in page and "/static/app.js" in page
    assert escape == 404


def test_a_token_guards_the_api_but_not_the_page() -> None:
    guarded = start_server(ServerConfig(**{**TEST_CONFIG.__dict__, "token": "s3cret"}), TEST_ENGINE)

    async def get(path: str, token: str | None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession() as http, http.get(guarded.url + path, headers=headers) as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, body

    async def run() -> list[tuple[int, Any]]:
        return [
            await get("/api/config", None),
            await get("/api/config", "wrong"),
            await get("/api/config", "s3cret"),
            await get("/", None),
        ]

    try:
        (none, none_body), (wrong, _), (right, _), (page, _) = asyncio.run(run())
    finally:
        stop_server(guarded)
    assert (none, wrong, right, page) == (401, 401, 200, 200)
    assert "token" in none_body["error"]


def test_non_loopback_bind_needs_a_token(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RtSmileError, match="--token"):
        check_bind(ServerConfig(host="0.0.0.0"))
    check_bind(ServerConfig(host="0.0.0.0", token="s3cret"))
    check_bind(ServerConfig(host="0.0.0.0", insecure=True))
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--token" in err
    assert main(["serve", "--ice-server", "http://example.org"]) == 2
    assert "stun:" in capsys.readouterr().err


def test_a_turned_face_is_uploaded_with_a_warning(
    live: LiveServer, sample_file: Path, detector: LandmarkDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An uploaded face turned more than 15° from the camera (the sample's landmarks turned by
    30°, as the server's detection of this photo) is accepted with a warning naming the angle,
    again when the same photo comes back."""
    import rt_smile.stream.server as server_module
    from rt_smile.runtime.engine import prepare_landmarks

    def turned_detection(rgb: NDArray[np.uint8], size: int, det: LandmarkDetector) -> PreparedFace:
        return prepare_landmarks(rgb, turned(detect_face(rgb, detector=detector), 30.0), size)

    monkeypatch.setattr(server_module, "prepare_photo", turned_detection)
    rgb = np.array(Image.open(sample_file).convert("RGB"))
    rgb[0, 0] ^= 1  # another file than the other tests' uploads: not a face the server knows
    first = asyncio.run(upload(live, _png(rgb)))
    again = asyncio.run(upload(live, _png(rgb)))
    assert first[0] == 201 and again == (200, first[1])
    (warning,) = first[1]["warnings"]
    assert warning.startswith("the face is turned 3") and "15° of frontal" in warning
