"""The shared assets (clips, the model, the RTSP simulator) and what a test does when one is missing.

A missing asset FAILS a test by default, so a CI machine that lost one cannot pass by skipping half
the suite; a developer without the assets opts in to skips with ``SHARPEYE_ALLOW_MISSING_ASSETS=1``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]  # the repository
ALLOW_MISSING_ENV = "SHARPEYE_ALLOW_MISSING_ASSETS"


def asset_dir() -> Path:
    """The asset mirror (``$SHARPEYE_ASSET_MIRROR``, else ``../shared`` beside the repository)."""
    return Path(os.environ.get("SHARPEYE_ASSET_MIRROR", ROOT.parent / "shared"))


def missing_asset(what: str) -> NoReturn:
    """Fail (by default) or skip (opted in) a test that needs something this machine lacks.

    Failing is the default because a skip is silent in CI: a lost model or simulator would turn
    the end-to-end tests off without anyone noticing.
    """
    if os.environ.get(ALLOW_MISSING_ENV, "") not in ("", "0"):
        pytest.skip(f"{what} ({ALLOW_MISSING_ENV} is set)")
    pytest.fail(f"{what}: run scripts/setup (or set {ALLOW_MISSING_ENV}=1 to skip tests that need it)",
                pytrace=False)


def clip(name: str) -> Path:
    """A shared clip: from the project's verified cache, else the mirror."""
    for p in (ROOT / ".cache" / "clips" / name, asset_dir() / "clips" / name):
        if p.exists():
            return p
    missing_asset(f"clip {name} not found in .cache/clips or {asset_dir() / 'clips'}")


def model_file(name: str) -> Path:
    """A shared model file (``models/<name>`` in the asset mirror)."""
    p = asset_dir() / "models" / name
    if not p.is_file():
        missing_asset(f"model file {p} not found")
    return p


@functools.cache
def _camsim_reason() -> str | None:
    from pipeline.tools.simulator import camsim_unavailable

    return camsim_unavailable()  # runs the system Python once: cached for the session


def require_camsim() -> None:
    """The GStreamer RTSP simulator (scripts/camsim.py) must be able to run here."""
    if reason := _camsim_reason():
        missing_asset(f"RTSP simulator unavailable: {reason}")


def require_redis_server() -> None:
    """A redis-server binary that tests can start (the bench and the cluster tests start their own)."""
    from pipeline.runtime.redis_server import find_redis_server

    try:
        find_redis_server()
    except FileNotFoundError as e:
        missing_asset(str(e))
