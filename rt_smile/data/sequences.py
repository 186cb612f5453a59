"""The smile-sequence data set format shared by SynthSmile and ingested videos.

One ``.npz`` file holds N variable-length landmark sequences, concatenated along time:

- ``points``: float32 (sum T, 468, 2), landmarks in the aligned canonical frame (inter-ocular
  distance units, eye midpoint at the origin, y down, the subject's right at x < 0), each frame
  aligned on its own stable points;
- ``offsets``: int64 (N + 1,), sequence i is ``points[offsets[i]:offsets[i + 1]]``;
- ``labels``: int64 (N,), index into ``CLASSES``;
- ``identity``: int64 (N,), who the sequence shows (splits are by identity);
- ``valid``: bool (sum T,), False for frames where no face was found (their points are
  interpolated from the neighbours);
- ``fps``: float, frames per second;
- ``meta``: a JSON string (source, generator parameters, seed, format version).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rt_smile.errors import RtSmileError

CLASSES = ("spontaneous", "posed")
FORMAT_VERSION = 1


class DatasetError(RtSmileError):
    """A data-set file is missing, corrupt, or of another format version."""


@dataclass(frozen=True)
class SmileSequences:
    """N landmark sequences (see the module docstring for the fields)."""

    points: NDArray[np.float32]
    offsets: NDArray[np.int64]
    labels: NDArray[np.int64]
    identity: NDArray[np.int64]
    valid: NDArray[np.bool_]
    fps: float
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def sequence(self, i: int) -> NDArray[np.float32]:
        """(T_i, 468, 2) landmarks of sequence i."""
        return self.points[self.offsets[i] : self.offsets[i + 1]]

    def lengths(self) -> NDArray[np.int64]:
        return np.diff(self.offsets)

    def subset(self, index: NDArray[np.int64]) -> SmileSequences:
        """The sequences at ``index``, in that order."""
        seqs = [self.sequence(int(i)) for i in index]
        valid = [self.valid[self.offsets[i] : self.offsets[i + 1]] for i in index]
        lengths = np.array([len(s) for s in seqs], np.int64)
        return SmileSequences(
            points=np.concatenate(seqs) if seqs else self.points[:0],
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            labels=self.labels[index],
            identity=self.identity[index],
            valid=np.concatenate(valid) if valid else self.valid[:0],
            fps=self.fps,
            meta=dict(self.meta),
        )

    def split_by_identity(self, test_fraction: float, seed: int = 0) -> tuple[SmileSequences, SmileSequences]:
        """(train, test) with no identity in both."""
        ids = np.unique(self.identity)
        rng = np.random.default_rng(seed)
        test_ids = rng.permutation(ids)[: max(1, round(test_fraction * len(ids)))]
        is_test = np.isin(self.identity, test_ids)
        return self.subset(np.flatnonzero(~is_test)), self.subset(np.flatnonzero(is_test))


def save_sequences(path: str | Path, data: SmileSequences) -> Path:
    """Write atomically (temporary file, then rename): no half-written file is left behind."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format_version": FORMAT_VERSION, "classes": list(CLASSES), **data.meta}
    fd, tmp = tempfile.mkstemp(prefix=out.name, suffix=".tmp.npz", dir=out.parent)
    os.close(fd)
    try:
        np.savez_compressed(
            tmp,
            points=data.points.astype(np.float32),
            offsets=data.offsets.astype(np.int64),
            labels=data.labels.astype(np.int64),
            identity=data.identity.astype(np.int64),
            valid=data.valid.astype(bool),
            fps=np.float64(data.fps),
            meta=np.array(json.dumps(meta)),
        )
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def load_sequences(path: str | Path) -> SmileSequences:
    """Read a data-set file; raises DatasetError with what to do on any problem."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"data set not found: {p} (make one with 'rt-smile dataset synth')")
    try:
        with np.load(p, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            data = SmileSequences(
                points=z["points"].astype(np.float32),
                offsets=z["offsets"].astype(np.int64),
                labels=z["labels"].astype(np.int64),
                identity=z["identity"].astype(np.int64),
                valid=z["valid"].astype(bool),
                fps=float(z["fps"]),
                meta=meta,
            )
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{p} is not an rt_smile data set (or is corrupt): {exc}") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise DatasetError(
            f"{p} has format version {meta.get('format_version')}, this rt_smile reads "
            f"{FORMAT_VERSION}; regenerate it"
        )
    if data.offsets[-1] != len(data.points) or len(data.offsets) != len(data.labels) + 1:
        raise DatasetError(f"{p} is inconsistent (offsets do not match points); regenerate it")
    return data
