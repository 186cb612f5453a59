"""rt_smile: one neutral face photo in, several distinct live smile videos out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["SmileEngine", "SmileVideoTrack"]

if TYPE_CHECKING:
    from rt_smile.runtime.engine import SmileEngine
    from rt_smile.stream.track import SmileVideoTrack


def __getattr__(name: str) -> Any:
    """Public API, imported on first use (no heavy imports when the package loads)."""
    if name == "SmileVideoTrack":
        from rt_smile.stream.track import SmileVideoTrack

        return SmileVideoTrack
    if name == "SmileEngine":
        from rt_smile.runtime.engine import SmileEngine

        return SmileEngine
    raise AttributeError(f"module 'rt_smile' has no attribute {name!r}")
