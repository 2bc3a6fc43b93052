"""Shared fixtures: real servers (redis-server, the RTSP simulator) and the shared assets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from pipeline.runtime.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]


def asset_dir() -> Path:
    return Path(os.environ.get("SHARPEYE_ASSET_MIRROR", ROOT.parent / "shared"))


def clip(name: str) -> Path:
    """A shared clip: from the project's verified cache, else the mirror; skip when neither has it."""
    for p in (ROOT / ".cache" / "clips" / name, asset_dir() / "clips" / name):
        if p.exists():
            return p
    pytest.skip(f"clip {name} not available (run scripts/setup)")


@pytest.fixture(scope="session")
def person_clip() -> Path:
    return clip("one-by-one-person-detection.mp4")


@pytest.fixture(scope="session")
def car_clip() -> Path:
    return clip("car-detection.mp4")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port for the whole session."""
    srv = RedisServer(tmp_path_factory.mktemp("redis"), persist=False)
    url = srv.start()
    try:
        yield url
    finally:
        srv.stop()
