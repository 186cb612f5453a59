"""Landmark-to-face translator: dense backward warp + mouth-interior compositor.

Per photo (``prepare_face``, NumPy, once): a thin-plate-spline basis that maps the N landmark
displacements to a forward flow on a coarse G×G grid, ``flow = M @ disp``. The spline is solved
in a "lifted" plane in which the lower half of the mouth is pushed away from the upper half,
so the flow may tear open along the lips (upper and lower lip move apart) while staying smooth
everywhere else. Ring anchors and a taper hold the flow at zero on the crop border.

Per frame (``Translator.forward``, torch, fixed shapes, batchable, ONNX/TensorRT friendly):
  1. forward flow on the coarse grid: one (G², N) × (N, 2) matrix product per frame;
  2. backward map x_src = x − d(x_src) by damped Newton steps on the coarse grid, upsampled;
     at the eye and mouth pixels, Newton steps at full resolution, whose Jacobian marks the
     torn (newly opened) area;
  3. ``grid_sample`` (4-D, bilinear) of the source crop;
  4. mouth interior: inside the target inner-lip contour, where the lips part wider than in the
     photo or the warp tore, what showed between the photo's lips carried with them at its size
     (one more ``grid_sample`` of the mouth pixels), then drawn teeth coloured from the photo
     and a shaded cavity, soft-blended.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn

from rt_smile.config import TranslatorConfig
from rt_smile.face import topology as topo

_MID_PAIRS = tuple(zip(topo.LIPS_INNER_UPPER, topo.LIPS_INNER_LOWER, strict=True))
#: Mouth region processed by the compositor, as fractions (x0, y0, x1, y1) of the crop side.
MOUTH_ROI = (0.3, 0.54, 0.7, 0.8)
#: Right-eye region (left half of the image) processed by the eyelid compositor, same
#: convention; the left eye's is its mirror image about the crop's vertical midline.
RIGHT_EYE_ROI = (0.27, 0.29, 0.5, 0.44)


@dataclass(frozen=True)
class FacePrior:
    """Per-photo tensors the translator needs (compute once with ``prepare_face``)."""

    #: (1, 3, S, S) source crop, float in [0, 1].
    image: Tensor
    #: (N, 2) neutral landmarks, crop pixels.
    neutral: Tensor
    #: (N, G*G) landmark displacement → coarse forward flow (pixels): flow = dispᵀ @ basis.
    flow_basis: Tensor
    #: (6, 3) rows: teeth and mouth-cavity colours in [0, 1]; closed-lid tone of the right and
    #: left eye (a gain on the skin under the eye, 0.5 to 2); lash-line colour; the share of
    #: the pixels between the photo's inner lips that is teeth or dark gap, not lip (all three
    #: columns alike; ``_interior_share``).
    palette: Tensor


def _mouth_lift(points: NDArray[np.float64], neutral: NDArray[np.float64], iod: float) -> NDArray[np.float64]:
    """Map points into the lifted plane: the lower side of the lip line moves down, the upper
    side up (by at most ``0.15 IOD``, fading with distance), only between the mouth corners."""
    right, left = neutral[78], neutral[308]
    axis = (left - right) / max(np.linalg.norm(left - right), 1e-6)
    normal = np.array([-axis[1], axis[0]])  # points down for an upright face
    width = max(float(np.linalg.norm(left - right)), 1e-6)
    mids = np.array([(neutral[u] + neutral[lo]) / 2 for u, lo in _MID_PAIRS])
    ms = (mids - right) @ axis / width
    mt = (mids - right) @ normal
    rel = points - right
    s = rel @ axis / width
    t = rel @ normal - np.interp(s, ms, mt)
    outside = np.clip(np.maximum(-s, s - 1.0) * width, 0.0, None)
    taper = np.exp(-outside / (0.05 * iod))
    delta, reach = 0.15 * iod, 0.3 * iod
    shift = np.sign(t) * delta * np.exp(-np.abs(t) / reach) * taper
    return points + shift[:, None] * normal[None, :]


def _tps_kernel(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    r2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return 0.5 * r2 * np.log(np.maximum(r2, 1e-20))


def _border_anchors(size: int, margin: float, per_side: int = 16) -> NDArray[np.float64]:
    lo, hi = margin * size, (1 - margin) * size
    t = np.linspace(lo, hi, per_side, endpoint=False)
    return np.concatenate(
        [
            np.stack([t, np.full_like(t, lo)], 1),
            np.stack([np.full_like(t, hi), t], 1),
            np.stack([t[::-1] + (hi - lo) / per_side, np.full_like(t, hi)], 1),
            np.stack([np.full_like(t, lo), t[::-1] + (hi - lo) / per_side], 1),
        ]
    )


def grid_points(size: int, grid: int) -> NDArray[np.float64]:
    """(G*G, 2) pixel coordinates of the coarse-grid cell centres (row-major, x then y)."""
    c = (np.arange(grid) + 0.5) * size / grid - 0.5
    gx, gy = np.meshgrid(c, c)
    return np.stack([gx.ravel(), gy.ravel()], 1)


def _border_taper(pts: NDArray[np.float64], size: int, margin: float) -> NDArray[np.float64]:
    d = np.minimum(pts, size - 1 - pts).min(1) / size
    x = np.clip((d - margin / 2) / (2 * margin), 0.0, 1.0)
    return x * x * (3 - 2 * x)


def tps_flow_basis(neutral: NDArray[np.float64], size: int, config: TranslatorConfig) -> NDArray[np.float64]:
    """(G*G, N) matrix: landmark displacements (N, 2) → forward flow at the coarse grid."""
    n = len(neutral)
    iod = float(np.linalg.norm(neutral[topo.RIGHT_EYE_OUTER] - neutral[topo.LEFT_EYE_OUTER]))
    anchors = _border_anchors(size, config.border_margin)
    ctrl = np.concatenate([neutral, anchors]) / size
    lifted = _mouth_lift(ctrl * size, neutral, iod) / size
    m = len(ctrl)
    k = _tps_kernel(lifted, lifted) + config.smoothing * np.eye(m)
    p = np.hstack([np.ones((m, 1)), lifted])
    system = np.block([[k, p], [p.T, np.zeros((3, 3))]])
    inv = np.linalg.pinv(system)[:, :n]  # only landmark columns: anchors carry zero flow
    g = grid_points(size, config.grid)
    g_lift = _mouth_lift(g, neutral, iod) / size
    eval_rows = np.hstack([_tps_kernel(g_lift, lifted), np.ones((len(g), 1)), g_lift])
    basis = eval_rows @ inv
    return basis * _border_taper(g, size, config.border_margin)[:, None]


def _polygon_mask(shape: tuple[int, int], poly: NDArray[np.float64]) -> NDArray[np.bool_]:
    import cv2

    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], (1,))
    return mask.astype(bool)


def _eye_polygon(
    lm: NDArray[np.float64], upper: tuple[int, ...], lower: tuple[int, ...]
) -> NDArray[np.float64]:
    return np.array([lm[i] for i in (*upper, *lower[::-1])])


def _band_pixels(
    rgb: NDArray[np.float64], hw: tuple[int, int], curve: NDArray[np.float64], near: float, far: float
) -> NDArray[np.float64]:
    """Pixels between ``curve`` shifted vertically by ``near`` and by ``far`` pixels."""
    shift = np.array([0.0, 1.0])
    band = np.concatenate([curve + shift * near, (curve + shift * far)[::-1]])
    return rgb[_polygon_mask(hw, band).ravel()]


def _under_eye(
    rgb: NDArray[np.float64], hw: tuple[int, int], lower_lid: NDArray[np.float64], iod: float
) -> NDArray[np.float64]:
    """The skin 0.08 to 0.2 IOD under an eye's lower lid (its points, pixels)."""
    return _band_pixels(rgb, hw, lower_lid, 0.08 * iod, 0.2 * iod)


