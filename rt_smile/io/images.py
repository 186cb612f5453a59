"""Reading photos into RGB uint8 arrays, safely, and writing PNG frames."""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from rt_smile.errors import ImageError, ImageTooLargeError

logger = logging.getLogger(__name__)

#: Default cap on the pixel count of an input photo (width × height), checked before decoding.
DEFAULT_MAX_PIXELS = 40_000_000

ImageSource = str | Path | bytes


def _open(source: ImageSource) -> Image.Image:
    try:
        # Pillow's own decompression-bomb check runs in open(): its warning would be noise
        # (load_image applies its own cap next), its error a second kind of "too large".
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if isinstance(source, bytes):
                return Image.open(io.BytesIO(source))
            return Image.open(Path(source))
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(
            f"{_name(source)} has too many pixels to open safely ({exc}); downscale the photo first"
        ) from exc
    except FileNotFoundError as exc:
        raise ImageError(f"image file not found: {_name(source)}") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"expected an image file, got a directory: {_name(source)}") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageError(f"{_name(source)} is not a readable image (PNG, JPEG, WebP, ...)") from exc


def _name(source: ImageSource) -> str:
    return "the uploaded data" if isinstance(source, bytes) else str(source)


def _check_pixels(img: Image.Image, max_pixels: int, source: ImageSource) -> None:
    w, h = img.size
    if w * h > max_pixels:
        raise ImageTooLargeError(
            f"{_name(source)} is {w}x{h} = {w * h} pixels, over the cap of {max_pixels}; "
            "downscale the photo first"
        )
    if w < 1 or h < 1:
        raise ImageError(f"{_name(source)} has no pixels ({w}x{h})")


def _high_bit_to_uint8(arr: NDArray[Any]) -> NDArray[np.uint8]:
    a = np.asarray(arr)
    if a.dtype == np.uint8:
        return a.astype(np.uint8, copy=False)
    if a.dtype.kind == "f":
        return np.clip(a.astype(np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    peak = 65535 if a.max(initial=0) > 255 else 255
    return np.clip(a.astype(np.float64) * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8)


def _to_rgb(img: Image.Image) -> NDArray[np.uint8]:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        gray = _high_bit_to_uint8(np.asarray(img))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def load_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> NDArray[np.uint8]:
    """Read a photo as an upright H×W×3 RGB uint8 array.

    Handles grayscale, palette, RGBA (composited on white), 16-bit and EXIF-rotated images.
    Raises ImageError for unreadable data and ImageTooLargeError before decoding a huge image.
    """
    img = _open(source)
    _check_pixels(img, max_pixels, source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{_name(source)} is corrupt or truncated: {exc}") from exc
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def save_png(path: str | Path, rgb: NDArray[np.uint8]) -> Path:
    """Write an H×W×3 uint8 array as PNG, creating the parent folder."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(rgb)).save(out)
    return out
