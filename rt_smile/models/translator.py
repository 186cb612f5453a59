"""Landmark-to-face translator: dense backward warp + mouth-interior compositor.

Per photo (``prepare_face``, NumPy, once): a thin-plate-spline basis that maps the N landmark
displacements to a forward flow on a coarse G×G grid, ``flow = M @ disp``. The spline is solved
in a "lifted" plane in which the lower half of the mouth is pushed away from the upper half,
so the flow may tear open along the lips (upper and lower lip move apart) while staying smooth
everywhere else. Ring anchors and a taper hold the flow at zero on the crop border.

Per frame (``Translator.forward``, torch, fixed shapes, batchable, ONNX/TensorRT friendly):
  1. forward flow on the coarse grid: one (G², N) × (N, 2) matrix product per frame;
  2. backward map x_src = x − d(x_src) by fixed-point iterations on the coarse grid, upsampled,
     then one full-resolution iteration whose residual marks the torn (newly opened) area;
  3. ``grid_sample`` (4-D, bilinear) of the source crop;
  4. mouth interior: inside the target inner-lip contour, where the warp tore, a shaded cavity
     with a teeth band coloured from the photo, soft-blended.
"""

from __future__ import annotations

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
MOUTH_ROI = (0.18, 0.42, 0.82, 0.92)


@dataclass(frozen=True)
class FacePrior:
    """Per-photo tensors the translator needs (compute once with ``prepare_face``)."""

    #: (1, 3, S, S) source crop, float in [0, 1].
    image: Tensor
    #: (N, 2) neutral landmarks, crop pixels.
    neutral: Tensor
    #: (N, G*G) landmark displacement → coarse forward flow (pixels): flow = dispᵀ @ basis.
    flow_basis: Tensor
    #: (2, 3) teeth colour (row 0) and mouth-cavity colour (row 1), in [0, 1].
    mouth_colors: Tensor


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
    return np.concatenate([
        np.stack([t, np.full_like(t, lo)], 1),
        np.stack([np.full_like(t, hi), t], 1),
        np.stack([t[::-1] + (hi - lo) / per_side, np.full_like(t, hi)], 1),
        np.stack([np.full_like(t, lo), t[::-1] + (hi - lo) / per_side], 1),
    ])


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
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    return mask.astype(bool)


def _mouth_colors(image: NDArray[np.uint8], lm: NDArray[np.float64]) -> NDArray[np.float64]:
    """Teeth colour from the brightest pixels of the open mouth or the eye whites; cavity colour
    from the lips, darkened."""
    hw = image.shape[:2]
    rgb = image.reshape(-1, 3).astype(np.float64) / 255.0
    inner = np.array([lm[i] for i in (*topo.LIPS_INNER_UPPER, *topo.LIPS_INNER_LOWER[::-1])])
    eyes = [np.array([lm[i] for i in (*u, *lo[::-1])]) for u, lo in (
        (topo.RIGHT_EYE_UPPER, topo.RIGHT_EYE_LOWER), (topo.LEFT_EYE_UPPER, topo.LEFT_EYE_LOWER))]
    bright = _polygon_mask(hw, inner) | _polygon_mask(hw, eyes[0]) | _polygon_mask(hw, eyes[1])
    cand = rgb[bright.ravel()]
    if len(cand) < 8:
        cand = rgb
    lum = cand @ np.array([0.299, 0.587, 0.114])
    teeth = cand[lum >= np.quantile(lum, 0.85)].mean(0)
    teeth = 0.8 * teeth + 0.2 * np.array([0.93, 0.9, 0.84])  # towards enamel white
    teeth = np.clip(teeth * 0.95 / max(teeth.max(), 1e-3), 0.0, 1.0)
    outer = np.array([lm[i] for i in (*topo.LIPS_OUTER_UPPER, *topo.LIPS_OUTER_LOWER[::-1])])
    lips = _polygon_mask(hw, outer) & ~_polygon_mask(hw, inner)
    lip = rgb[lips.ravel()].mean(0) if lips.sum() > 8 else np.array([0.6, 0.3, 0.3])
    cavity = lip * np.array([0.32, 0.18, 0.18])
    return np.stack([teeth, cavity])


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
        mouth_colors=torch.from_numpy(_mouth_colors(image, lm)).float(),
    )


