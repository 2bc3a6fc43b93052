"""Shared fixtures: real servers (redis-server), the shared assets (clips, the model).

Helpers that are not fixtures live in ``tests/support`` (``assets``, ``config``, ``waits``, ``media``,
``record``, ``dashboard`` ...); tests import them from there.  A missing asset (clip, model, simulator,
browser) FAILS a test by default; ``SHARPEYE_ALLOW_MISSING_ASSETS=1`` turns that into a skip
(see :mod:`tests.support.assets`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.runtime.redis_server import RedisServer
from tests.support.assets import ROOT, clip, model_file

# run outside scripts/test too: the shared mirror beside the repository, the repository's caches
os.environ.setdefault("SHARPEYE_ASSET_MIRROR", str(ROOT.parent / "shared"))
os.environ.setdefault("SHARPEYE_CACHE_DIR", str(ROOT / ".cache"))
os.environ.setdefault("SHARPEYE_MODELS_DIR", str(ROOT / ".cache" / "models"))


@pytest.fixture(scope="session")
def person_clip() -> Path:
    return clip("one-by-one-person-detection.mp4")


@pytest.fixture(scope="session")
def car_clip() -> Path:
    return clip("car-detection.mp4")


@pytest.fixture(scope="session")
def yolox_onnx() -> Path:
    """The shared YOLOX-Nano model (the bundled manifest's model)."""
    return model_file("yolox_nano.onnx")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for the whole session: unix socket in a 0700 folder, password in the URL."""
    srv = RedisServer(tmp_path_factory.mktemp("redis"), persist=False)
    url = srv.start()
    try:
        yield url
    finally:
        srv.stop()
