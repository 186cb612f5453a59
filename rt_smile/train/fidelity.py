"""Closed-loop fidelity of the translator: render an expression, re-detect it with MediaPipe.

An independent detector run on the rendered frame should find the landmarks that were asked
for. Distances are in inter-ocular distances (IOD, outer eye corners 33-263) of the crop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import torch
from numpy.typing import NDArray

from rt_smile.config import CropConfig, DetectorConfig, TranslatorConfig
from rt_smile.data.expressions import apply_expression
from rt_smile.face import topology as topo
from rt_smile.face.align import FaceCrop, crop_face
from rt_smile.face.landmarks import LandmarkDetector, detect_face
from rt_smile.models.translator import FacePrior, Translator, prepare_face

#: The expressions the closed loop is checked on (name → AU intensities).
REFERENCE_EXPRESSIONS: dict[str, dict[str, float]] = {
    "neutral": {},
    "closed smile": {"AU12": 0.9, "AU6": 0.5},
    "open smile": {"AU12": 0.8, "AU6": 0.4, "AU25": 0.7, "AU26": 0.4},
    "blink": {"AU45": 1.0},
}
#: Points an expression moves by at least this many IOD count as "moved".
MOVED_IOD = 0.02
#: Mesh regions whose re-detection errors are reported separately.
REGIONS: dict[str, tuple[int, ...]] = {
    "upper lip": topo.LIPS_OUTER_UPPER + topo.LIPS_INNER_UPPER,
    "lower lip": topo.LIPS_OUTER_LOWER + topo.LIPS_INNER_LOWER,
    "eyes": topo.EYES,
    "nose": topo.NOSE,
    "face contour": topo.FACE_OVAL,
}


class RegionError(TypedDict):
    """Re-detection error of one mesh region, IOD: mean distance, mean offset (x, y; y down)."""

    error_iod: float
    offset_iod: list[float]


#: The chin: the lowest points of the face contour.
CHIN = (152, 148, 176, 149, 377, 400, 378)


@dataclass(frozen=True)
class LoopResult:
    """Re-detection of one rendered expression."""

    name: str
    frame: NDArray[np.uint8]
    target: NDArray[np.float64]  # (468, 2) crop px
    detected: NDArray[np.float64]  # (468, 2) crop px
    neutral: NDArray[np.float64]  # (468, 2) crop px, the photo's own landmarks
    iod: float

    @property
    def mean_error(self) -> float:
        """Mean distance re-detected → target, in IOD."""
        return float(np.linalg.norm(self.detected - self.target, axis=1).mean() / self.iod)

    @property
    def moved(self) -> NDArray[np.bool_]:
        return np.asarray(np.linalg.norm(self.target - self.neutral, axis=1) >= MOVED_IOD * self.iod)

    @property
    def moved_error_ratio(self) -> float:
        """On moved points: mean re-detection error over mean displacement (0 if none moved)."""
        m = self.moved
        if not m.any():
            return 0.0
        err = np.linalg.norm(self.detected[m] - self.target[m], axis=1).mean()
        disp = np.linalg.norm(self.target[m] - self.neutral[m], axis=1).mean()
        return float(err / disp)

    def region_errors(self) -> dict[str, RegionError]:
        """Per region of ``REGIONS``: mean re-detection error and mean offset (x, y; y down) of
        the re-detected points from their targets, IOD."""
        out: dict[str, RegionError] = {}
        for name, idx in REGIONS.items():
            d = (self.detected[list(idx)] - self.target[list(idx)]) / self.iod
            out[name] = {
                "error_iod": round(float(np.linalg.norm(d, axis=1).mean()), 4),
                "offset_iod": [round(float(v), 4) for v in d.mean(0)],
            }
        return out

    def summary(self) -> dict[str, float | int | str]:
        return {
            "expression": self.name,
            "mean_error_iod": round(self.mean_error, 5),
            "moved_points": int(self.moved.sum()),
            "moved_error_ratio": round(self.moved_error_ratio, 4),
        }


class ClosedLoop:
    """Renders expressions of one photo and re-detects them."""

    def __init__(
        self,
        photo: NDArray[np.uint8],
        detector: LandmarkDetector,
        size: int = 256,
        detector_config: DetectorConfig = DetectorConfig(face="largest"),
        translator_config: TranslatorConfig = TranslatorConfig(),
    ) -> None:
        self.detector = detector
        face = detect_face(photo, detector_config, detector)
        self.crop: FaceCrop = crop_face(photo, face, CropConfig(size=size))
        self.prior: FacePrior = prepare_face(self.crop.image, self.crop.landmarks, translator_config)
        self.translator = Translator(size, translator_config)
        self._config = detector_config

    def render(self, intensities: Mapping[str, float]) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
        target = apply_expression(self.crop.landmarks, intensities, self.crop.depth)[: topo.NUM_LANDMARKS]
        with torch.inference_mode():
            out = self.translator.render(self.prior, torch.from_numpy(target[None]).float())
        frame = (out[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
        return frame, target

    def run(self, name: str, intensities: Mapping[str, float]) -> LoopResult:
        frame, target = self.render(intensities)
        found = detect_face(frame, self._config, self.detector).points[: topo.NUM_LANDMARKS]
        neutral = self.crop.landmarks[: topo.NUM_LANDMARKS]
        return LoopResult(name, frame, target, found, neutral, self.crop.iod)


def lip_corner_shift(result: LoopResult, reference: LoopResult) -> float:
    """Mean re-detected motion of the lip corners (61, 291) against a reference render, IOD."""
    idx = [topo.RIGHT_LIP_CORNER, topo.LEFT_LIP_CORNER]
    return float(np.linalg.norm(result.detected[idx] - reference.detected[idx], axis=1).mean() / result.iod)


def eyelid_gap(points: NDArray[np.float64], pair: tuple[int, int]) -> float:
    """Distance between the two lid points of ``pair`` (e.g. 159-145), pixels; at least 1e-6."""
    return max(float(np.linalg.norm(points[pair[0]] - points[pair[1]])), 1e-6)


def eyelid_gap_ratios(result: LoopResult, reference: LoopResult) -> tuple[float, float]:
    """Re-detected eyelid gaps (159-145, 386-374) as fractions of the reference render's."""
    return tuple(  # type: ignore[return-value]
        eyelid_gap(result.detected, p) / eyelid_gap(reference.detected, p)
        for p in (topo.RIGHT_EYELID, topo.LEFT_EYELID)
    )


