"""Holds: the recording ranges exports need, kept from retention until released (``<data_dir>/exports/holds.json``).

A plain JSON file, because the processes that read it (the supervisor's janitor) and write it
(``sharpeye export``, the dashboard) share nothing but the data directory.  Writers take an
exclusive ``flock`` on ``holds.json.lock`` and replace the file atomically, so a reader always sees
a whole file and two exports never lose each other's hold.  An export takes a *pending* hold on
the segments it is about to read before it opens the first one, so retention cannot delete them
under it, and replaces it with the segments it used once it is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.export.paths import exports_root

HOLDS_NAME = "holds.json"


@dataclass(frozen=True)
class HeldRange:
    camera: str
    start: float
    end: float


def holds_path(data_dir: Path) -> Path:
    return exports_root(data_dir) / HOLDS_NAME


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside ``path`` (``<path>.lock``) for a read-modify-write of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_json(path: Path, default: dict[str, Any]) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return default
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically (fsync'd temporary file, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # (a full disk): the old file stays whole, no stray temporary beside it
        raise


def _load(path: Path) -> dict[str, Any]:
    data = read_json(path, {"version": 1, "holds": {}})
    data.setdefault("holds", {})
    return data


def put(data_dir: Path, export_id: str, ranges: list[HeldRange], **info: Any) -> None:
    """Add or replace the hold of ``export_id`` (``info``: user, path, pending, case ...)."""
    path = holds_path(data_dir)
    with locked(path):
        data = _load(path)
        old = data["holds"].get(export_id, {})
        data["holds"][export_id] = {**info, "created": old.get("created", round(time.time(), 3)),
                                    "ranges": [{"camera": r.camera, "start": round(r.start, 3),
                                                "end": round(r.end, 3)} for r in ranges]}
        write_json(path, data)


def release(data_dir: Path, export_id: str) -> bool:
    """Drop the hold of ``export_id``; False when there was none."""
    path = holds_path(data_dir)
    with locked(path):
        data = _load(path)
        if data["holds"].pop(export_id, None) is None:
            return False
        write_json(path, data)
    return True


def release_many(data_dir: Path, export_ids: list[str]) -> list[str]:
    """Drop the holds of ``export_ids`` in one locked write; returns those that were held."""
    path = holds_path(data_dir)
    with locked(path):
        data = _load(path)
        gone = [e for e in dict.fromkeys(export_ids) if data["holds"].pop(e, None) is not None]
        if gone:
            write_json(path, data)
    return gone


def case_exports(data_dir: Path, case: str, index: dict[str, Any] | None = None) -> list[str] | None:
    """Every export id of ``case``: those the case index lists and every hold made for the case.

    None when no such case is known (neither in the index nor in any hold).  ``index`` is the
    cases index (``cases.read_index``), passed in because the index belongs to cases.py.
    """
    listed = ((index or {}).get("cases", {}).get(case) or {}).get("exports")
    held = [eid for eid, h in all_holds(data_dir).items() if h.get("case") == case]
    if listed is None and not held:
        return None
    return list(dict.fromkeys([*(listed or []), *held]))


def all_holds(data_dir: Path) -> dict[str, dict[str, Any]]:
    """Export id → its hold (ranges, created, user, path, ...)."""
    return dict(_load(holds_path(data_dir))["holds"])


def ranges_of(holds: dict[str, dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Camera → held (start, end) ranges, from :func:`all_holds`."""
    out: dict[str, list[tuple[float, float]]] = {}
    for h in holds.values():
        for r in h.get("ranges", []):
            out.setdefault(str(r["camera"]), []).append((float(r["start"]), float(r["end"])))
    return out
