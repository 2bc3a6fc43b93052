"""One way to write a test config: a valid config from a few camera entries, as a dict, YAML text or a file."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml

from pipeline.config.secrets import map_leaves
from pipeline.runtime.redis_server import write_secret_file


def write_private(path: Path, text: str) -> Path:
    """``text`` in a file only its owner may read (0600), as a Redis URL file or a key file must be."""
    write_secret_file(path, text)
    return path


def new_site_key(path: Path) -> Path:
    """A new site key (32 random bytes, base64) in a private file, as every host's config names it."""
    return write_private(path, base64.b64encode(os.urandom(32)).decode())


GRID_CELLS: dict[str, Any] = {"G1": {"name": "Xinhua Street", "officer": {"name": "Wang Wei", "phone": "13800000000"}}}


def _plain(value: Any) -> Any:
    """Paths become strings, so any test value dumps as plain YAML."""
    return map_leaves(value, lambda v: str(v) if isinstance(v, Path) else v)


def config_dict(cameras: dict[str, dict[str, Any]], **top: Any) -> dict[str, Any]:
    """A valid config as a dict: one grid cell ``G1`` and the given cameras.

    Each camera gets ``name`` (its id, capitalised) and ``grid_cell: G1`` unless it sets them;
    ``top`` adds or replaces top-level sections (``bus``, ``alerts``, ``data_dir``, ``grid_cells`` ...).
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
