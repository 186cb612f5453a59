"""Real-time engine: one model, many live faces, K smile modes each, endless streams.

``SmileEngine`` loads CMM-Net and the translator once. ``FaceSession`` holds one photo's
precomputed state (``PreparedFace``: landmarks, crop, warp basis, palette) and the explicit
recurrent state of its K modes. ``SmileEngine.step()`` advances every session by one frame: the
generator step of every session in a smile episode runs as one batch, and the translator renders
all modes of all sessions as one batch.

Between episodes a session shows a living idle face — natural blinks and slight head motion —
and an episode (triggered on demand, or at a configurable rhythm) starts from the photo's own
neutral landmarks (the generator's frame 0) and fades back to it, so transitions are smooth both
ways. Class, featured mode and intensity can change while streaming.
"""

from __future__ import annotations

import itertools
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import NDArray

from rt_smile.config import CropConfig, DetectorConfig, EngineConfig
from rt_smile.data.expressions import ExpressionBasis
from rt_smile.data.sequences import CLASSES
from rt_smile.errors import RtSmileError
from rt_smile.face.align import FaceCrop, crop_face, frame_of, turned_message, warn_if_turned
from rt_smile.face.landmarks import FaceLandmarks, LandmarkDetector, detect_face, make_detector
from rt_smile.face.topology import NUM_LANDMARKS
from rt_smile.models.cmmnet import CMMNet, GeneratorState, stack_states, unstack_states
from rt_smile.models.translator import FacePrior, prepare_face
from rt_smile.runtime.motion import FaceMotion
from rt_smile.runtime.step import groups_for

if TYPE_CHECKING:
    from rt_smile.runtime.backends import StepBackend

Array = NDArray[np.float64]

#: Frames an episode of each class runs (within the 5 s the generator was trained on).
EPISODE_SECONDS = {"spontaneous": 5.0, "posed": 3.5}
#: Seconds over which an episode's last frames fade back to the idle face.
FADE_SECONDS = 0.5
BLINK_SECONDS = 0.3


class SessionError(RtSmileError, ValueError):
    """A bad session request or control value (class, modes, mode, intensity, capacity)."""


@dataclass(frozen=True)
class PreparedFace:
    """Everything per photo that the engine reuses every frame."""

    crop: FaceCrop
    prior: FacePrior
    #: (468, 2) neutral landmarks in the aligned (IOD) frame: the generator's condition.
    neutral_aligned: Array
    #: (2, 2) aligned-frame displacement → crop-pixel displacement.
    aligned_to_crop: Array
    #: (468, 2) crop-pixel displacement of a full blink (both eyes).
    blink: Array
    #: The head's yaw undone in the aligned frame, degrees (``FaceFrame.yaw_deg``).
    yaw_deg: float = 0.0

    @property
    def warnings(self) -> list[str]:
        """What the user should know about this photo (a face turned from the camera)."""
        message = turned_message(self.yaw_deg)
        return [] if message is None else [message]

    @property
    def neutral(self) -> Array:
        return self.crop.landmarks[:NUM_LANDMARKS]

    @property
    def iod(self) -> float:
        return float(np.linalg.norm(self.neutral[33] - self.neutral[263]))


def prepare_photo(
    rgb: NDArray[np.uint8],
    size: int,
    detector: LandmarkDetector | None = None,
    config: DetectorConfig = DetectorConfig(),
) -> PreparedFace:
    """Detect the face of ``rgb`` and precompute its crop, warp basis and idle fields."""
    own = detector is None
    det = make_detector(config) if detector is None else detector
    try:
        face = detect_face(rgb, config, det)
    finally:
        if own:
            det.close()
    return prepare_landmarks(rgb, face, size)


def prepare_landmarks(rgb: NDArray[np.uint8], face: FaceLandmarks, size: int) -> PreparedFace:
    """``prepare_photo`` from landmarks already found (no detector needed)."""
    crop = crop_face(rgb, face, CropConfig(size=size))
    frame = frame_of(face)
    warn_if_turned(frame.yaw_deg)
    linear = crop.to_crop.matrix[:, :2] @ frame.to_image
    blink = ExpressionBasis.for_aligned(frame.aligned).displacement({"AU45": 1.0}) @ linear.T
    prior = prepare_face(crop.image, crop.landmarks)
    return PreparedFace(crop, prior, frame.aligned, linear, blink, frame.yaw_deg)


