"""Similarity alignment to MediaPipe's canonical face, the aligned square crop, and paste-back."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from numpy.typing import NDArray

from rt_smile.config import CropConfig
from rt_smile.face.landmarks import FaceLandmarks
from rt_smile.face.topology import LEFT_EYE_OUTER, NUM_LANDMARKS, RIGHT_EYE_OUTER, STABLE, canonical_vertices

Points = NDArray[np.float64]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Similarity:
    """x' = s·R·x + t as a 2×3 matrix (rotation, uniform scale, translation; no reflection)."""

    matrix: NDArray[np.float64]

    @property
    def scale(self) -> float:
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    def apply(self, points: Points) -> Points:
        """Map (..., 2) points."""
        return np.asarray(points, np.float64) @ self.matrix[:, :2].T + self.matrix[:, 2]

    def inverse(self) -> Similarity:
        a_inv = np.linalg.inv(self.matrix[:, :2])
        return Similarity(np.hstack([a_inv, -(a_inv @ self.matrix[:, 2])[:, None]]))

    def then(self, other: Similarity) -> Similarity:
        """The transform that applies ``self`` first, then ``other``."""
        a = other.matrix[:, :2] @ self.matrix[:, :2]
        t = other.matrix[:, :2] @ self.matrix[:, 2] + other.matrix[:, 2]
        return Similarity(np.hstack([a, t[:, None]]))


