"""rt_smile: one neutral face photo in, several distinct live smile videos out."""

from __future__ import annotations

__version__ = "0.1.0"
