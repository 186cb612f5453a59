"""``python -m rt_smile``: the ``rt-smile`` command line."""

from __future__ import annotations

from rt_smile.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
