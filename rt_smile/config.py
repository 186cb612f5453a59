"""Frozen configuration dataclasses, one per stage; every field is documented here, once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FaceChoice = Literal["single", "largest"]


@dataclass(frozen=True)
class DetectorConfig:
    """Face-landmark detection."""

    #: Use MediaPipe's attention model, which refines the lips, eyes and irises (it tracks
    #: eye closure and mouth opening much better).
    refine_landmarks: bool = True
    #: Also return the 10 iris points (478 instead of 468 landmarks); needs refine_landmarks.
    iris: bool = False
    #: How many faces the detector looks for before choosing one.
    max_faces: int = 4
    #: "single": several faces is an error; "largest": take the face with the largest IOD.
    face: FaceChoice = "single"
    #: Faces with an inter-ocular distance (outer eye corners) under this many pixels are refused.
    min_iod_px: float = 24.0
    #: Minimum face-detection confidence of the detector.
    min_detection_confidence: float = 0.5
    #: Optional path to a MediaPipe Tasks ``face_landmarker.task`` model; None uses the
    #: face mesh bundled with mediapipe 0.10.21.
    task_model: str | None = None


@dataclass(frozen=True)
class CropConfig:
    """The square, aligned face crop that the translator animates."""

    #: Side of the crop in pixels (256 or 512; upscaling allowed).
    size: int = 256
    #: Side of the crop in inter-ocular distances.
    span_iod: float = 3.0
    #: Vertical offset of the crop centre below the eye midpoint, in inter-ocular distances.
    center_below_eyes_iod: float = 0.4
    #: Width of the feathered border used when pasting the crop back, as a fraction of its side.
    feather: float = 0.08


@dataclass(frozen=True)
class TranslatorConfig:
    """Landmark-to-face translator (dense warp + mouth-interior compositor)."""

    #: Side of the coarse grid on which the flow is interpolated (then upsampled).
    grid: int = 64
    #: Damped Newton iterations on the coarse grid that invert the forward flow.
    iterations: int = 4
    #: Damped Newton iterations at full resolution after upsampling the coarse backward map.
    refine_iterations: int = 2
    #: Thin-plate spline smoothing (regularisation, in squared canonical units).
    smoothing: float = 1e-6
    #: Ring of zero-flow anchors at this fraction of the crop side from its border.
    border_margin: float = 0.02
    #: Softness of the mouth-interior mask edge, in pixels at 256² (scaled with size).
    mouth_edge_px: float = 1.0
    #: Height of the visible teeth band, as a fraction of the inter-ocular distance.
    teeth_height_iod: float = 0.11
    #: Height of the lower teeth shown once the mouth opens well beyond the upper teeth, as a
    #: fraction of the upper teeth band.
    lower_teeth_share: float = 0.4


@dataclass(frozen=True)
class EngineConfig:
    """How the real-time engine renders and animates (``rt_smile.runtime.engine``)."""

    #: Side of the rendered face crop in pixels (256 or 512).
    size: int = 256
    #: Frames per second of every stream.
    fps: float = 30.0
    #: Live faces at once; one more is refused (the server answers 503).
    max_sessions: int = 4
    #: Most modes (tiles) per face.
    max_modes: int = 8
    #: Mean seconds between automatic smile episodes (0: only on demand).
    episode_every: float = 6.0
    #: Mean seconds between idle blinks.
    blink_every: float = 4.0
    #: Amplitude of the idle head motion: roll (degrees) and shift (IOD).
    head_roll_deg: float = 1.2
    head_shift_iod: float = 0.02
    #: Seed of the episode, blink and head-motion schedules and of the generator's noise.
    seed: int = 0


@dataclass(frozen=True)
class ServerConfig:
    """What ``rt-smile serve`` exposes and its limits (``rt_smile.stream.server``)."""

    #: Address and port to bind (anything but loopback needs ``token`` or ``insecure``).
    host: str = "127.0.0.1"
    port: int = 8080
    #: Bearer token required on /api/* (needed to bind anything but loopback, unless insecure).
    token: str | None = None
    #: Bind a non-loopback address without a token (the operator's explicit choice).
    insecure: bool = False
    #: STUN/TURN servers for the server's peers and the page: (url, username, credential).
    ice_servers: tuple[tuple[str, str | None, str | None], ...] = ()
    #: Largest upload accepted (413 above it).
    max_upload_bytes: int = 8 * 1024 * 1024
    #: Largest photo accepted, in pixels, checked before decoding (413 above it).
    max_pixels: int = 40_000_000
    #: Uploaded faces kept (least recently used dropped first).
    max_faces: int = 32
    #: Most modes (video tracks) one offer may ask for.
    max_modes: int = 4
    #: Seconds a peer may stay unconnected (never connected, or dropped) before it is closed.
    idle_timeout: float = 30.0
    #: Retry-After (seconds) sent with a 503 when every session is taken.
    retry_after_s: int = 10