def fit_similarity(src: Points, dst: Points) -> Similarity:
    """Least-squares similarity mapping ``src`` (N, 2) onto ``dst`` (N, 2) (Umeyama, 1991)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ d @ vt
    scale = float(np.trace(np.diag(sig) @ d) / xs.var(0).sum())
    t = mu_d - scale * rot @ mu_s
    return Similarity(np.hstack([scale * rot, t[:, None]]))


@lru_cache(maxsize=1)
def _template() -> Points:
    v = canonical_vertices()[:, :2] * np.array([1.0, -1.0])
    mid = (v[RIGHT_EYE_OUTER] + v[LEFT_EYE_OUTER]) / 2
    iod = float(np.linalg.norm(v[RIGHT_EYE_OUTER] - v[LEFT_EYE_OUTER]))
    return (v - mid) / iod


def canonical_template() -> Points:
    """The canonical neutral face in 2-D: (468, 2), IOD units, eye midpoint at 0, y down."""
    return _template().copy()


def align_to_canonical(points: Points) -> Similarity:
    """Similarity from image pixels to the canonical frame, fitted on the stable points."""
    idx = list(STABLE)
    return fit_similarity(np.asarray(points)[idx], _template()[idx])


@dataclass(frozen=True)
class FaceFrame:
    """A face's landmarks in the aligned frame with its head's yaw undone (``face_frame``), and
    the linear map of aligned-frame displacements back into the frame the landmarks came in."""

    #: (N, 2) landmarks, aligned frame (IOD units), as the face would be turned to the camera.
    aligned: Points
    #: (2, 2) aligned-frame displacement → displacement in the landmarks' own frame.
    to_image: NDArray[np.float64]
    #: The head's yaw that was undone, degrees (0 without depth).
    yaw_deg: float


#: Under this spread of depth (IOD) the landmarks are taken as flat: no depth to turn them by.
_FLAT_DEPTH_IOD = 1e-3
#: The most yaw undone (radians); MediaPipe's mesh itself is unreliable beyond about this.
_MAX_YAW = np.deg2rad(60.0)


def face_frame(points: Points, depth: NDArray[np.float64] | None = None) -> FaceFrame:
    """The aligned frame of a face, its head turned to the camera about the vertical axis.

    The 2-D alignment (``align_to_canonical``) takes out position, scale and roll; a face
    turned sideways still has its far half foreshortened there, so expression fields built on
    it are misplaced, and the same displacement, mapped back by that similarity, moves a turned
    face's points as far across the image as up and down. With MediaPipe's depth (pixels, as
    ``FaceLandmarks.depth``), the head's yaw is fitted on the stable points against the
    canonical model's, undone before aligning, and put back on the way out: displacements across
    the face shrink by its cosine in the image, as a turned face's do. Without depth (or with a
    flat or non-finite one) this is the 2-D alignment. The 2-D fit of a turned face reads a
    degree or two of false roll (the stable points' depth correlates with their height), so the
    roll, the yaw and the pitch are fitted together in 3-D (``_roll_and_yaw``) and the roll is
    taken out before the yaw is undone.
    Pitch is left alone: undoing it as well cost some faces their parted lips (docs)."""
    pts = np.asarray(points, np.float64)
    upright = align_to_canonical(pts)
    z = None if depth is None else np.asarray(depth, np.float64)[: len(pts)] * upright.scale
    if z is None or not np.isfinite(z).all() or np.ptp(z) < _FLAT_DEPTH_IOD:
        return FaceFrame(upright.apply(pts), upright.inverse().matrix[:, :2], 0.0)
    upright_pts = upright.apply(pts)
    roll, yaw = _roll_and_yaw(np.column_stack([upright_pts, z]))
    yaw = float(np.clip(yaw, -_MAX_YAW, _MAX_YAW))
    level = _rotation(-roll)
    c, s = np.cos(yaw), np.sin(yaw)
    levelled = upright_pts @ level.T
    # rotate by −yaw about the vertical axis (x' = c·x − s·z); y is unchanged
    front = np.column_stack([c * levelled[:, 0] - s * z, levelled[:, 1]])
    to_front = align_to_canonical(front)
    # aligned → frontal → turned back (x shrinks by cos yaw) → unlevelled → upright 2-D → image
    back = upright.inverse().matrix[:, :2] @ level.T @ np.diag([c, 1.0]) @ to_front.inverse().matrix[:, :2]
    return FaceFrame(to_front.apply(front), back, float(np.degrees(yaw)))


#: Beyond this yaw (degrees) a face is not near-frontal, as the closed-loop survey splits its
#: photos (docs/translator.md, unseen photos): of its six turned by 19–33°, one passed every
#: check. ``warn_if_turned`` says so.
TURNED_FACE_DEG = 15.0


def turned_message(yaw_deg: float) -> str | None:
    """What to tell the user of a face turned more than ``TURNED_FACE_DEG`` from the camera (its
    ``FaceFrame.yaw_deg``); None for a face within it."""
    if abs(yaw_deg) <= TURNED_FACE_DEG:
        return None
    return (
        f"the face is turned {abs(yaw_deg):.0f}° from the camera; expressions are rendered most "
        f"faithfully on faces within about {TURNED_FACE_DEG:.0f}° of frontal "
        "(docs/translator.md, known gaps: turned faces)"
    )


def warn_if_turned(yaw_deg: float) -> bool:
    """Log ``turned_message`` as a warning where there is one; returns whether there was. The
    face is animated all the same."""
    message = turned_message(yaw_deg)
    if message is not None:
        logger.warning("%s", message)
    return message is not None


def frame_of(face: FaceLandmarks) -> FaceFrame:
    """``face_frame`` of a detected face: its 468 mesh points with their depth."""
    return face_frame(face.points[:NUM_LANDMARKS], face.depth[:NUM_LANDMARKS])


def _rotation(angle: float) -> NDArray[np.float64]:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _roll_and_yaw(xyz: Points) -> tuple[float, float]:
    """Roll and yaw (radians) of upright landmarks (N, 3: aligned x, y and depth away from the
    viewer): the rotation that best turns the canonical model's stable points onto theirs
    (3-D, least squares), split as roll · yaw · pitch (about the view axis, then the vertical,
    then the horizontal one). Fitting all three together keeps a head that is tilted up or down
    from reading as rolled."""
    idx = list(STABLE)
    model = canonical_vertices()[idx] * np.array([1.0, -1.0, -1.0])  # y down, z away from the viewer
    a, b = model - model.mean(0), xyz[idx] - xyz[idx].mean(0)
    u, _, vt = np.linalg.svd(b.T @ a)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    r = u @ d @ vt  # b ≈ s · r @ a
    yaw = float(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
    roll = float(np.arctan2(r[1, 0], r[0, 0]))
    return roll, yaw


def align_frames(points: Points) -> Points:
    """(T, N, 2) frames → the aligned canonical frame, each frame on its own stable points.

    ``align_to_canonical(p).apply(p)`` for every frame, batched over the frames (the same
    arithmetic in the same order, so the same numbers to the last bit)."""
    pts = np.asarray(points, np.float64)
    idx = list(STABLE)
    src, dst = pts[:, idx], _template()[idx]
    mu_s, mu_d = src.mean(1), dst.mean(0)  # (T, 2), (2,)
    xs, xd = src - mu_s[:, None], dst - mu_d
    u, sig, vt = np.linalg.svd(xd.T @ xs / src.shape[1])  # per frame: (2, 2) cross-covariance
    sign = np.sign(np.linalg.det(u @ vt))
    d = _batched_diag(np.ones_like(sign), np.where(sign == 0, 1.0, sign))  # no reflection
    rot = u @ d @ vt
    scale = np.trace(_batched_diag(sig[:, 0], sig[:, 1]) @ d, axis1=1, axis2=2) / xs.var(1).sum(-1)
    a = scale[:, None, None] * rot  # (T, 2, 2)
    t = mu_d - (a @ mu_s[..., None])[..., 0]
    return np.asarray(pts @ a.transpose(0, 2, 1) + t[:, None])


def _batched_diag(first: NDArray[np.float64], second: NDArray[np.float64]) -> NDArray[np.float64]:
    """(T,) and (T,) → (T, 2, 2) diagonal matrices."""
    out = np.zeros((len(first), 2, 2))
    out[:, 0, 0], out[:, 1, 1] = first, second
    return out


def canonical_to_crop(config: CropConfig) -> Similarity:
    """Canonical frame (IOD units) → crop pixels of a ``config.size`` square."""
    s = config.size / config.span_iod
    t = np.array([config.size / 2, config.size / 2 - s * config.center_below_eyes_iod])
    return Similarity(np.array([[s, 0.0, t[0]], [0.0, s, t[1]]]))


@dataclass(frozen=True)
class FaceCrop:
    """An aligned square face crop and how it maps to the photo."""

    #: (S, S, 3) RGB uint8.
    image: NDArray[np.uint8]
    #: (N, 2) landmarks in crop pixels.
    landmarks: Points
    #: Photo pixels → crop pixels.
    to_crop: Similarity
    #: (width, height) of the photo.
    photo_size: tuple[int, int]
    #: (N,) MediaPipe's relative depth of the landmarks, in crop pixels (see ``face_frame``).
    depth: NDArray[np.float64]

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    @property
    def iod(self) -> float:
        return float(np.linalg.norm(self.landmarks[RIGHT_EYE_OUTER] - self.landmarks[LEFT_EYE_OUTER]))


def _prefilter(rgb: NDArray[np.uint8], transform: Similarity) -> tuple[NDArray[np.uint8], Similarity]:
    """Halve the photo while the crop would shrink it by more than 2× (anti-aliasing)."""
    img = rgb
    while transform.scale < 0.5 and min(img.shape[:2]) > 2:
        img = np.asarray(cv2.pyrDown(img), dtype=np.uint8)
        half = Similarity(np.array([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5]]))
        transform = half.then(transform)
    return img, transform


#: Off the photo, its edge continues this far (crop pixels at 256², blurred) before the fill.
_EDGE_REACH_PX = 6.0


def _photo_cover(to_crop: Similarity, shape: tuple[int, ...], points: Points) -> NDArray[np.float32]:
    """How much of the crop pixel at each of ``points`` (crop pixels, (..., 2)) lies on the
    photo of ``shape``: 1 inside, 0 off it, a one-crop-pixel ramp across its edges."""
    x, y = np.moveaxis(to_crop.inverse().apply(points), -1, 0)
    h, w = shape[0], shape[1]
    inside = np.minimum(np.minimum(x + 0.5, w - 0.5 - x), np.minimum(y + 0.5, h - 0.5 - y))
    return np.asarray(np.clip(inside * to_crop.scale + 0.5, 0.0, 1.0), dtype=np.float32)


def _push_pull(img: NDArray[np.float32], weight: NDArray[np.float32]) -> NDArray[np.float32]:
    """A smooth fill of ``img`` where ``weight`` is low: weighted means over a Gaussian
    pyramid, each level's gaps filled from the coarser one (push-pull)."""
    if min(weight.shape) <= 2:
        mean = (img * weight[..., None]).reshape(-1, 3).sum(0) / max(float(weight.sum()), 1e-6)
        return np.broadcast_to(mean, img.shape).astype(np.float32)
    w = np.asarray(cv2.pyrDown(weight), dtype=np.float32)
    mean = np.asarray(cv2.pyrDown(img * weight[..., None]), dtype=np.float32) / np.maximum(w, 1e-6)[..., None]
    coarse = _push_pull(mean, w)
    up = cv2.pyrUp(coarse, dstsize=(weight.shape[1], weight.shape[0]))
    a = np.clip(2.0 * weight, 0.0, 1.0)[..., None]
    return np.asarray(img * a + up * (1.0 - a), dtype=np.float32)


def _fill_outside(crop: NDArray[np.uint8], cover: NDArray[np.float32]) -> NDArray[np.uint8]:
    """The crop's pixels off the photo (``cover`` < 1): its edge continued a few pixels,
    blurred, fading into a smooth fill pulled from the photo's part (``_push_pull``); its
    pixels on the photo as they are."""
    rgb = crop.astype(np.float32)
    smooth = _push_pull(rgb, cover)
    off = (cover < 0.5).astype(np.uint8)
    reach = _EDGE_REACH_PX * crop.shape[0] / 256.0
    near = np.exp(-cv2.distanceTransform(off, cv2.DIST_L2, 5) / reach)[..., None]
    edge = cv2.GaussianBlur(rgb, (0, 0), reach / 2.0)
    outside = edge * near + smooth * (1.0 - near)
    c = cover[..., None]
    return np.asarray(np.clip(rgb * c + outside * (1.0 - c) + 0.5, 0, 255), dtype=np.uint8)


def _off_photo_filled(
    crop: NDArray[np.uint8], to_crop: Similarity, shape: tuple[int, ...]
) -> NDArray[np.uint8]:
    """``crop`` (resampled from a photo of ``shape`` by ``to_crop``) with its pixels off the
    photo filled (``_fill_outside``); as it is when its four corners lie on the photo (the
    photo is convex, so then the whole crop does)."""
    size = crop.shape[0]
    last = size - 1.0
    corners = np.array([[0.0, 0.0], [last, 0.0], [0.0, last], [last, last]])
    if _photo_cover(to_crop, shape, corners).min() >= 1.0:
        return crop
    pixels = np.stack(np.meshgrid(np.arange(size), np.arange(size)), -1).astype(np.float64)
    return _fill_outside(crop, _photo_cover(to_crop, shape, pixels))


def crop_face(rgb: NDArray[np.uint8], face: FaceLandmarks, config: CropConfig = CropConfig()) -> FaceCrop:
    """Resample the aligned square face crop (rotation removed, upscaling allowed)."""
    to_crop = align_to_canonical(face.points).then(canonical_to_crop(config))
    img, m = _prefilter(rgb, to_crop)
    crop_any = cv2.warpAffine(
        img,
        m.matrix,
        (config.size, config.size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    crop = _off_photo_filled(np.asarray(crop_any, dtype=np.uint8), m, img.shape[:2])
    h, w = rgb.shape[:2]
    return FaceCrop(crop, to_crop.apply(face.points), to_crop, (w, h), face.depth * to_crop.scale)


def _feather_mask(size: int, feather: float) -> NDArray[np.float32]:
    ramp = max(1.0, feather * size)
    d = np.minimum(np.arange(size), np.arange(size)[::-1]).astype(np.float32) + 0.5
    edge = np.clip(d / ramp, 0.0, 1.0)
    edge = edge * edge * (3 - 2 * edge)
    return np.minimum(edge[:, None], edge[None, :])


def paste_back(
    photo: NDArray[np.uint8], crop: FaceCrop, frame: NDArray[np.uint8], feather: float = 0.08
) -> NDArray[np.uint8]:
    """Blend an animated crop ``frame`` back into the full photo with a feathered border."""
    h, w = photo.shape[:2]
    inv = crop.to_crop.inverse().matrix
    size = (w, h)
    warped = cv2.warpAffine(frame, inv, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpAffine(_feather_mask(crop.size, feather), inv, size, flags=cv2.INTER_LINEAR)
    alpha = mask[:, :, None]
    out = photo.astype(np.float32) * (1 - alpha) + warped.astype(np.float32) * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
