"""Named exceptions of rt_smile; every message says what to do about it."""

from __future__ import annotations


class RtSmileError(Exception):
    """Base class of every error rt_smile raises on purpose."""


class ImageError(RtSmileError):
    """The input is not a readable image (not an image, truncated, corrupt)."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than the configured cap (checked before decoding)."""


class FaceError(RtSmileError):
    """Base class of face-detection errors."""


class NoFaceError(FaceError):
    """No face was found in the image."""


class MultipleFacesError(FaceError):
    """Several faces were found and the caller asked for exactly one."""


class FaceTooSmallError(FaceError):
    """The face is too small to animate (inter-ocular distance under the minimum)."""


class ExpressionError(RtSmileError, ValueError):
    """An expression specification is invalid (unknown action unit, bad value)."""


class DetectorError(RtSmileError):
    """The landmark detector could not be created (missing package or model file)."""