_LUMA = np.array([0.299, 0.587, 0.114])


def _bright_half(px: NDArray[np.float64]) -> NDArray[np.float64]:
    lum = px @ _LUMA
    return px[lum >= np.median(lum)].mean(0)


def _lid_colors(
    rgb: NDArray[np.float64], hw: tuple[int, int], lm: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Closed-lid tone of each eye and the lash-line colour: rows right lid, left lid, lash. The
    closed lid is drawn from the skin under the eye (``Translator._lid_skin``); its tone is the
    gain (RGB) that brings that skin halfway to the lid skin just above the lashes: a lid under
    a shading brow stays in its shade."""
    iod = float(np.linalg.norm(lm[topo.RIGHT_EYE_OUTER] - lm[topo.LEFT_EYE_OUTER]))
    rows, margin = [], []
    for upper, lower in (
        (topo.RIGHT_EYE_UPPER, topo.RIGHT_EYE_LOWER),
        (topo.LEFT_EYE_UPPER, topo.LEFT_EYE_LOWER),
    ):
        up, lo = lm[list(upper)], lm[list(lower)]
        lid = _band_pixels(rgb, hw, up, -0.025 * iod, -0.06 * iod)
        cheek = _under_eye(rgb, hw, lo, iod)
        margin.append(_band_pixels(rgb, hw, up, 0.01 * iod, -0.02 * iod))
        if len(lid) > 4 and len(cheek) > 4:
            lid_c, cheek_c = _bright_half(lid), np.median(cheek, 0)
            rows.append(np.clip((0.5 * lid_c + 0.5 * cheek_c) / np.maximum(cheek_c, 1e-3), 0.5, 2.0))
        else:  # an eye at the crop's edge: the skin under it as it is
            rows.append(np.ones(3))
    lash_px = np.concatenate(margin)
    if len(lash_px) > 4:
        lum = lash_px @ np.array([0.299, 0.587, 0.114])
        lash_c = lash_px[lum <= np.quantile(lum, 0.2)].mean(0)
    else:
        lash_c = np.array([0.2, 0.15, 0.12])
    return np.stack([*rows, lash_c])


#: Colour of teeth when the photo shows neither teeth nor clear eye whites (its hue; its
#: brightness follows the photo's skin, ``_TEETH_OVER_SKIN``).
_ENAMEL = np.array([0.93, 0.9, 0.84])
_ENAMEL.setflags(write=False)
#: Teeth against the eye whites and against the skin under the eyes, in luminance: the brighter
#: half of the whitish pixels between real lips came out at 0.92-1.56 times the eye whites'
#: (median 1.13) and 0.87-1.45 times the median cheek skin's (median 1.2), on the photos and
#: video frames at hand that show teeth (docs/translator.md). The eye whites are the better
#: reference: like teeth, they are as light whatever the skin's tone.
_TEETH_OVER_WHITES = 1.13
_TEETH_OVER_SKIN = 1.2
#: Drawn teeth are never brighter than this (luminance).
_TEETH_MAX_LUMA = 0.92
#: Whitish pixels (in IOD²) from which the photo's own teeth colour is trusted fully; under a
#: sixth of that, not at all.
_WHITISH_AREA_IOD2 = 0.007


def _teeth_color(
    rgb: NDArray[np.float64], hw: tuple[int, int], lm: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Teeth colour. Where the photo shows teeth, their colour: the brighter half of the whitish
    pixels (saturation ≤ 0.3, not dark) in its mouth opening, mixed 4:1 with the drawn colour.
    Else (and pulled towards it the fewer of those there are; counted in IOD², so alike at 256²
    and 512²) drawn teeth lit as the face is: in the hue of the eye whites (mixed 4:1 with
    enamel's) and ``_TEETH_OVER_WHITES`` times as bright, or, for a photo with shaded or
    spectacled eyes, in enamel's hue and ``_TEETH_OVER_SKIN`` times as bright as the skin
    under the eyes, the two blended by how far the eye whites are trusted; not a white that
    glows in a dim photo."""
    iod = float(np.linalg.norm(lm[topo.RIGHT_EYE_OUTER] - lm[topo.LEFT_EYE_OUTER]))
    full = _WHITISH_AREA_IOD2 * iod * iod
    mouth = _whitish(rgb, _polygon_mask(hw, _eye_polygon(lm, topo.LIPS_INNER_UPPER, topo.LIPS_INNER_LOWER)))
    eyes = _whitish(
        rgb,
        _polygon_mask(hw, _eye_polygon(lm, topo.RIGHT_EYE_UPPER, topo.RIGHT_EYE_LOWER))
        | _polygon_mask(hw, _eye_polygon(lm, topo.LEFT_EYE_UPPER, topo.LEFT_EYE_LOWER)),
    )
    trust = _trust(len(eyes), full)
    whites = _bright_half(eyes) if trust > 0.0 else _ENAMEL
    hue = trust * (0.8 * whites + 0.2 * _ENAMEL) + (1.0 - trust) * _ENAMEL
    lit = trust * _TEETH_OVER_WHITES * float(whites @ _LUMA)
    lit += (1.0 - trust) * _TEETH_OVER_SKIN * _cheek_luma(rgb, hw, lm)
    drawn = hue * min(lit, _TEETH_MAX_LUMA) / float(hue @ _LUMA)
    return np.clip(_trusted_mean(mouth, full, drawn), 0.0, 1.0)


def _whitish(rgb: NDArray[np.float64], mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """The pixels of ``rgb`` (N, 3) under ``mask`` with saturation ≤ 0.3 and luminance ≥ 0.35."""
    cand = rgb[mask.ravel()]
    top = cand.max(1, initial=0.0)
    saturation = (top - cand.min(1, initial=1.0)) / np.maximum(top, 1e-3)
    return cand[(saturation <= 0.3) & (cand @ _LUMA >= 0.35)]


def _trust(count: int, full: float) -> float:
    """How far ``count`` whitish pixels are trusted: fully from ``full``, not under a sixth."""
    return float(np.clip((count - full / 6.0) / (full * 5.0 / 6.0), 0.0, 1.0))


def _trusted_mean(px: NDArray[np.float64], full: float, fallback: NDArray[np.float64]) -> NDArray[np.float64]:
    """The brighter half of ``px`` (``_bright_half``), mixed 4:1 with ``fallback``, trusted the
    more the more pixels there are (``_trust``)."""
    trust = _trust(len(px), full)
    if trust <= 0.0:
        return fallback
    return trust * (0.8 * _bright_half(px) + 0.2 * fallback) + (1.0 - trust) * fallback


def _cheek_luma(rgb: NDArray[np.float64], hw: tuple[int, int], lm: NDArray[np.float64]) -> float:
    """Median luminance of the skin under both eyes (0.08 to 0.2 IOD below the lower lids); a
    mid grey where none is in the crop."""
    iod = float(np.linalg.norm(lm[topo.RIGHT_EYE_OUTER] - lm[topo.LEFT_EYE_OUTER]))
    px = [_under_eye(rgb, hw, lm[list(lower)], iod) for lower in (topo.RIGHT_EYE_LOWER, topo.LEFT_EYE_LOWER)]
    cheek = np.concatenate(px)
    return float(np.median(cheek @ _LUMA)) if len(cheek) > 8 else 0.6


def _palette(image: NDArray[np.uint8], lm: NDArray[np.float64]) -> NDArray[np.float64]:
    """Colours taken from the photo: teeth from its own where it shows them, else lit as its eye
    whites or its skin are (``_teeth_color``); cavity from the lips, darkened; closed-lid tones
    and lash line from around the eyes (``_lid_colors``); and how much of its inner-lip gap is
    not lip (``_interior_share``)."""
    hw = (int(image.shape[0]), int(image.shape[1]))
    rgb = image.reshape(-1, 3).astype(np.float64) / 255.0
    teeth = _teeth_color(rgb, hw, lm)
    inner = _polygon_mask(hw, _eye_polygon(lm, topo.LIPS_INNER_UPPER, topo.LIPS_INNER_LOWER))
    lips = _polygon_mask(hw, _eye_polygon(lm, topo.LIPS_OUTER_UPPER, topo.LIPS_OUTER_LOWER)) & ~inner
    lip = rgb[lips.ravel()].mean(0) if lips.sum() > 8 else np.array([0.6, 0.3, 0.3])
    cavity = lip * np.array([0.32, 0.18, 0.18])
    share = _interior_share(rgb[inner.ravel()], float(lip @ _LUMA))
    return np.concatenate([np.stack([teeth, cavity]), _lid_colors(rgb, hw, lm), np.full((1, 3), share)])


def _interior_share(px: NDArray[np.float64], lip_lum: float) -> float:
    """Share of the pixels between the photo's inner lips that show the mouth's interior:
    brighter than the lips (teeth) or much darker (the cavity); the rest is lip, where
    MediaPipe's inner-lip points sit inside the lips of a smiling mouth. 1 where fewer than 8
    pixels lie between them (closed lips: nothing is carried then anyway)."""
    if len(px) < 8:
        return 1.0
    lum = px @ _LUMA
    return float(((lum > 1.15 * lip_lum) | (lum < 0.5 * lip_lum)).mean())


def prepare_face(
    image: NDArray[np.uint8], neutral: NDArray[np.float64], config: TranslatorConfig = TranslatorConfig()
) -> FacePrior:
    """Per-photo precomputation from an aligned square crop and its landmarks (crop pixels)."""
    size = image.shape[0]
    if image.shape[:2] != (size, size):
        raise ValueError(f"expected a square crop, got {image.shape[1]}x{image.shape[0]}")
    lm = np.asarray(neutral, np.float64)[: topo.NUM_LANDMARKS]
    return FacePrior(
        image=torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255.0),
        neutral=torch.from_numpy(lm).float(),
        flow_basis=torch.from_numpy(tps_flow_basis(lm, size, config).T.copy()).float(),
        palette=torch.from_numpy(_palette(image, lm)).float(),
    )


def _piecewise(s: Tensor, knots_s: Tensor, knots_v: Tensor) -> Tensor:
    """Piecewise-linear interpolation: s (B, P), knots_s (B, K) sorted, knots_v (B, K) or
    (B, K, C) → (B, P) or (B, P, C). The ramps are knot-major (B, K-1, P), so each op runs along
    the P contiguous values (along a trailing axis of K-1 it runs several times slower)."""
    v = knots_v if knots_v.dim() == 3 else knots_v[..., None]
    ds = (knots_s[:, 1:] - knots_s[:, :-1]).clamp_min(1e-4)  # (B, K-1)
    slope = (v[:, 1:] - v[:, :-1]) / ds[..., None]  # (B, K-1, C)
    ramp = (s[:, None, :] - knots_s[:, :-1, None]).clamp(min=0.0)
    ramp = torch.minimum(ramp, ds[..., None])  # (B, K-1, P)
    out = torch.matmul(slope.transpose(1, 2), ramp) + v[:, 0, :, None]  # (B, C, P)
    return out.transpose(1, 2) if knots_v.dim() == 3 else out[:, 0]


class _CurveFrame:
    """Coordinates along a feature (mouth, eye) from one corner (s = 0) to the other (s = 1),
    and t across it in pixels (positive downwards for an upright face)."""

    def __init__(self, start: Tensor, end: Tensor) -> None:
        self.origin = start  # (B, 2)
        self.length = (end - start).norm(dim=-1, keepdim=True).clamp_min(1.0)  # (B, 1)
        self.axis = (end - start) / self.length
        normal = torch.stack([-self.axis[:, 1], self.axis[:, 0]], -1)
        # keep the normal pointing down the image whichever corner comes first
        self.normal = torch.where(normal[:, 1:] < 0, -normal, normal)
        self._to_st = torch.stack([self.axis / self.length, self.normal], 1)  # (B, 2, 2): rows s, t

    def coords(self, p: Tensor) -> tuple[Tensor, Tensor]:
        """p (B, P, 2) → s, t (B, P): one matrix product, rows s and t each contiguous."""
        st = torch.matmul(self._to_st, (p - self.origin[:, None]).transpose(1, 2))  # (B, 2, P)
        return st[:, 0], st[:, 1]

    def curve(self, s: Tensor, points: Tensor) -> Tensor:
        """t of the polyline ``points`` (B, K, 2), ordered along the feature, at each s."""
        ks, kt = self.coords(points)
        return _piecewise(s, _running_max(ks), kt)


def _running_max(x: Tensor) -> Tensor:
    """(B, K) → (B, K), entry j the max of x[:, :j+1]: ``cummax`` when run eagerly; while
    exporting, a max under a lower-triangular mask (ONNX and TensorRT have no cumulative max)."""
    if not torch.onnx.is_in_onnx_export():
        return torch.cummax(x, 1).values
    k = x.shape[1]
    earlier = torch.ones(k, k, dtype=torch.bool, device=x.device).tril()  # [j, i]: i ≤ j
    return torch.where(earlier, x[:, None, :], torch.finfo(x.dtype).min).amax(-1)


def _with_the_head(neutral: Tensor, target: Tensor, stable: Tensor, points: Tensor) -> Tensor:
    """``points`` (R·B, K, 2), R features of the photo's landmarks stacked on the batch axis,
    carried by the head's motion: the similarity (least squares, closed form) that takes the
    photo's ``stable`` points (eye corners, nose bridge, forehead) of ``neutral`` (B, N, 2) onto
    the target's (B, N, 2). The idle head motion of a live session moves, turns and scales all
    the landmarks together; an expression moves the stable points little."""
    p, q = neutral[:, stable], target[:, stable]  # (B, M, 2)
    p_mean, q_mean = p.mean(1, keepdim=True), q.mean(1, keepdim=True)
    pc, qc = p - p_mean, q - q_mean
    norm = (pc * pc).sum((1, 2)).clamp_min(1e-6)
    cos = (pc * qc).sum((1, 2)) / norm  # scale·cos and scale·sin of the turn
    sin = (pc[..., 0] * qc[..., 1] - pc[..., 1] * qc[..., 0]).sum(1) / norm
    turn = torch.stack(
        [torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], 1
    )  # (B, 2, 2): row-vector form
    each = points.reshape(-1, neutral.shape[0], *points.shape[1:])  # (R, B, K, 2)
    return (torch.matmul(each - p_mean, turn) + q_mean).reshape(points.shape)


def _roi(size: int, box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (round(f * size) for f in box)
    return x0, y0, x1, y1


def _crop(frames: Tensor, roi: tuple[int, int, int, int], channels_last: bool = False) -> Tensor:
    """View of the ROI of (B, C, S, S) frames, or of (B, S, S, C) with ``channels_last``."""
    x0, y0, x1, y1 = roi
    h = 1 if channels_last else 2
    return frames.narrow(h, y0, y1 - y0).narrow(h + 1, x0, x1 - x0)


def _per_frame(t: Tensor, frames: int) -> Tensor:
    """(P, ...) per-photo values → (B, ...) per frame, frame p·K + k taking photo p's."""
    p = t.shape[0]
    return t[:, None].expand(p, frames // p, *t.shape[1:]).reshape(frames, *t.shape[1:])


def _grid(x: Tensor, y: Tensor) -> Tensor:
    """A ``grid_sample`` grid (B, h, w, 2) from its x and y planes (B, h, w): stacked on a
    leading axis and viewed channels-last (stacking on the last axis interleaves them, several
    times slower; ``grid_sample`` takes the strided view as it is)."""
    return torch.stack([x, y], 1).permute(0, 2, 3, 1)


def _static_int(n: int | Tensor) -> int:
    """A size as a Python int. While tracing, sizes are tensors; the graph is meant to be
    specialised to them (``TracedStage`` traces once per input shape), so the tracer's warning
    that the value becomes a constant is silenced (only then: the warning filters are global)."""
    if not isinstance(n, Tensor):
        return int(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
        return int(n)


def _in_halves(t: Tensor, count: int | Tensor, length: int) -> bool:
    """Whether the work on ``t`` is run as two halves (of its ``length``, even) stacked on the
    batch axis, so that a CPU kernel parallel over the batch uses two cores: on the CPU, for
    ``count`` 1 (one frame, one photo), not while exporting (whose graph keeps one op)."""
    return (
        t.device.type == "cpu"
        and not torch.onnx.is_in_onnx_export()
        and length % 2 == 0
        and _static_int(count) == 1
    )


def _basis_product(rows: Tensor, basis: Tensor) -> Tensor:
    """rows (P, M, N) @ basis (P, N, C) → (P, M, C). For one photo on the CPU, as two products
    over the basis's column halves on the batch axis (``_in_halves``): the BLAS runs a product
    of so few rows on one core (memory-bound: the basis is megabytes), ``bmm`` runs the halves
    on two; the same values."""
    c = _static_int(basis.shape[2])
    if not _in_halves(basis, basis.shape[0], c) or _static_int(rows.shape[0]) != 1:
        return torch.matmul(rows, basis)
    halves = basis[0].view(-1, 2, c // 2).transpose(0, 1)  # (2, N, C/2): a view
    return torch.matmul(rows[0], halves).transpose(0, 1).reshape(1, -1, c)


def _band(t: Tensor, top: Tensor, bottom: Tensor, edge: float) -> Tensor:
    """Soft indicator of top < t < bottom."""
    return torch.sigmoid((t - top) / edge) * torch.sigmoid((bottom - t) / edge)


def _between_corners(s: Tensor) -> Tensor:
    """1 where 0 < s < 1, else 0, as a float step (within 1e-6 of a corner, a ramp): a mask by
    comparisons and a boolean ``&`` runs several times slower than this arithmetic."""
    return (s * (1.0 - s) * 1e6).clamp(0.0, 1.0)


def _smoothstep(x: Tensor) -> Tensor:
    """0 below 0, 1 above 1, a smooth S in between."""
    x = x.clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


#: The closed lid's skin is the photo's skin from this far under the lower lid (IOD) ...
LID_SKIN_FROM_IOD = 0.08
#: ... and further down by this many source pixels per pixel above the lid line.
LID_SKIN_STRETCH = 0.3
#: Towards the eye corners, the lid (but for its lowest pixels) fades out over this share of
#: the eye's width at each end.
LID_END_FADE = 0.2

#: Apparent width of a drawn upper and lower central incisor at the middle of the mouth, IOD.
UPPER_INCISOR_IOD = 0.095
LOWER_INCISOR_IOD = 0.065
#: A drawn tooth's biting edge rises by this share of its width at each gap (rounded corners).
TOOTH_CORNER = 0.15
#: The tongue's colour: the cavity's (the lips', darkened) brightened by this gain (a dark red).
TONGUE_GAIN = 2.6


@dataclass(frozen=True)
class _Lips:
    """The mouth pixels (B, P, 2) along the mouth (s, 0 to 1 corner to corner) and across it
    (t, pixels), both (B, P); the target inner lips above and below each (top, bottom); the
    mouth's width (B, 1); ``knots``, s of the target upper inner-lip points (B, K)."""

    pix: Tensor
    s: Tensor
    t: Tensor
    top: Tensor
    bottom: Tensor
    width: Tensor
    knots: Tensor


@dataclass(frozen=True)
class _PhotoInterior:
    """What showed between the photo's inner lips, moved with them: RGB (B, 3, P), alpha (B, P),
    the height of the part that hangs from the upper lip and the photo's whole inner-lip gap
    there (B, P, pixels)."""

    rgb: Tensor
    alpha: Tensor
    top_height: Tensor
    gap: Tensor


def _lip_shade(below: Tensor, teeth_h: Tensor) -> Tensor:
    """The upper lip's shade on the top of the upper teeth, ``below`` px under it: 0.8 at the
    lip, 1 from 0.3 of a full tooth's height ``teeth_h``."""
    return (0.8 + (0.2 / 0.3) * below / teeth_h).clamp(0.8, 1.0)


def _tooth_gaps(lips: _Lips, incisor: Tensor) -> tuple[Tensor, Tensor]:
    """Thin lines (B, P, 0 to 1) between drawn teeth: one at the middle of the mouth, then one
    every tooth width, the widths (``incisor`` px at the middle) narrowing towards the corners
    as the dental arch turns away; and how far (B, P, px) the teeth's biting edges rise there:
    rounded tooth corners, ``TOOTH_CORNER`` of the tooth's width at each gap, which open small
    dark notches between the upper teeth's tips (the lower incisors' edges are straighter)."""
    half = 0.5 * lips.width
    x = ((lips.s - 0.5) * lips.width).abs()
    r = (x / half).clamp(max=1.0)
    narrowing = 1.0 + 0.8 * r * r
    u = x / incisor * narrowing  # teeth counted from the middle
    c2 = torch.cos(np.pi * u) ** 2
    c8 = (c2 * c2) ** 2
    rise = c8 * (TOOTH_CORNER * incisor / narrowing)
    return c8 * c8 * c8, rise  # cos²⁴ (by squaring: a generic power runs ~3x slower)


class Translator(nn.Module):
    """(source crop, neutral landmarks, B target landmark sets) → B frames."""

    coarse_grid: Tensor  # (1, G, G, 2) coarse cell centres, normalised
    identity_jacobian: Tensor  # (1, 6, 1, 1): the identity map's share of the flow field
    mouth_mean_weight: Tensor  # (1, 1, h, w): 1 / the mouth ROI pixels in each 3×3 window
    full_grid: Tensor  # (1, S, S, 2) pixel centres, normalised
    roi_pixels: Tensor  # (1, P, 2) eye then mouth ROI pixel centres, in pixels
    eye_idx: Tensor  # (4, 9) landmark indices: right upper, left upper, right lower, left lower lid
    lips_idx: Tensor  # (2, 11) landmark indices: inner upper, inner lower lip
    stable_idx: Tensor  # (M,) landmark indices that expressions move little (``topo.STABLE``)

    def __init__(self, size: int, config: TranslatorConfig = TranslatorConfig()) -> None:
        super().__init__()
        self.size = size
        self.config = config
        g = config.grid
        base = torch.from_numpy(grid_points(size, g)).float().view(1, g, g, 2)
        self.register_buffer("coarse_grid", self._to_norm(base), persistent=False)
        identity = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 1.0]).view(1, 6, 1, 1)
        self.register_buffer("identity_jacobian", identity, persistent=False)
        px = torch.arange(size, dtype=torch.float32)
        full = torch.stack(torch.meshgrid(px, px, indexing="xy"), -1)[None]  # (1, S, S, 2)
        self.register_buffer("full_grid", self._to_norm(full), persistent=False)
        x0, y0, x1, y1 = _roi(size, RIGHT_EYE_ROI)
        self.eye_rois = ((x0, y0, x1, y1), (x1, y0, 2 * x1 - x0, y1))  # right, left: same shape
        self.mouth_roi = _roi(size, MOUTH_ROI)
        x0, y0, x1, y1 = self.mouth_roi
        inside = F.pad(torch.ones(1, 1, y1 - y0, x1 - x0), (1, 1, 1, 1))
        count = F.avg_pool2d(inside, 3, stride=1, divisor_override=1)  # in-ROI neighbours
        self.register_buffer("mouth_mean_weight", 1.0 / count, persistent=False)
        rois = (*self.eye_rois, self.mouth_roi)
        parts = [_crop(full, roi, channels_last=True).reshape(1, -1, 2) for roi in rois]
        self.n_eye = parts[0].shape[1]  # pixels per eye
        # Both eyes' and the mouth's pixels as one list (1, P, 2), refined and sampled together.
        self.register_buffer("roi_pixels", torch.cat(parts, 1), persistent=False)
        self.edge = config.mouth_edge_px * size / 256.0
        # Landmark indices as device buffers: indexing with a Python list would copy an index
        # tensor to the device on every call, which CUDA-graph capture does not allow.
        eyes = (topo.RIGHT_EYE_UPPER, topo.LEFT_EYE_UPPER, topo.RIGHT_EYE_LOWER, topo.LEFT_EYE_LOWER)
        self.register_buffer("eye_idx", torch.tensor(eyes, dtype=torch.long), persistent=False)
        lips = (topo.LIPS_INNER_UPPER, topo.LIPS_INNER_LOWER)
        self.register_buffer("lips_idx", torch.tensor(lips, dtype=torch.long), persistent=False)
        self.register_buffer("stable_idx", torch.tensor(topo.STABLE, dtype=torch.long), persistent=False)

    def _to_norm(self, px: Tensor) -> Tensor:
        return (px + 0.5) * (2.0 / self.size) - 1.0

    def _flow_field(self, flow_basis: Tensor, disp: Tensor) -> Tensor:
        """(B, 6, G, G): forward flow (normalised units) and the Jacobian of the forward map
        p ↦ p + flow(p): ∂/∂x, then ∂/∂y (the flow's derivatives plus the identity's)."""
        b, g = disp.shape[0], self.config.grid
        photos, n = flow_basis.shape[0], flow_basis.shape[1]
        # one matrix product per photo over all of its frames: (P, K·2, N) @ (P, N, G²)
        flow = _basis_product(disp.transpose(1, 2).reshape(photos, -1, n), flow_basis).reshape(b, 2, g, g)
        flow = flow * (2.0 / self.size)
        step = 2.0 * (2.0 / g)  # central difference over two cells, normalised units
        pad = F.pad(flow, (1, 1, 1, 1), mode="replicate")
        d_dx = (pad[:, :, 1:-1, 2:] - pad[:, :, 1:-1, :-2]) / step
        d_dy = (pad[:, :, 2:, 1:-1] - pad[:, :, :-2, 1:-1]) / step
        return torch.cat([flow, d_dx, d_dy], 1) + self.identity_jacobian

    @staticmethod
    def _newton_step(
        field: Tensor, x: Tensor, y: Tensor, tx: Tensor, ty: Tensor, max_step: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One damped Newton step on p + d(p) = target, p = (x, y) as separate planes (B, h, w)
        (contiguous: each elementwise op runs vectorised); returns (new x, new y, Jacobian
        determinant of the forward map at p: > 1 where the warp stretches)."""
        f = F.grid_sample(field, _grid(x, y), mode="bilinear", padding_mode="border", align_corners=False)
        fx, fy, a, c, b, d = f.unbind(1)  # flow, then the forward map's ∂/∂x, ∂/∂y
        rx, ry = x + fx - tx, y + fy - ty
        det = torch.addcmul(a * d, b, c, value=-1.0)
        safe = torch.where(det >= 0, det.clamp_min(0.05), det.clamp_max(-0.05))
        sx = (torch.addcmul(d * rx, b, ry, value=-1.0) / safe).clamp(-max_step, max_step)
        sy = (torch.addcmul(a * ry, c, rx, value=-1.0) / safe).clamp(-max_step, max_step)
        return x - sx, y - sy, det

    def _coarse_map(self, flow_basis: Tensor, disp: Tensor) -> tuple[Tensor, Tensor]:
        """The forward flow field (``_flow_field``) and the backward map solved on the coarse
        grid (B, 2, G, G; normalised units)."""
        b, g = disp.shape[0], self.config.grid
        field = self._flow_field(flow_basis, disp)
        qx, qy = self.coarse_grid[..., 0].expand(b, g, g), self.coarse_grid[..., 1].expand(b, g, g)
        x, y = qx - field[:, 0], qy - field[:, 1]
        for _ in range(self.config.iterations):
            x, y, _ = self._newton_step(field, x, y, qx, qy, max_step=0.1)
        return field, torch.stack([x - qx, y - qy], 1)

    def _frame_grid(self, back: Tensor) -> Tensor:
        """The coarse backward map upsampled to the frame's sampling grid (B, S, S, 2)."""
        s = self.size
        full = F.interpolate(back, size=(s, s), mode="bilinear", align_corners=False)
        return full.permute(0, 2, 3, 1) + self.full_grid

    def _roi_map(self, field: Tensor, back: Tensor) -> tuple[Tensor, Tensor]:
        """The eye and mouth pixels' sampling grid (B, 1, P, 2), from the coarse backward map
        read at those pixels (what the upsampled map holds there) refined by Newton steps at
        full resolution, and the forward map's Jacobian determinant there (B, P)."""
        b, s = back.shape[0], self.size
        target = self._to_norm(self.roi_pixels)[:, None]  # (1, 1, P, 2)
        start = F.grid_sample(
            back, target.expand(b, -1, -1, -1), mode="bilinear", padding_mode="border", align_corners=False
        )  # (B, 2, 1, P)
        tx, ty = target[..., 0].expand(b, -1, -1), target[..., 1].expand(b, -1, -1)
        px, py = tx + start[:, 0], ty + start[:, 1]
        det = torch.ones_like(px)
        for _ in range(self.config.refine_iterations):
            px, py, det = self._newton_step(field, px, py, tx, ty, max_step=8.0 / s)
        return _grid(px, py), det[:, 0]

    def mouth_layer(
        self, pix: Tensor, target: Tensor, neutral: Tensor, src: Tensor, palette: Tensor, iod: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Mouth interior RGB (B, 3, P), the target inner-lip mask (B, P) and where the lips
        part wider than in the photo (B, P, 0 to 1), at the mouth pixels (B, P, 2). target and
        neutral (B, N, 2), src the per-frame source crops (B, 3, S, S), palette (B, 6, 3), iod
        the target's inter-ocular distance (B, 1). What
        showed between the photo's lips moves with them at its size (``_photo_interior``); in
        between, drawn teeth and a shaded cavity."""
        up = target[:, self.lips_idx[0]]
        frame = _CurveFrame(up[:, 0], up[:, -1])
        s, t = frame.coords(pix)
        up_s, up_t = frame.coords(up)
        knots = _running_max(up_s)
        lips = _Lips(
            pix,
            s,
            t,
            _piecewise(s, knots, up_t),
            frame.curve(s, target[:, self.lips_idx[1]]),
            frame.length,
            knots,
        )
        inside = _band(t, lips.top, lips.bottom, self.edge) * _between_corners(s)
        lateral = (1.0 - (2.0 * s - 1.0).clamp(-1, 1) ** 2).clamp_min(0.0)
        teeth_h = self.config.teeth_height_iod * iod * (0.55 + 0.45 * lateral)
        photo = self._photo_interior(lips, neutral, target, src, teeth_h)
        # Drawn upper teeth of full height where the photo showed under 0.2 of a tooth; where it
        # showed 0.4 of one or more, its own teeth are the whole teeth (no flat band below them).
        # What shows between the photo's inner lips is taken for its teeth (or gap) only where it
        # is not lip: a smile whose inner-lip points lie inside the lips gets drawn teeth.
        trust = ((palette[:, 5, :1] - 0.1) / 0.1).clamp(0.0, 1.0)
        own = ((photo.top_height / teeth_h - 0.2) / 0.2).clamp(0.0, 1.0) * trust
        drawn_h = own * photo.top_height + (1.0 - own) * teeth_h
        rgb = self._drawn_interior(lips, lateral, teeth_h, drawn_h, palette, iod)
        # (a pixel's worth of slack: the two gaps are measured slightly differently)
        wider = ((lips.bottom - lips.top - photo.gap - self.edge) / (2.0 * self.edge)).clamp(0.0, 1.0)
        return rgb + (photo.alpha * trust)[:, None] * (photo.rgb - rgb), inside, wider

    def _drawn_interior(
        self, lips: _Lips, lateral: Tensor, teeth_h: Tensor, upper_h: Tensor, palette: Tensor, iod: Tensor
    ) -> Tensor:
        """Drawn mouth interior (B, 3, P): upper teeth ``upper_h`` px tall under the upper lip
        (their top in its shade, rounded tips), lower teeth along the lower lip once the mouth
        is open well beyond the teeth (a little darker: the upper lip shades them), thin gaps
        between the teeth, and a cavity darkest at mid-depth in the middle, with the tongue in
        the lower part of a wide opening."""
        t, t_up, t_lo = lips.t, lips.top, lips.bottom
        gap = (t_lo - t_up).clamp_min(1e-3)
        below = t - t_up  # px under the upper lip
        depth = (below / gap).clamp(0.0, 1.0)
        # 1 in the lower teeth's part of the opening (its lower half, below the upper teeth),
        # else 0 (a float step: masks and selects by a boolean tensor run several times slower
        # than arithmetic)
        lower = ((t - torch.maximum(0.5 * (t_up + t_lo), t_up + upper_h)) * 1e4).clamp(0.0, 1.0)
        incisor = (UPPER_INCISOR_IOD + (LOWER_INCISOR_IOD - UPPER_INCISOR_IOD) * lower) * iod
        lines, rise = _tooth_gaps(lips, incisor)
        upper_teeth = torch.sigmoid((t_up + upper_h - rise - t) / self.edge)
        low_h = self.config.lower_teeth_share * teeth_h
        opened = ((gap - 1.6 * teeth_h) / (0.4 * teeth_h)).clamp(0.0, 1.0)
        lower_teeth = torch.sigmoid((t - (t_lo - low_h)) / self.edge) * opened
        teeth_a = torch.clamp(upper_teeth + lower_teeth, 0.0, 1.0)
        cavity_shade = 0.55 + 0.45 * (1.0 - torch.sin(np.pi * depth)) * lateral
        gap_shade = 1.0 - (0.2 - 0.1 * lower) * lines
        tooth_shade = (
            (0.55 + 0.45 * lateral.sqrt()) * (1.0 - 0.15 * lower) * gap_shade * _lip_shade(below, teeth_h)
        )
        teeth_rgb = (teeth_a * tooth_shade)[:, None] * palette[:, 0, :, None]
        cavity = (1 - teeth_a) * cavity_shade * self._tongue(below, gap, teeth_h, lateral)
        return teeth_rgb + cavity[:, None] * palette[:, 1, :, None]

    def _tongue(self, below: Tensor, gap: Tensor, teeth_h: Tensor, lateral: Tensor) -> Tensor:
        """The cavity's brightness gain (B, P): ``TONGUE_GAIN`` on the tongue, a dome in the
        lower part of an opening over 2.5 times the teeth's height (behind the lower teeth in a
        smaller one), its top at 0.55 of the opening in the middle of the mouth and lower
        towards the corners (1 - ``lateral``: the squared distance from the middle); else 1.
        ``below``: px under the upper lip; ``gap``: the opening, px."""
        wide = (gap / teeth_h - 2.5).clamp(0.0, 1.0) * lateral
        dome = torch.sigmoid((below - (0.9 - 0.35 * lateral) * gap) / (2.0 * self.edge))
        return 1.0 + (TONGUE_GAIN - 1.0) * wide * dome

    def _photo_interior(
        self, lips: _Lips, neutral: Tensor, target: Tensor, src: Tensor, teeth_h: Tensor
    ) -> _PhotoInterior:
        """What showed between the photo's inner lips, at its size: its top (at most
        ``teeth_h``, taken for the upper teeth) hangs from the upper lip, the rest (lower teeth,
        tongue) rides on the lower lip; each pixel samples the photo where it was before its lip
        moved. Zero height for a photo with closed lips. A photo whose lips part over a dark gap
        without teeth has that darkness carried as its "teeth"."""
        up_n, lo_n = neutral[:, self.lips_idx[0]], neutral[:, self.lips_idx[1]]
        photo_gap = ((lo_n - up_n) * _CurveFrame(up_n[:, 0], up_n[:, -1]).normal[:, None]).sum(-1)
        moved_up = target[:, self.lips_idx[0]] - up_n
        moved_lo = target[:, self.lips_idx[1]] - lo_n
        values = torch.cat([moved_up, moved_lo, photo_gap[..., None]], -1)
        along = _piecewise(lips.s, lips.knots, values)  # (B, P, 5)
        gap = along[..., 4].clamp_min(0.0)
        h_up = torch.minimum(gap, teeth_h)
        h_lo = gap - h_up
        e = self.edge
        a_up = _band(lips.t, lips.top, lips.top + h_up, e) * (h_up / (2.0 * e)).clamp(0.0, 1.0)
        a_lo = _band(lips.t, lips.bottom - h_lo, lips.bottom, e) * (h_lo / (2.0 * e)).clamp(0.0, 1.0)
        upper = lips.t < 0.5 * (lips.top + h_up + lips.bottom - h_lo)
        shift = torch.where(upper[..., None], along[..., 0:2], along[..., 2:4])
        grid = self._to_norm(lips.pix - shift)[:, None]
        rgb = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return _PhotoInterior(rgb[:, :, 0], (a_up + a_lo).clamp(0.0, 1.0), h_up, gap)

    def lid_layer(
        self, pix: Tensor, neutral: Tensor, target: Tensor, palette: Tensor, src: Tensor, iod: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Closing upper lids: pix (B, 2·P, 2), the right eye's ROI pixels then the left's →
        RGB (B, 3, 2·P) and alpha (B, 2·P). Where the lid came down (``_lid_cover``) it shows
        the photo's own skin from under the same eye, mirrored up about the target lid line: a
        lid pixel d px above that line takes the skin ``LID_SKIN_FROM_IOD`` under the photo's
        lower lid and ``LID_SKIN_STRETCH``·d further down (lid and cheek skin, lit as a closed
        lid is, with the photo's texture; the lower lashes are left out), toned per eye by the
        palette. neutral (B, N, 2), palette (B, 6, 3), src the per-frame source crops
        (B, 3, S, S), iod the target's inter-ocular distance (B, 1). Both eyes are stacked on
        the batch axis, each over its own half of the pixels."""
        idx = self.eye_idx
        up_t = torch.cat([target[:, idx[0]], target[:, idx[1]]])  # (2B, K, 2): right eyes, left eyes
        frame = _CurveFrame(up_t[:, 0], up_t[:, -1])
        p = torch.cat(pix.chunk(2, dim=1))  # (2B, P, 2)
        s, t = frame.coords(p)
        t_t = frame.curve(s, up_t)
        up_n = torch.cat([neutral[:, idx[0]], neutral[:, idx[1]]])
        t_n = frame.curve(s, _with_the_head(neutral, target, self.stable_idx, up_n))
        t_lo = frame.curve(s, torch.cat([target[:, idx[2]], target[:, idx[3]]]))
        alpha, lash = self._lid_cover(s, t, t_n, t_t, t_lo)
        under = frame.curve(s, torch.cat([neutral[:, idx[2]], neutral[:, idx[3]]]))
        under = under + LID_SKIN_FROM_IOD * iod.repeat(2, 1) + (t_t - t).clamp_min(0.0) * LID_SKIN_STRETCH
        skin = self._sample_across(src, frame, p, under - t)
        skin = (skin * torch.cat([palette[:, 2], palette[:, 3]])[:, :, None]).clamp(max=1.0)  # per-eye tone
        lash_rgb = palette[:, 4].repeat(2, 1)  # (2B, 3)
        cover = (alpha + lash).clamp(0.0, 1.0)
        rgb = (alpha - lash).clamp_min(0.0)[:, None] * skin + lash[:, None] * lash_rgb[:, :, None]
        rgb = rgb / cover.clamp_min(1e-6)[:, None]
        # (2B, ·, P) → (B, ·, 2·P): the right eye's pixels then the left's
        return torch.cat(rgb.chunk(2), dim=2), torch.cat(cover.chunk(2), dim=1)

    def _lid_cover(
        self, s: Tensor, t: Tensor, t_n: Tensor, t_t: Tensor, t_lo: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Lid and lash-line alphas (2B, P) at the eye pixels (s, t in the target upper lid's
        frame; t_n, t_t, t_lo: the photo's upper lid carried by the head's motion
        (``_with_the_head``), the target upper lid and the target lower lid there).
        The lid covers what was eye opening in the photo and now lies above the target lid
        line. Its top rises above the photo's lid line by as much as the lid dropped there, so
        it is a lens that tapers to the eye corners; it fades in from that top, and from its
        sides towards the corners (``LID_END_FADE``) but for its lowest pixels, so it meets the
        skin around without an edge. Where the lids meet it also covers the eye interior
        squeezed into the lid line. The lash line along its margin thins towards the corners and
        is half as dark until the lids meet (``meet``): a lid partly down is not lined like eyeliner."""
        e = self.edge
        drop = (t_t - t_n).clamp_min(0.0)
        closing = (drop / e).clamp(0.0, 1.0) * _between_corners(s)
        meet = (1.0 - (t_lo - t_t) / (3.0 * e)).clamp(0.0, 1.0)
        bottom = t_t + 1.5 * e * meet
        top = t_n - drop - 2.0 * e
        fade = _smoothstep((t - top) / (0.8 * (bottom - top)).clamp_min(e))
        ends = _smoothstep(torch.minimum(s, 1.0 - s) / LID_END_FADE)
        lowest = torch.sigmoid((t - (bottom - 3.0 * e)) / e)
        alpha = _band(t, top, bottom, e) * fade * torch.maximum(ends, lowest) * closing
        arc = (4.0 * s * (1.0 - s)).clamp(0.0, 1.0).sqrt()  # 1 mid-eye, 0 at the corners
        lash = (
            _band(t, bottom - e * (0.5 + 1.2 * arc), bottom, 0.5 * e)
            * (0.34 + 0.51 * arc)
            * closing
            * (0.5 + 0.5 * meet)
        )
        return alpha, lash

    def _sample_across(self, src: Tensor, frame: _CurveFrame, p: Tensor, shift: Tensor) -> Tensor:
        """The source crops (B, 3, S, S) sampled at the eye pixels p (2B, P, 2) moved by
        ``shift`` (2B, P) pixels along the frame's normal → (2B, 3, P); one ``grid_sample``
        for both eyes of each frame."""
        q = p + shift[..., None] * frame.normal[:, None]
        grid = self._to_norm(torch.cat(q.chunk(2), dim=1))[:, None]  # (B, 1, 2P, 2)
        rgb = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return torch.cat(rgb[:, :, 0].chunk(2, dim=2))

    def _torn(self, stretch: Tensor) -> Tensor:
        """Where the warp stretches the mouth ROI more than 3×: (B, 1, P), closed over isolated
        pixels (3×3 dilation) and softened."""
        x0, y0, x1, y1 = self.mouth_roi
        torn = ((stretch - 1.5) / 1.5).clamp(0.0, 1.0).view(-1, 1, y1 - y0, x1 - x0)
        # 3×3 max, then 3×3 mean over the pixels inside the ROI, each as a row pass and a column
        # pass over shifted slices (the pooling ops run several times slower on so small an
        # image); zero padding leaves the max alone, as every value is ≥ 0
        pad = F.pad(torn, (1, 1, 1, 1))
        rows = torch.maximum(torch.maximum(pad[..., :-2], pad[..., 1:-1]), pad[..., 2:])
        torn = torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])
        pad = F.pad(torn, (1, 1, 1, 1))
        rows = pad[..., :-2] + pad[..., 1:-1] + pad[..., 2:]
        total = rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]
        return (total * self.mouth_mean_weight).flatten(2)

    def _write(self, frames: Tensor, values: Tensor, roi: tuple[int, int, int, int]) -> Tensor:
        """``frames`` with the ROI replaced by ``values`` (B, 3, P): in place when run eagerly (a
        few % faster); by slicing and concatenation while exporting to ONNX, whose tracer would
        drop an in-place write into a view (the export's parity test checks both agree)."""
        x0, y0, x1, y1 = roi
        patch = values.reshape(frames.shape[0], 3, y1 - y0, x1 - x0)
        if not torch.onnx.is_in_onnx_export():
            _crop(frames, roi).copy_(patch)
            return frames
        band = torch.cat([frames[:, :, y0:y1, :x0], patch, frames[:, :, y0:y1, x1:]], dim=3)
        return torch.cat([frames[:, :, :y0], band, frames[:, :, y1:]], dim=2)

    def forward(
        self, image: Tensor, flow_basis: Tensor, neutral: Tensor, target: Tensor, palette: Tensor
    ) -> Tensor:
        """P photos, K frames each (B = P·K; frame p·K + k shows photo p): image (P, 3, S, S),
        flow_basis (P, N, G²), neutral (P, N, 2), palette (P, 6, 3), target (B, N, 2) →
        frames (B, 3, S, S) in [0, 1]. A 2-D flow_basis, neutral or palette is one photo's.

        One call renders frames of several photos (sessions) at once; the per-photo inputs are
        read once per photo, not once per frame."""
        b, e = target.shape[0], 2 * self.n_eye
        basis = flow_basis if flow_basis.dim() == 3 else flow_basis[None]
        tracing = torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()  # type: ignore[attr-defined,no-untyped-call,unused-ignore]
        if not tracing and b % basis.shape[0]:
            raise ValueError(f"{b} target frames do not split evenly over {basis.shape[0]} photos")
        neutral = _per_frame(neutral if neutral.dim() == 3 else neutral[None], b)
        palette = _per_frame(palette if palette.dim() == 3 else palette[None], b)
        # per frame: a view when one photo is shared (expanded), else a copy per frame, which
        # grid_sample (parallel over the batch) runs faster on than on the K grids stacked
        src = _per_frame(image.expand(basis.shape[0], -1, -1, -1), b)
        field, back = self._coarse_map(basis, target - neutral)
        roi_grid, stretch = self._roi_map(field, back)
        warped = F.grid_sample(src, roi_grid, mode="bilinear", padding_mode="border", align_corners=False)
        warped = warped[:, :, 0]  # (B, 3, P)
        pix = self.roi_pixels.expand(b, -1, -1)
        eyes = target[:, topo.RIGHT_EYE_OUTER] - target[:, topo.LEFT_EYE_OUTER]
        iod = eyes.norm(dim=-1, keepdim=True).clamp_min(1.0)  # (B, 1)
        lid, lid_alpha = self.lid_layer(pix[:, :e], neutral, target, palette, src, iod)
        eyes = warped[..., :e]
        eyes = eyes + lid_alpha[:, None] * (lid - eyes)
        mouth, inside, wider = self.mouth_layer(pix[:, e:], target, neutral, src, palette, iod)
        alpha = inside[:, None] * torch.maximum(self._torn(stretch[:, e:]), wider[:, None])
        lips = warped[..., e:]
        frames = self._warp_frame(back, src)
        for roi, values in zip(self.eye_rois, eyes.chunk(2, dim=2), strict=True):
            frames = self._write(frames, values, roi)
        return self._write(frames, lips + alpha * (mouth - lips), self.mouth_roi)

    def _warp_frame(self, back: Tensor, src: Tensor) -> Tensor:
        """The whole frame (B, 3, S, S): the source crops sampled by the coarse backward map
        (B, 2, G, G) upsampled. PyTorch's CPU kernel samples with one thread per frame, so one
        frame on the CPU is sampled as its top and bottom halves stacked on the batch axis
        (``_in_halves``), on two cores (the same values)."""
        grid, s = self._frame_grid(back), self.size
        if not _in_halves(src, grid.shape[0], s):
            return F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
        halves = grid.reshape(2, s // 2, s, 2)
        out = F.grid_sample(
            src.expand(2, -1, -1, -1), halves, mode="bilinear", padding_mode="border", align_corners=False
        )
        return out.transpose(0, 1).reshape(1, 3, s, s)

    def render(self, prior: FacePrior, target: Tensor) -> Tensor:
        """Convenience: ``forward`` with a ``FacePrior``."""
        n = prior.neutral.shape[0]
        return self(prior.image, prior.flow_basis, prior.neutral, target[:, :n], prior.palette)
