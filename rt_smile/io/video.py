"""Writing frame sequences as H.264 MP4 (PyAV) and GIF (Pillow), reading them back, and tiling
them in a grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

Frames = NDArray[np.uint8]  # (T, H, W, 3) RGB


def write_mp4(path: str | Path, frames: Frames, fps: float, crf: int = 20) -> Path:
    """H.264 (yuv420p) MP4 at ``fps``; H and W must be even."""
    import av

    out = Path(path)
    with av.open(str(out), mode="w") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for frame in frames:
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            ):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out


def read_video(path: str | Path) -> tuple[Frames, float]:
    """All frames (T, H, W, 3) RGB of a video file and its average frame rate."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 0)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    return np.stack(frames).astype(np.uint8), rate


def write_gif(path: str | Path, frames: Frames, fps: float, max_side: int = 512) -> Path:
    """Looping GIF, downscaled so its longer side is at most ``max_side``."""
    from PIL import Image

    out = Path(path)
    images = [Image.fromarray(f) for f in frames]
    scale = min(1.0, max_side / max(images[0].size))
    if scale < 1.0:
        size = (round(images[0].width * scale), round(images[0].height * scale))
        images = [im.resize(size, Image.Resampling.BILINEAR) for im in images]
    images[0].save(out, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return out


def grid(videos: list[Frames], columns: int | None = None) -> Frames:
    """Tile K videos (T, H, W, 3) into one (T, rows·H, cols·W, 3), blank cells black."""
    k = len(videos)
    cols = columns or int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    t, h, w, c = videos[0].shape
    out = np.zeros((t, rows * h, cols * w, c), np.uint8)
    for i, v in enumerate(videos):
        r, q = divmod(i, cols)
        out[:, r * h : (r + 1) * h, q * w : (q + 1) * w] = v
    return out