def _piecewise(s: Tensor, knots_s: Tensor, knots_v: Tensor) -> Tensor:
    """Piecewise-linear interpolation: s (B, P), knots (B, K) sorted by s → (B, P)."""
    ds = (knots_s[:, 1:] - knots_s[:, :-1]).clamp_min(1e-4)  # (B, K-1)
    slope = (knots_v[:, 1:] - knots_v[:, :-1]) / ds
    ramp = (s[:, :, None] - knots_s[:, None, :-1]).clamp(min=0.0)
    ramp = torch.minimum(ramp, ds[:, None, :])
    return knots_v[:, :1] + (ramp * slope[:, None, :]).sum(-1)


class Translator(nn.Module):
    """(source crop, neutral landmarks, B target landmark sets) → B frames."""

    def __init__(self, size: int, config: TranslatorConfig = TranslatorConfig()) -> None:
        super().__init__()
        self.size = size
        self.config = config
        g = config.grid
        base = torch.from_numpy(grid_points(size, g)).float().view(1, g, g, 2)
        self.register_buffer("coarse_grid", self._to_norm(base), persistent=False)
        px = torch.arange(size, dtype=torch.float32)
        full = torch.stack(torch.meshgrid(px, px, indexing="xy"), -1)[None]
        self.register_buffer("full_grid", self._to_norm(full), persistent=False)
        x0, y0, x1, y1 = (round(f * size) for f in MOUTH_ROI)
        self.roi = (x0, y0, x1, y1)
        roi_grid = full[:, y0:y1, x0:x1].reshape(1, -1, 2)
        self.register_buffer("roi_pixels", roi_grid, persistent=False)
        self.upper_idx = list(topo.LIPS_INNER_UPPER)
        self.lower_idx = list(topo.LIPS_INNER_LOWER)

    def _to_norm(self, px: Tensor) -> Tensor:
        return (px + 0.5) * (2.0 / self.size) - 1.0

    def _flow_field(self, flow_basis: Tensor, disp: Tensor) -> Tensor:
        """(B, 6, G, G): forward flow (normalised units) and its Jacobian (d/dx, d/dy)."""
        b, g = disp.shape[0], self.config.grid
        flow = torch.matmul(disp.transpose(1, 2), flow_basis).reshape(b, 2, g, g)
        flow = flow * (2.0 / self.size)
        step = 2.0 * (2.0 / g)  # central difference over two cells, normalised units
        pad = F.pad(flow, (1, 1, 1, 1), mode="replicate")
        d_dx = (pad[:, :, 1:-1, 2:] - pad[:, :, 1:-1, :-2]) / step
        d_dy = (pad[:, :, 2:, 1:-1] - pad[:, :, :-2, 1:-1]) / step
        return torch.cat([flow, d_dx, d_dy], 1)

    @staticmethod
    def _newton_step(field: Tensor, xs: Tensor, target: Tensor, max_step: float) -> tuple[Tensor, Tensor]:
        """One damped Newton step on x + d(x) = target; returns (new xs, residual)."""
        f = F.grid_sample(field, xs, mode="bilinear", padding_mode="border", align_corners=False)
        f = f.permute(0, 2, 3, 1)  # (B, h, w, 6): dx, dy, ddx/dx, ddy/dx, ddx/dy, ddy/dy
        r = xs + f[..., :2] - target
        a, c = 1.0 + f[..., 2], f[..., 3]
        b, d = f[..., 4], 1.0 + f[..., 5]
        det = a * d - b * c
        det = torch.where(det >= 0, det.clamp_min(0.05), det.clamp_max(-0.05))
        step = torch.stack([d * r[..., 0] - b * r[..., 1], -c * r[..., 0] + a * r[..., 1]], -1) / det[..., None]
        norm = step.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        step = step * (norm.clamp_max(max_step) / norm)
        return xs - step, r

    def backward_map(self, flow_basis: Tensor, disp: Tensor) -> tuple[Tensor, Tensor]:
        """Sampling grid (B, S, S, 2) and the residual |x_src + d(x_src) - x| (B, 1, S, S) in
        pixels: large where the warp tore open (no source pixel lands there)."""
        b, g, s = disp.shape[0], self.config.grid, self.size
        field = self._flow_field(flow_basis, disp)
        q = self.coarse_grid.expand(b, g, g, 2)
        xs = q - field[:, :2].permute(0, 2, 3, 1)
        for _ in range(self.config.iterations):
            xs, _ = self._newton_step(field, xs, q, max_step=0.1)
        back = F.interpolate((xs - q).permute(0, 3, 1, 2), size=(s, s), mode="bilinear",
                             align_corners=False)
        grid = self.full_grid + back.permute(0, 2, 3, 1)
        r = grid
        for _ in range(self.config.refine_iterations):
            grid, r = self._newton_step(field, grid, self.full_grid, max_step=8.0 / s)
        residual = r.norm(dim=-1, keepdim=True).permute(0, 3, 1, 2) * (s / 2.0)
        return grid, residual

    def mouth_layer(self, target: Tensor, colors: Tensor) -> tuple[Tensor, Tensor]:
        """Mouth interior RGB (B, 3, h, w) and its inside mask (B, 1, h, w) on the mouth ROI."""
        x0, y0, x1, y1 = self.roi
        up, lo = target[:, self.upper_idx], target[:, self.lower_idx]  # (B, K, 2)
        right, left = up[:, 0], up[:, -1]
        width = (left - right).norm(dim=-1, keepdim=True).clamp_min(1.0)  # (B, 1)
        axis = (left - right) / width
        normal = torch.stack([-axis[:, 1], axis[:, 0]], -1)
        iod_px = (target[:, topo.RIGHT_EYE_OUTER] - target[:, topo.LEFT_EYE_OUTER]).norm(dim=-1, keepdim=True)

        def coords(p: Tensor) -> tuple[Tensor, Tensor]:
            rel = p - right[:, None]
            return (rel * axis[:, None]).sum(-1) / width, (rel * normal[:, None]).sum(-1)

        s, t = coords(self.roi_pixels.expand(target.shape[0], -1, -1))
        us, ut = coords(up)
        ls, lt = coords(lo)
        t_up = _piecewise(s, torch.cummax(us, 1).values, ut)
        t_lo = _piecewise(s, torch.cummax(ls, 1).values, lt)
        edge = self.config.mouth_edge_px * self.size / 256.0
        inside = torch.sigmoid((t - t_up) / edge) * torch.sigmoid((t_lo - t) / edge)
        inside = inside * ((s > 0) & (s < 1)).float()
        gap = (t_lo - t_up).clamp_min(1e-3)
        depth = ((t - t_up) / gap).clamp(0.0, 1.0)
        lateral = (1.0 - (2.0 * s - 1.0).clamp(-1, 1) ** 2).clamp_min(0.0)
        teeth_h = self.config.teeth_height_iod * iod_px * (0.55 + 0.45 * lateral)
        teeth = torch.sigmoid((t_up + teeth_h - t) / edge)
        low_teeth = 0.5 * torch.sigmoid((t - (t_lo - 0.4 * teeth_h)) / edge) * (gap > teeth_h * 1.6).float()
        cavity_shade = 0.55 + 0.45 * (1.0 - torch.sin(np.pi * depth)) * lateral
        tooth_shade = 0.55 + 0.45 * lateral.sqrt()
        teeth_a = torch.clamp(teeth + low_teeth, 0.0, 1.0)
        rgb = (teeth_a * tooth_shade)[:, None] * colors[0][None, :, None] + (
            (1 - teeth_a) * cavity_shade)[:, None] * colors[1][None, :, None]
        h, w = y1 - y0, x1 - x0
        return rgb.view(-1, 3, h, w), inside.view(-1, 1, h, w)

    def forward(
        self, image: Tensor, flow_basis: Tensor, neutral: Tensor, target: Tensor, mouth_colors: Tensor
    ) -> Tensor:
        """image (1|B, 3, S, S), flow_basis (N, G²), neutral (N, 2), target (B, N, 2) → (B, 3, S, S)."""
        disp = target - neutral[None]
        grid, residual = self.backward_map(flow_basis, disp)
        frames = F.grid_sample(image.expand(target.shape[0], -1, -1, -1), grid, mode="bilinear",
                               padding_mode="border", align_corners=False)
        x0, y0, x1, y1 = self.roi
        mouth, inside = self.mouth_layer(target, mouth_colors)
        torn = (residual[:, :, y0:y1, x0:x1] - 0.5).clamp(0.0, 1.0)
        alpha = inside * torn
        roi = frames[:, :, y0:y1, x0:x1]
        blended = roi + alpha * (mouth - roi)
        top = frames[:, :, :y0]
        mid = torch.cat([frames[:, :, y0:y1, :x0], blended, frames[:, :, y0:y1, x1:]], dim=3)
        return torch.cat([top, mid, frames[:, :, y1:]], dim=2)

    def render(self, prior: FacePrior, target: Tensor) -> Tensor:
        """Convenience: ``forward`` with a ``FacePrior``."""
        return self(prior.image, prior.flow_basis, prior.neutral, target, prior.mouth_colors)
