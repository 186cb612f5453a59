"""Machine description recorded with every benchmark result (``rt_smile.runtime.machine``)."""

from rt_smile.runtime.machine import machine_info

__all__ = ["machine_info"]
