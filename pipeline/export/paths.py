"""Names that become paths: camera ids, case names and export ids are checked, then resolved and kept inside their root.

A camera id or a case name typed on a command line or sent by a page ends up in a file name; a
name such as ``../../etc`` or an absolute path must never write, read or delete outside the
export folder.  Every name is checked against a pattern first (a clear message for the person
who typed it), and every path built from one is resolved and checked to lie under its root
afterwards (the second fence, for symbolic links and for anything the pattern missed).
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.config.schema import CAMERA_ID

EXPORTS_DIR = "exports"  # under data_dir: exports, cases, holds.json, cases.json
CASES_DIR = "cases"

_CAMERA_RE = re.compile(CAMERA_ID)
# a case name is shown to people and may be Chinese: word characters (any script), digits, space, _ . -;
# it starts with a word character, so never with a dot, a dash or a space
_CASE_RE = re.compile(r"^\w[\w .-]{0,79}$")
_EXPORT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class UnsafeName(ValueError):
    """A camera id, case name or export id that could leave the export folder, or is not a valid name."""


def check_camera_id(camera: str) -> str:
    if not _CAMERA_RE.match(camera):
        raise UnsafeName(f"camera id {camera!r} is not valid: letters, digits, _ and -, up to 64 characters")
    return camera


def check_case_name(name: str) -> str:
    if not _CASE_RE.match(name) or ".." in name or name != name.strip():
        raise UnsafeName(f"case name {name!r} is not valid: letters (any script), digits, space, _ . -, "
                         "up to 80 characters, starting with a letter or digit")
    return name


def check_export_id(export_id: str) -> str:
    if not _EXPORT_ID_RE.match(export_id) or ".." in export_id:
        raise UnsafeName(f"export id {export_id!r} is not valid")
    return export_id


def inside(root: Path, *parts: str) -> Path:
    """``root / parts`` resolved, or UnsafeName when the result is not strictly inside ``root``."""
    base = Path(root).resolve()
    path = base.joinpath(*parts).resolve()
    if path == base or not path.is_relative_to(base):
        raise UnsafeName(f"{'/'.join(parts)!r} would leave {base}")
    return path


def exports_root(data_dir: Path) -> Path:
    return Path(data_dir) / EXPORTS_DIR