def eyelid_sideways_offsets(result: LoopResult) -> tuple[float, float]:
    """|x(159) − x(145)| and |x(386) − x(374)| as re-detected, IOD. MediaPipe keeps upper and
    lower lid points apart sideways along a closed lid (0.01-0.03 IOD measured)."""
    return tuple(  # type: ignore[return-value]
        abs(result.detected[a, 0] - result.detected[b, 0]) / result.iod
        for a, b in (topo.RIGHT_EYELID, topo.LEFT_EYELID)
    )


def eyelid_offset_floors(result: LoopResult, reference: LoopResult) -> tuple[float, float]:
    """The horizontal part of each re-detected eyelid-gap ratio: ``eyelid_sideways_offsets`` of
    the render over the reference render's gap. A gap ratio cannot fall below it."""
    offsets = eyelid_sideways_offsets(result)
    return tuple(  # type: ignore[return-value]
        dx * result.iod / eyelid_gap(reference.detected, pair)
        for dx, pair in zip(offsets, (topo.RIGHT_EYELID, topo.LEFT_EYELID), strict=True)
    )


def eyelid_vertical_parts(result: LoopResult, reference: LoopResult) -> tuple[float, float]:
    """The vertical part of each re-detected eyelid-gap ratio: |y(159) − y(145)| and
    |y(386) − y(374)| of the render over the reference render's gap (the crop is upright). The
    gap ratio (``eyelid_gap_ratios``) is the hypotenuse of this and the horizontal part
    (``eyelid_offset_floors``)."""
    return tuple(  # type: ignore[return-value]
        abs(result.detected[pair[0], 1] - result.detected[pair[1], 1]) / eyelid_gap(reference.detected, pair)
        for pair in (topo.RIGHT_EYELID, topo.LEFT_EYELID)
    )


def chin_drop(result: LoopResult, reference: LoopResult) -> tuple[float, float]:
    """Downward motion of the chin (``CHIN``) asked for by the targets and found by re-detection
    (against the re-detected reference render), IOD: (asked, re-detected)."""
    idx = list(CHIN)
    asked = (result.target[idx, 1] - result.neutral[idx, 1]).mean() / result.iod
    found = (result.detected[idx, 1] - reference.detected[idx, 1]).mean() / result.iod
    return float(asked), float(found)


def inner_lip_opening(result: LoopResult, reference: LoopResult) -> float:
    """Increase of the re-detected inner-lip gap (13-14) over the reference render, IOD."""
    a, b = topo.UPPER_INNER_LIP_MID, topo.LOWER_INNER_LIP_MID
    gap = np.linalg.norm(result.detected[a] - result.detected[b])
    ref = np.linalg.norm(reference.detected[a] - reference.detected[b])
    return float((gap - ref) / result.iod)