@dataclass
class Episode:
    """One smile episode of a session: its generator state and progress."""

    smile_class: str
    length: int
    noise: torch.Tensor  # (groups, length, noise_dim): the conditional LSTM's noise, one row per frame
    state: GeneratorState
    frame: int = 0


@dataclass
class _Motion:
    """Smooth idle head motion: a sum of two slow sinusoids per axis (roll, x, y)."""

    freq: Array  # (3, 2) Hz
    phase: Array  # (3, 2)

    @classmethod
    def random(cls, rng: np.random.Generator) -> _Motion:
        return cls(rng.uniform(0.05, 0.25, (3, 2)), rng.uniform(0, 2 * np.pi, (3, 2)))

    def at(self, seconds: float) -> Array:
        """(3,) in -1..1: roll, shift x, shift y."""
        w = np.sin(2 * np.pi * self.freq * seconds + self.phase) @ np.array([1.0, 0.5])
        return w / 1.5


@dataclass
class FaceSession:
    """One live face: K modes of one photo with their own schedule and recurrent state."""

    id: str
    face: PreparedFace
    modes: int
    smile_class: str
    config: EngineConfig
    rng: np.random.Generator
    intensity: float = 1.0
    featured: int = 0
    frame: int = 0
    episode: Episode | None = None
    pending: str | None = None
    next_auto: int = 0
    next_blink: int = 0
    blink_start: int = -1000
    motion: _Motion = field(default_factory=lambda: _Motion.random(np.random.default_rng(0)))
    #: Where the generator's motion is made and how it reaches this face (None: on the face).
    face_motion: FaceMotion | None = None
    #: (K, 468, 2) crop-pixel target landmarks of the latest frame (for stats and tests).
    last_targets: Array | None = None
    _pending_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ---------------------------------------------------------------- control (any thread)
    def trigger(self, smile_class: str | None = None) -> None:
        """Start a smile episode at the next frame (of ``smile_class``, which also becomes the
        session's class)."""
        if smile_class is not None:
            self.set_class(smile_class)
        with self._pending_lock:
            self.pending = self.smile_class

    def set_class(self, smile_class: str) -> None:
        if smile_class not in CLASSES:
            raise SessionError(f"unknown smile class {smile_class!r}; choose {' or '.join(CLASSES)}")
        self.smile_class = smile_class

    def set_mode(self, mode: int) -> None:
        """Feature mode ``mode``: track j shows mode (mode + j) mod K."""
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode < self.modes:
            raise SessionError(f"mode must be an integer within 0..{self.modes - 1}, got {mode!r}")
        self.featured = mode

    def set_intensity(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.5:
            raise SessionError(f"intensity must be a number within 0..1.5, got {value!r}")
        self.intensity = float(value)

    def mode_for_track(self, track: int) -> int:
        return (self.featured + track) % self.modes

    # ---------------------------------------------------------------- schedule (engine thread)
    def _seconds(self, mean: float) -> int:
        return max(1, round(self.rng.uniform(0.6, 1.4) * mean * self.config.fps))

    def due_class(self) -> str | None:
        """The class of an episode to start at this frame, if any. A smile asked for during an
        episode first fades the running one out (over FADE_SECONDS), then starts: no jump."""
        if self.pending is not None and self.episode is not None:
            ep = self.episode
            ep.length = min(ep.length, ep.frame + round(FADE_SECONDS * self.config.fps))
            return None
        with self._pending_lock:
            cls, self.pending = self.pending, None
        if cls is not None:
            return cls
        auto = self.config.episode_every > 0 and self.episode is None and self.frame >= self.next_auto
        return self.smile_class if auto else None

    def end_episode(self) -> None:
        self.episode = None
        if self.config.episode_every > 0:
            self.next_auto = self.frame + self._seconds(self.config.episode_every)

    def idle_offsets(self) -> tuple[Array, Array]:
        """This frame's blink displacement (468, 2) and head similarity (2, 3), crop pixels."""
        fps = self.config.fps
        if self.frame >= self.next_blink:
            self.blink_start = self.frame
            self.next_blink = self.frame + self._seconds(self.config.blink_every)
        u = (self.frame - self.blink_start) / (BLINK_SECONDS * fps)
        closure = min(1.0, 1.6 * math.sin(math.pi * u)) if 0.0 <= u <= 1.0 else 0.0
        roll, sx, sy = self.motion.at(self.frame / fps)
        a = np.deg2rad(roll * self.config.head_roll_deg)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        centre = self.face.neutral.mean(0)
        shift = np.array([sx, sy]) * self.config.head_shift_iod * self.face.iod
        head = np.hstack([rot, (centre - rot @ centre + shift)[:, None]])
        return closure * self.face.blink, head

    def envelope(self) -> float:
        """Weight of the smile displacement: 1, fading to 0 over the episode's last frames."""
        if self.episode is None:
            return 0.0
        left = self.episode.length - self.episode.frame
        u = min(1.0, left / max(1.0, FADE_SECONDS * self.config.fps))
        return self.intensity * u * u * (3 - 2 * u)


def _photo_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    """A prior tensor (the image with its batch axis of 1, the others without) as ``rows`` rows."""
    one = t if t.dim() == 4 else t[None]
    return one.expand(rows, *one.shape[1:])


class SmileEngine:
    """Loads the models once; serves many ``FaceSession``s; ``step()`` renders every mode of
    every session as one batch."""

    def __init__(
        self, model: CMMNet, config: EngineConfig = EngineConfig(), backend: StepBackend | None = None
    ) -> None:
        """``backend`` runs the generator step, the VAE decode and the translator (default: torch
        on the CPU); episodes start with ``model`` itself (once per smile, not per frame)."""
        self.model = model.eval()
        self.config = config
        if backend is None:
            from rt_smile.runtime.backends.torch_backend import TorchBackend

            backend = TorchBackend(model, config.size, torch.device("cpu"), cuda_graphs=False)
        self.backend = backend
        self.sessions: dict[str, FaceSession] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._seed = np.random.SeedSequence(config.seed)
        self._batch: tuple[tuple[tuple[str, int], ...], tuple[torch.Tensor, ...]] | None = None

    @classmethod
    def load(
        cls, weights: str | None = None, config: EngineConfig = EngineConfig(), backend: str = "torch"
    ) -> SmileEngine:
        """An engine with the shipped weights (or ``weights``) on the named backend ("auto", "torch",
        "onnxruntime", "hybrid", "tensorrt"; see ``rt_smile.runtime.backends``)."""
        from rt_smile.io.checkpoint import load_cmmnet
        from rt_smile.runtime.backends import BackendOptions, make_backend

        model = load_cmmnet(weights)
        options = BackendOptions(size=config.size, weights=None if weights is None else Path(weights))
        return cls(model, config, make_backend(backend, model, options))

    # ---------------------------------------------------------------- sessions
    def open_session(
        self, face: PreparedFace, smile_class: str = "spontaneous", modes: int = 4
    ) -> FaceSession:
        """A new live face; raises SessionError on a bad request or when the engine is full."""
        if smile_class not in CLASSES:
            raise SessionError(f"unknown smile class {smile_class!r}; choose {' or '.join(CLASSES)}")
        if isinstance(modes, bool) or not isinstance(modes, int) or not 1 <= modes <= self.config.max_modes:
            raise SessionError(f"modes must be an integer within 1..{self.config.max_modes}, got {modes!r}")
        if face.crop.image.shape[0] != self.config.size:
            raise SessionError(
                f"face prepared at {face.crop.image.shape[0]}², engine renders {self.config.size}²"
            )
        rng = np.random.default_rng(self._seed.spawn(1)[0])
        face_motion = FaceMotion.for_face(self.model, face.neutral_aligned)  # outside the lock
        with self._lock:
            if len(self.sessions) >= self.config.max_sessions:
                raise SessionError(f"too many sessions (at most {self.config.max_sessions})")
            sid = f"s{next(self._ids)}"
            session = FaceSession(
                sid, face, modes, smile_class, self.config, rng,
                motion=_Motion.random(rng), face_motion=face_motion,
            )  # fmt: skip
            session.next_auto = round(self.config.fps * 0.5)
            session.next_blink = session._seconds(self.config.blink_every)
            self.sessions[sid] = session
        return session

    def close_session(self, sid: str) -> None:
        with self._lock:
            self.sessions.pop(sid, None)

    # ---------------------------------------------------------------- per frame
    def _start_episodes(self, sessions: list[FaceSession]) -> None:
        for s in sessions:
            cls = s.due_class()
            if cls is None:
                continue
            groups = groups_for(s.modes, self.model.modes)
            start = s.face.neutral_aligned if s.face_motion is None else s.face_motion.start
            neutral = torch.from_numpy(start).float()[None].expand(groups, -1, -1)
            label = torch.full((groups,), CLASSES.index(cls), dtype=torch.long)
            gen = torch.Generator().manual_seed(int(s.rng.integers(2**31)))
            length = round(EPISODE_SECONDS[cls] * self.config.fps)
            noise, mode_noise = self.model.sample_noise(groups, length, generator=gen)
            s.episode = Episode(cls, length, noise, self.model.start(neutral, label, mode_noise))

    def _smile_offsets(self, sessions: list[FaceSession]) -> dict[str, Array]:
        """(K, 468, 2) crop-pixel smile displacement of each session in an episode."""
        active = [s for s in sessions if s.episode is not None]
        if not active:
            return {}
        eps = [s.episode for s in active if s.episode is not None]
        sizes = [e.noise.shape[0] for e in eps]
        labels = torch.cat(
            [torch.full((n,), CLASSES.index(e.smile_class)) for n, e in zip(sizes, eps, strict=True)]
        )
        noise = torch.cat([e.noise[:, min(e.frame, e.length - 1)] for e in eps])
        disp, state = self._generator_step(labels, noise, stack_states([e.state for e in eps]))
        out: dict[str, Array] = {}
        row = 0
        for s, e, n, st in zip(active, eps, sizes, unstack_states(state, sizes), strict=True):
            d = disp[row : row + n].flatten(0, 1)[: s.modes].double().numpy()  # (K, 468, 2) aligned
            if s.face_motion is not None:
                d = s.face_motion.displacement(d)
            out[s.id] = s.envelope() * (d @ s.face.aligned_to_crop.T)
            e.state, e.frame, row = st, e.frame + 1, row + n
        return out

    def _generator_step(
        self, labels: torch.Tensor, noise: torch.Tensor, state: GeneratorState
    ) -> tuple[torch.Tensor, GeneratorState]:
        """``CMMNet.step`` on the backend: (B, K, 468, 2) displacement (aligned frame), next state.
        States stay on the CPU (a few kB) so sessions stack and split cheaply."""
        dev = self.backend.device
        args = [t.to(dev) for t in (labels, noise, state.z, *state.conditional, *state.multimode)]
        z_modes, z, ch, cc, mh, mc = (t.cpu() for t in self.backend.generator(*args))
        decoded = self.backend.vae_decode(z_modes.flatten(0, 1).to(dev)).cpu()
        disp = decoded.reshape(*z_modes.shape[:2], -1, 2) - state.neutral_decoded[:, None]
        mm = (mh, mc, state.multimode[2])
        return disp, GeneratorState(z, (ch, cc), mm, state.z0, state.neutral_decoded)

    def _targets(self, s: FaceSession, smile: Array | None) -> Array:
        blink, head = s.idle_offsets()
        pts = s.face.neutral[None] + blink[None] + (0.0 if smile is None else smile)
        pts = np.broadcast_to(pts, (s.modes, NUM_LANDMARKS, 2))
        s.last_targets = pts @ head[:, :2].T + head[:, 2]
        return s.last_targets

    def _batched_prior(self, sessions: list[FaceSession]) -> tuple[torch.Tensor, ...]:
        """The translator's per-photo inputs (image, flow_basis, neutral, palette): one row per
        session when every session has the same K (each photo read once per step), else one
        row per frame."""
        key = tuple((s.id, s.modes) for s in sessions)
        if self._batch is None or self._batch[0] != key:
            same_k = len({s.modes for s in sessions}) == 1
            tensors = tuple(
                torch.cat(
                    [_photo_rows(getattr(s.face.prior, name), 1 if same_k else s.modes) for s in sessions]
                ).to(self.backend.device)
                for name in ("image", "flow_basis", "neutral", "palette")
            )
            self._batch = (key, tensors)
        return self._batch[1]

    @torch.inference_mode()
    def step(self) -> dict[str, NDArray[np.uint8]]:
        """Advance every session by one frame: {session id: (K, S, S, 3) RGB uint8}."""
        with self._lock:
            sessions = list(self.sessions.values())
        if not sessions:
            return {}
        self._start_episodes(sessions)
        smile = self._smile_offsets(sessions)
        targets = np.concatenate([self._targets(s, smile.get(s.id)) for s in sessions])
        image, basis, neutral, palette = self._batched_prior(sessions)
        target = torch.from_numpy(targets).float().to(self.backend.device)
        frames = self.backend.translator(image, basis, neutral, target, palette)
        rgb = (frames.permute(0, 2, 3, 1) * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
        out, row = {}, 0
        for s in sessions:
            out[s.id], row = rgb[row : row + s.modes], row + s.modes
            s.frame += 1
            if s.episode is not None and s.episode.frame >= s.episode.length:
                s.end_episode()
        return out
