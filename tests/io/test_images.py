"""Reading photos: bad files are refused with a named error, unusual formats come out right."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from rt_smile.errors import ImageError, ImageTooLargeError
from rt_smile.io.images import load_image, save_png
from tests.conftest import EXIF_COLUMNS, Inputs, huge_png, sample_path


def _psnr(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_sample_photo_loads_as_rgb(photo: NDArray[np.uint8]) -> None:
    assert photo.shape == (512, 512, 3)
    assert photo.dtype == np.uint8
    assert photo.flags.c_contiguous


def test_bytes_and_path_give_the_same_pixels(photo: NDArray[np.uint8]) -> None:
    assert np.array_equal(load_image(sample_path().read_bytes()), photo)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("text", "not a readable image"),
        ("truncated_png", "corrupt or truncated"),
        ("corrupt_png", "corrupt or truncated"),
        ("truncated_jpeg", "corrupt or truncated"),
    ],
)
def test_unreadable_files_raise_image_error(inputs: Inputs, case: str, message: str) -> None:
    with pytest.raises(ImageError, match=message) as info:
        load_image(getattr(inputs, case))
    assert type(info.value) is ImageError


def test_missing_file_and_directory_raise_image_error(inputs: Inputs) -> None:
    with pytest.raises(ImageError, match="not found"):
        load_image(inputs.folder / "nothing-here.png")
    with pytest.raises(ImageError, match="directory"):
        load_image(inputs.folder)


def test_empty_bytes_raise_image_error() -> None:
    with pytest.raises(ImageError, match="uploaded data"):
        load_image(b"")


def test_pixel_cap_on_the_sample() -> None:
    with pytest.raises(ImageTooLargeError, match="512x512 = 262144 pixels, over the cap of 100000"):
        load_image(sample_path(), max_pixels=100_000)
    assert load_image(sample_path(), max_pixels=512 * 512).shape == (512, 512, 3)


def test_huge_png_is_refused_quickly(inputs: Inputs) -> None:
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="10000x10000"):
        load_image(inputs.huge_png)
    assert time.perf_counter() - start < 1.0  # decoding 10⁸ pixels would take far longer


def test_pixel_cap_is_checked_before_decoding(inputs: Inputs) -> None:
    # The file holds a header and no pixels: only a check that never decodes can name the size.
    with pytest.raises(ImageTooLargeError, match="10000x10000"):
        load_image(inputs.huge_header_png)
    # ... and above the cap, decoding is what fails.
    with pytest.raises(ImageError, match="truncated"):
        load_image(inputs.huge_header_png, max_pixels=10**9)


def test_pillow_decompression_bomb_limit_is_a_named_error() -> None:
    # 4·10⁸ pixels: over Pillow's own hard limit, which trips inside Image.open.
    with pytest.raises(ImageTooLargeError, match="too many pixels"):
        load_image(huge_png(20_000, 20_000, with_data=False))


def test_no_warning_for_huge_images(inputs: Inputs, recwarn: pytest.WarningsRecorder) -> None:
    with pytest.raises(ImageTooLargeError):
        load_image(inputs.huge_png)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_grayscale_becomes_rgb(inputs: Inputs, photo: NDArray[np.uint8]) -> None:
    rgb = load_image(inputs.gray_png)
    assert rgb.shape == photo.shape
    assert np.array_equal(rgb[..., 0], rgb[..., 1])
    assert np.array_equal(rgb[..., 1], rgb[..., 2])
    expected = np.asarray(Image.fromarray(photo).convert("L"))
    assert np.array_equal(rgb[..., 0], expected)


def test_rgba_is_composited_on_white(inputs: Inputs, photo: NDArray[np.uint8]) -> None:
    rgb = load_image(inputs.rgba_png)
    assert rgb.shape == photo.shape
    assert np.array_equal(rgb[:-40], photo[:-40])  # opaque part unchanged
    assert (rgb[-40:] == 255).all()  # transparent band: white


def test_16_bit_colour_png(inputs: Inputs, photo: NDArray[np.uint8]) -> None:
    assert cv2.imread(str(inputs.rgb16_png), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    rgb = load_image(inputs.rgb16_png)
    assert rgb.dtype == np.uint8
    assert rgb.shape == photo.shape
    assert np.abs(rgb.astype(int) - photo.astype(int)).max() <= 1


def test_16_bit_grayscale_png(inputs: Inputs, photo: NDArray[np.uint8]) -> None:
    with Image.open(inputs.gray16_png) as img:
        assert img.mode.startswith("I")  # really 16-bit on disk
    rgb = load_image(inputs.gray16_png)
    assert rgb.shape == photo.shape
    gray = (photo.astype(np.float64) @ [0.299, 0.587, 0.114]).round()
    assert np.abs(rgb[..., 0].astype(np.float64) - gray).max() <= 1.5


def test_exif_rotated_jpeg_comes_out_upright(inputs: Inputs, photo: NDArray[np.uint8]) -> None:
    with Image.open(inputs.exif_jpeg) as img:
        assert img.size == (512, 400)  # stored sideways
        assert img.getexif()[0x0112] == 6
    rgb = load_image(inputs.exif_jpeg)
    upright = photo[:, EXIF_COLUMNS]
    assert rgb.shape == upright.shape == (512, 400, 3)
    assert _psnr(rgb, upright) > 30


def test_save_png_roundtrip(tmp_path, photo: NDArray[np.uint8]) -> None:
    out = save_png(tmp_path / "deep" / "frame.png", photo)
    assert out.is_file()
    assert np.array_equal(load_image(out), photo)
