// rt_smile page: upload or sample face, K live tiles over one RTCPeerConnection, a control
// data channel, and a live overlay of fps, frame age, RTT and jitter. Plain JS, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token");
const auth = token ? { Authorization: `Bearer ${token}` } : {};

const state = { faceId: "sample", pc: null, channel: null, tiles: [], config: null, serverStats: null };

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...auth, ...(options.headers || {}) } });
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

async function loadConfig() {
  state.config = await api("/api/config");
  $("smile-class").innerHTML = state.config.classes.map((c) => `<option>${c}</option>`).join("");
  const ks = Array.from({ length: state.config.max_modes }, (_, i) => i + 1);
  $("modes").innerHTML = ks.map((k) => `<option${k === 2 ? " selected" : ""}>${k}</option>`).join("");
}

async function uploadPhoto(file) {
  const form = new FormData();
  form.append("image", file);
  $("face-status").textContent = "face: uploading…";
  try {
    const body = await api("/api/faces", { method: "POST", body: form });
    state.faceId = body.face_id;
    const notes = (body.warnings || []).join("; ");
    $("face-status").textContent = notes ? `face: ${file.name} (${notes})` : `face: ${file.name}`;
  } catch (err) {
    $("face-status").textContent = `face: ${err.message}`;
    throw err;
  }
}

function makeTile(index, size) {
  const tile = document.createElement("div");
  tile.className = "tile";
  const video = document.createElement("video");
  Object.assign(video, { autoplay: true, muted: true, playsInline: true, width: size, height: size });
  const overlay = document.createElement("div");
  overlay.className = "overlay";
  const label = document.createElement("div");
  label.className = "label";
  label.textContent = `track ${index}`;
  tile.append(video, overlay, label);
  $("tiles").append(tile);
  const entry = { video, overlay, label, frames: 0, lastStats: null };
  const count = () => {
    entry.frames += 1;
    video.requestVideoFrameCallback(count);
  };
  video.requestVideoFrameCallback(count);
  return entry;
}

function waitForIce(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      }
    };
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(resolve, 3000);
  });
}

function openChannel(pc) {
  const channel = pc.createDataChannel("control");
  channel.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.stats) state.serverStats = msg.stats;
    else if (msg.error) setStatus(msg.error, true);
    else if (msg.ok) setStatus(`${msg.ok}: ${msg.value}`);
  };
  channel.onopen = () => setLive(true);
  return channel;
}

async function start() {
  await stop();
  const modes = Number($("modes").value);
  const smileClass = $("smile-class").value;
  const pc = new RTCPeerConnection({ iceServers: state.config.ice_servers });
  state.pc = pc;
  state.tiles = Array.from({ length: modes }, (_, i) => makeTile(i, state.config.size));
  const transceivers = state.tiles.map(() => pc.addTransceiver("video", { direction: "recvonly" }));
  pc.ontrack = (event) => {
    const i = transceivers.indexOf(event.transceiver);
    if (i >= 0) state.tiles[i].video.srcObject = new MediaStream([event.track]);
  };
  state.channel = openChannel(pc);
  await pc.setLocalDescription(await pc.createOffer());
  await waitForIce(pc);
  setStatus("connecting…");
  try {
    const answer = await api("/api/offer", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        sdp: pc.localDescription.sdp, type: "offer", face_id: state.faceId, smile_class: smileClass, modes,
      }),
    });
    await pc.setRemoteDescription(answer);
  } catch (err) {
    setStatus(err.message, true);
    await stop();
    return;
  }
  $("mode").innerHTML = state.tiles.map((_, i) => `<option>${i}</option>`).join("");
  $("stop").disabled = false;
  setStatus("live");
}

async function stop() {
  if (state.pc) state.pc.close();
  state.pc = null;
  state.channel = null;
  state.tiles = [];
  $("tiles").innerHTML = "";
  $("stop").disabled = true;
  setLive(false);
}

function setLive(live) {
  for (const id of ["smile", "mode", "intensity"]) $(id).disabled = !live;
}

function send(message) {
  if (state.channel && state.channel.readyState === "open") state.channel.send(JSON.stringify(message));
}

async function updateOverlay() {
  const pc = state.pc;
  if (!pc) return;
  const report = await pc.getStats();
  let rtt = null;
  const inbound = new Map();
  report.forEach((s) => {
    if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) rtt = s.currentRoundTripTime;
    if (s.type === "inbound-rtp" && s.kind === "video") inbound.set(s.mid, s);
  });
  pc.getTransceivers().forEach((t) => {
    const i = state.tiles.findIndex((_, k) => pc.getTransceivers()[k] === t);
    const tile = state.tiles[i];
    if (!tile) return;
    const s = inbound.get(t.mid);
    const fps = s && s.framesPerSecond !== undefined ? s.framesPerSecond.toFixed(0) : "–";
    const jitter = s && s.jitter !== undefined ? (s.jitter * 1000).toFixed(1) : "–";
    const track = state.serverStats && state.serverStats.tracks[i];
    const age = track ? track.frame_age_ms.toFixed(1) : "–";
    const mode = track ? track.mode : i;
    tile.label.textContent = `mode ${mode}`;
    tile.overlay.textContent =
      `${fps} fps  ${tile.video.videoWidth}×${tile.video.videoHeight}\n` +
      `frame age ${age} ms\nRTT ${rtt === null ? "–" : (rtt * 1000).toFixed(1)} ms  jitter ${jitter} ms`;
  });
}

// Hooks for automated tests and the curious: frame counts, sizes and canvas snapshots per tile.
function drawTile(i) {
  const v = state.tiles[i].video;
  const canvas = document.createElement("canvas");
  canvas.width = v.videoWidth;
  canvas.height = v.videoHeight;
  canvas.getContext("2d").drawImage(v, 0, 0);
  return canvas;
}

window.rtSmile = {
  state,
  start,
  stop,
  send,
  frames: () => state.tiles.map((t) => t.frames),
  sizes: () => state.tiles.map((t) => [t.video.videoWidth, t.video.videoHeight]),
  /** The frame tile i shows now, as a lossless PNG data URL. */
  snapshotPng: (i) => drawTile(i).toDataURL("image/png"),
  /** PNG snapshots of every tile, `count` of them `everyMs` apart: [[tile 0 …], [tile 1 …]]. */
  async record(count, everyMs) {
    const shots = state.tiles.map(() => []);
    for (let n = 0; n < count; n += 1) {
      state.tiles.forEach((_, i) => shots[i].push(window.rtSmile.snapshotPng(i)));
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
    return shots;
  },
};

$("photo").addEventListener("change", (e) => e.target.files[0] && uploadPhoto(e.target.files[0]).catch(() => {}));
$("use-sample").addEventListener("click", () => {
  state.faceId = "sample";
  $("face-status").textContent = "face: sample";
});
$("start").addEventListener("click", () => start().catch((err) => setStatus(err.message, true)));
$("stop").addEventListener("click", () => stop());
$("smile").addEventListener("click", () => send({ smile: $("smile-class").value }));
$("mode").addEventListener("change", (e) => send({ mode: Number(e.target.value) }));
$("intensity").addEventListener("input", (e) => send({ intensity: Number(e.target.value) }));
setInterval(() => updateOverlay().catch(() => {}), 1000);
loadConfig().catch((err) => setStatus(`cannot load /api/config: ${err.message}`, true));
