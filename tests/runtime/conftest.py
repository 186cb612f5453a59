from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from rt_smile.config import DetectorConfig
from rt_smile.face.landmarks import LandmarkDetector, make_detector


@pytest.fixture(scope="session")
def sample_path() -> Path:
    return Path(str(resources.files("rt_smile.assets").joinpath("astronaut.png")))


@pytest.fixture(scope="session")
def mesh_detector() -> Iterator[LandmarkDetector]:
    det = make_detector(DetectorConfig(face="largest"))
    yield det
    det.close()
