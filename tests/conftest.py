"""Shared fixtures and helpers: real servers (redis-server, the RTSP simulator), the shared assets,
one way to write a test config, and one way to wait for something to happen.

A missing asset (clip, model, simulator, browser) FAILS a test by default, so a CI machine that
lost one cannot pass by skipping half the suite; a developer without the assets opts in to skips
with ``SHARPEYE_ALLOW_MISSING_ASSETS=1``.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from pipeline.runtime.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
ALLOW_MISSING_ENV = "SHARPEYE_ALLOW_MISSING_ASSETS"


# ------------------------------------------------------------------------------------------ assets


# run outside scripts/test too: the shared mirror beside the repository, the repository's caches
os.environ.setdefault("SHARPEYE_ASSET_MIRROR", str(ROOT.parent / "shared"))
os.environ.setdefault("SHARPEYE_CACHE_DIR", str(ROOT / ".cache"))
os.environ.setdefault("SHARPEYE_MODELS_DIR", str(ROOT / ".cache" / "models"))


def asset_dir() -> Path:
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


# ------------------------------------------------------------------------------------------ configs

GRID_CELLS: dict[str, Any] = {"G1": {"name": "Xinhua Street", "officer": {"name": "Wang Wei", "phone": "13800000000"}}}


def _plain(value: Any) -> Any:
    """Paths become strings, so any test value dumps as plain YAML."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def config_dict(cameras: dict[str, dict[str, Any]], **top: Any) -> dict[str, Any]:
    """A valid config as a dict: one grid cell ``G1`` and the given cameras.

    Each camera gets ``name`` (its id, capitalised) and ``grid_cell: G1`` unless it sets them;
    ``top`` adds or replaces top-level sections (``bus``, ``alerts``, ``data_dir`` ...).
    """
    cams = {cid: {"name": cid.capitalize(), "grid_cell": "G1", **cam} for cid, cam in cameras.items()}
    return _plain({"grid_cells": GRID_CELLS, **top, "cameras": cams})


def config_text(cameras: dict[str, dict[str, Any]], **top: Any) -> str:
    """:func:`config_dict` as YAML text, cameras last, for ``parse_config`` or a file."""
    return yaml.safe_dump(config_dict(cameras, **top), sort_keys=False)


def write_config(folder: Path, cameras: dict[str, dict[str, Any]], name: str = "streams.yaml",
                 **top: Any) -> Path:
    """Write :func:`config_text` to ``folder/name``; relative paths in it resolve against ``folder``."""
    path = folder / name
    path.write_text(config_text(cameras, **top))
    return path


def line_of(path: Path, text: str) -> int:
    """1-based number of the first line of ``path`` that contains ``text`` (for error-location asserts)."""
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return n
    raise AssertionError(f"{text!r} not in {path}")


@pytest.fixture()
def make_config(tmp_path: Path) -> Callable[..., Path]:
    """``make_config(cameras={...}, **top) -> Path``: :func:`write_config` into the test's tmp_path."""

    def make(cameras: dict[str, dict[str, Any]], name: str = "streams.yaml", **top: Any) -> Path:
        return write_config(tmp_path, cameras, name=name, **top)

    return make


# ------------------------------------------------------------------------------------------ waiting


def wait_for(predicate: Callable[[], object], timeout: float, what: str | Callable[[], str],
             interval: float = 0.05) -> float:
    """Poll ``predicate`` until it is true; return the seconds it took.

    Tests wait on what they can observe (a counter, a state, a port) instead of sleeping a fixed
    time, so a slow shared machine makes them slower, not wrong.  On timeout the test fails with
    ``what`` (a callable is evaluated then, to show the state at that moment).
    """
    t0 = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - t0
        if time.monotonic() - t0 >= timeout:
            detail = what() if callable(what) else what
            pytest.fail(f"timed out after {timeout:g} s waiting for {detail}")
        time.sleep(interval)
