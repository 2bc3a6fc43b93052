"""The one safe way to turn a path a request names into a file to serve.

Every file the dashboard serves (snapshots, clips, recordings, exports, cases, static assets) goes
through :func:`safe_join`: the relative path is split on ``/``, and any part that is empty, ``.``,
``..``, holds a NUL or control character, a backslash, or a percent sequence left over after the
server's one decoding (``%2e``, ``%2f``, ``%5c``, ``%00``: double encoding) is refused; the joined
path is resolved (symlinks too) and must still lie under the intended root.  The raw request path
is checked too (:func:`raw_path_ok`), so ``parking%2f..%2flobby`` is refused even though the server
decoded it into separators before the route saw it.

The scope check belongs to the *resolved* path: :func:`first_part` names the camera (or other top
folder) the file really lies under, which is what a route must check against the user's cells.
"""

from __future__ import annotations

import re
from pathlib import Path

MAX_PATH = 1024
_LEFTOVER = re.compile(r"%(2e|2f|5c|00|25)", re.IGNORECASE)  # still encoded after one decoding
_RAW_BAD = re.compile(rb"%(2f|5c|00)", re.IGNORECASE)  # an encoded separator or NUL in the raw path


class UnsafePath(ValueError):
    """The path leaves its root, or is written in a way no honest page writes it."""


def parts(rel: str) -> tuple[str, ...]:
    """The parts of a relative URL path, or :class:`UnsafePath`."""
    if not rel or len(rel) > MAX_PATH:
        raise UnsafePath("empty or too long")
    if rel.startswith("/"):
        raise UnsafePath("absolute path")
    if _LEFTOVER.search(rel):
        raise UnsafePath("encoded character in path")
    out = tuple(rel.split("/"))
    for p in out:
        if p in ("", ".", ".."):
            raise UnsafePath(f"path part {p!r}")
        if "\\" in p or any(ord(c) < 32 or ord(c) == 127 for c in p):
            raise UnsafePath("control character or backslash in path")
    return out


def raw_path_ok(raw: bytes | None) -> bool:
    """False when the request's raw path carries an encoded separator or NUL (``%2f``, ``%5c``, ``%00``)."""
    return raw is None or not _RAW_BAD.search(raw)


def safe_join(root: Path, rel: str, *, must_exist: bool = True) -> Path:
    """``root/rel`` resolved, only when it stays under ``root`` (and is a file, by default)."""
    ps = parts(rel)
    base = root.resolve()
    try:
        path = base.joinpath(*ps).resolve()
    except (OSError, RuntimeError, ValueError) as e:  # a symlink loop, an odd name
        raise UnsafePath(str(e)) from None
    if path == base or not path.is_relative_to(base):
        raise UnsafePath("outside its root")
    if must_exist and not path.is_file():
        raise UnsafePath("no such file")
    return path


def first_part(root: Path, path: Path) -> str:
    """The top folder of a resolved ``path`` under ``root`` (the camera of a snapshot or recording)."""
    return path.relative_to(root.resolve()).parts[0]
