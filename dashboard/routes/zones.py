"""Zone and line editor (issue 11 item 3): engineers draw a camera's zones, lines and masks on its picture.

Why it is built this way:

- **The file stays the engineer's file.**  ``streams.yaml`` is written by people, with comments,
  aligned remarks and their own indentation.  The edit goes through ruamel.yaml's round-trip mode,
  and then only the lines that the edit changed are put back into the original text (a three-way
  merge of original, ruamel's rendering of it, and ruamel's rendering of the edit; see
  :func:`splice`), so every other camera stays byte-identical even where ruamel would have
  normalised spacing or indentation.  The result must read back as exactly the data ruamel
  produced, or the plain ruamel rendering is used instead.
- **One validation.**  The new text is written to a temporary file beside the config and checked
  by :func:`pipeline.analyse.models.validate_config`, the function ``sharpeye check`` and ``sharpeye
  run`` use; a refused edit answers 422 with the ``FILE:LINE: path: message`` problems and leaves
  the file untouched.  Only then is the old file copied to ``<name>.bak`` and the new one moved
  over it (``os.replace``: readers see the old file or the new one, never half of one).
- **Hot reload for free.**  The workers watch the config's mtime (``pipeline.runtime.worker``),
  so the zones apply within a couple of seconds; the dashboard re-reads it the same way.
- **Lost updates are refused.**  The page loads the file's sha256 (``version``) and sends it
  back; a file changed in between (another engineer, an editor on the server) answers 409.
- **Who may.**  Engineers and admins (operators get 403, page and API), for the cameras of their
  grid cells only (404 otherwise, as for every camera route); every save is in the audit log
  (``edit_zones``) with the camera, the geometry before and after, and the diff of the file.

The picture under the drawing is one JPEG from the worker's live seam (docs/live.md, the
``jpeg`` format: the camera is never dialled a second time), else the camera's newest alert
snapshot, else none (the page draws on a grey 16:9 field).

**Preview.**  ``/api/zones/<camera>/detections`` gives the worker's newest detections (the live
seam's overlay channel, with a JPEG of the same moment) and the camera's rules with their
defaults resolved; the page tests each rule against them with the shapes as drawn, saved or not
(zones.js ``matchRules``: the per-object tests of ``pipeline.analyse.rules`` redone in the page,
since the dashboard imports no analysis code).  Timing (inertia, dwell, for_s) and schedules are
not judged from one frame; the page says so.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import difflib
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from dashboard.context import Dashboard, ctx
from dashboard.deps import refuse, remote_addr, require_role
from dashboard.pages import page
from dashboard.routes.live import live_seams  # the camera's worker, on this machine or (cluster) its owner
from dashboard.users import User
from history.audit import record
from pipeline.config import ConfigError
from pipeline.config.schema import CameraConfig
from pipeline.live import protocol
from pipeline.live.protocol import LiveError

log = logging.getLogger("sharpeye.dashboard.zones")
router = APIRouter()
engineer = require_role("engineer")

DIGITS = 4  # relative coordinates: 1e-4 of the picture is a fifth of a pixel at 1920 px
FRAME_TIMEOUT_S = 5.0
PREVIEW_AUDIT_S = 60.0
DETECTIONS_TIMEOUT_S = 3.0  # an overlay comes with every analysed frame (detect_fps); idle cameras send none
MAX_DIFF_CHARS = 20_000  # the audit row keeps the diff; a whole-file rewrite is cut here
_save_lock = threading.Lock()  # one save at a time in this process; the version check covers other writers

Pt = tuple[float, float]


# ------------------------------------------------------------------------------------------ request bodies

class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


NAME = r"^[^\x00-\x1f\x7f]+$"  # a YAML key the loader reads back: no control characters


class ZoneIn(_Body):
    name: str = Field(min_length=1, max_length=100, pattern=NAME)
    was: str | None = Field(None, max_length=100, description="The zone's name when loaded (a rename).")
    polygon: list[Pt] = Field(max_length=500)


class LineIn(_Body):
    name: str = Field(min_length=1, max_length=100, pattern=NAME)
    was: str | None = Field(None, max_length=100)
    a: Pt
    b: Pt
    direction: Literal["left_to_right", "right_to_left", "both"] = "both"


class GeometryIn(_Body):
    version: str = Field(min_length=64, max_length=64, description="sha256 of the file the page loaded.")
    zones: list[ZoneIn] = Field(default_factory=list, max_length=200)
    lines: list[LineIn] = Field(default_factory=list, max_length=200)
    masks: list[list[Pt]] = Field(default_factory=list, max_length=200)
    motion_masks: list[list[Pt]] = Field(default_factory=list, max_length=200)


# ------------------------------------------------------------------------------------------ reading the file

def _version(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _config_path(d: Dashboard) -> Path:
    path = d.config().path
    if path is None:
        raise refuse(409, "no_config_file")
    return Path(path).resolve()  # the file itself: replacing a symlink to it would cut the link


def _read(path: Path) -> tuple[bytes, dict[str, Any]]:
    """The file's bytes and its data (plain YAML: the page shows what is on disk, valid or not)."""
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise refuse(422, "config_unreadable", problems=[f"{path}: {' '.join(str(e).split())}"]) from None
    return raw, data if isinstance(data, dict) else {}


def _camera_entry(data: dict[str, Any], camera_id: str, user: User) -> dict[str, Any]:
    cams = data.get("cameras")
    cam = cams.get(camera_id) if isinstance(cams, dict) else None
    if not isinstance(cam, dict) or not user.sees_cell(str(cam.get("grid_cell"))):
        raise refuse(404, "not_found")
    return cam


def _point(v: Any) -> list[float] | None:
    if (isinstance(v, (list, tuple)) and len(v) == 2
            and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in v)):
        return [v[0], v[1]]
    return None


def _points(v: Any) -> list[list[float]] | None:
    if not isinstance(v, list):
        return None
    pts = [_point(p) for p in v]
    return None if any(p is None for p in pts) else pts  # type: ignore[return-value]


def geometry(cam: dict[str, Any]) -> dict[str, Any]:
    """A camera's zones, lines and masks as the page edits them; what cannot be read is named in ``unreadable``."""
    out: dict[str, Any] = {"zones": [], "lines": [], "masks": [], "motion_masks": [], "unreadable": []}
    zones = cam.get("zones") or {}
    for name, z in (zones.items() if isinstance(zones, dict) else []):
        poly = _points(z.get("polygon")) if isinstance(z, dict) else None
        if poly is None:
            out["unreadable"].append(f"zones.{name}")
        else:
            out["zones"].append({"name": str(name), "polygon": poly})
    lines = cam.get("lines") or {}
    for name, ln in (lines.items() if isinstance(lines, dict) else []):
        a = _point(ln.get("a")) if isinstance(ln, dict) else None
        b = _point(ln.get("b")) if isinstance(ln, dict) else None
        if a is None or b is None:
            out["unreadable"].append(f"lines.{name}")
        else:
            out["lines"].append({"name": str(name), "a": a, "b": b, "direction": ln.get("direction", "both")})
    motion: dict[str, Any] = cam["motion"] if isinstance(cam.get("motion"), dict) else {}
    for key, masks in (("masks", cam.get("masks")), ("motion_masks", motion.get("masks"))):
        for i, m in enumerate(masks if isinstance(masks, list) else []):
            poly = _points(m)
            if poly is None:
                out["unreadable"].append(f"{key}.{i}")
            else:
                out[key].append(poly)
    return out


def _rules(cam: dict[str, Any]) -> list[dict[str, Any]]:
    rules = cam.get("rules")
    return [{"id": str(rid), "kind": r.get("kind"), "zone": r.get("zone"), "line": r.get("line"),
             "labels": r.get("labels")} for rid, r in (rules.items() if isinstance(rules, dict) else [])
            if isinstance(r, dict)]


# ------------------------------------------------------------------------------------------ editing the YAML

def _yaml(text: str) -> Any:
    """A round-trip YAML with the file's own indentation (ruamel normalises to the one it is given)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.util import load_yaml_guess_indent

    keys = [len(ln) - len(ln.lstrip(" ")) for ln in text.splitlines()
            if ln.strip() and not ln.lstrip().startswith(("#", "-"))]
    mapping = min((k for k in keys if k > 0), default=2)
    try:  # the first block sequence's indentation, and where its dash sits
        _data, seq_indent, offset = load_yaml_guess_indent(text)
    except Exception:
        seq_indent, offset = None, None
    y = YAML()  # round-trip: comments, key order, flow/block style, quotes and anchors are kept
    y.preserve_quotes = True
    y.width = 1 << 16  # never fold a long line
    offset = offset or 0
    y.indent(mapping=mapping, sequence=max(seq_indent or mapping, offset + 2), offset=offset)
    return y


def _dump(y: Any, doc: Any) -> str:
    buf = io.StringIO()
    y.dump(doc, buf)
    return buf.getvalue()


def _same(a: Any, b: Sequence[float]) -> bool:
    p = _point(a)
    return p is not None and abs(p[0] - b[0]) < 1e-9 and abs(p[1] - b[1]) < 1e-9


def _num(v: float) -> float:
    return round(float(v), DIGITS) + 0.0  # + 0.0: never write -0.0


def _flow(items: list[Any]) -> Any:
    from ruamel.yaml.comments import CommentedSeq

    s = CommentedSeq(items)
    s.fa.set_flow_style()
    return s


def _new_point(p: Sequence[float], old: Any = None) -> Any:
    """The old point object when it did not move (its spelling stays: ``0`` is not rewritten ``0.0``)."""
    return old if old is not None and _same(old, p) else _flow([_num(p[0]), _num(p[1])])


def _new_polygon(points: Sequence[Sequence[float]], old: Any) -> Any:
    """A polygon in the old one's style (flow or block), reusing the points that did not move."""
    from ruamel.yaml.comments import CommentedSeq

    old_pts = list(old) if isinstance(old, list) else []
    if len(old_pts) == len(points) and all(_same(o, p) for o, p in zip(old_pts, points)):
        return old
    seq = CommentedSeq([_new_point(p, old_pts[i] if i < len(old_pts) else None) for i, p in enumerate(points)])
    block = isinstance(old, CommentedSeq) and old.fa.flow_style() is False
    if block:
        seq.fa.set_block_style()
    else:
        seq.fa.set_flow_style()
    return seq


def _flow_like(siblings: Any) -> bool:
    """New entries follow their siblings: ``name: {polygon: ...}`` when the others are written so."""
    from ruamel.yaml.comments import CommentedMap

    vals = [v for v in (siblings.values() if isinstance(siblings, dict) else []) if isinstance(v, CommentedMap)]
    return bool(vals) and all(v.fa.flow_style() for v in vals)


# where a key the camera does not have yet goes: before the first of these that it has
_BEFORE = {"zones": ("lines", "masks", "rules", "alerts", "motion", "idle", "watchdog"),
           "lines": ("masks", "rules", "alerts", "motion", "idle", "watchdog"),
           "masks": ("rules", "alerts", "motion", "idle", "watchdog"),
           "motion": ("idle", "watchdog")}


def _put(cam: Any, key: str, value: Any) -> None:
    if key in cam:
        cam[key] = value
        return
    keys = list(cam)
    for later in _BEFORE.get(key, ()):
        if later in cam:
            cam.insert(keys.index(later), key, value)
            return
    cam[key] = value


def _named(cam: Any, key: str, items: Sequence[ZoneIn | LineIn]) -> None:
    """Rebuild ``cam[key]`` (zones or lines) in the page's order, keeping every kept entry's object and comments."""
    from ruamel.yaml.comments import CommentedMap

    old = cam.get(key)
    old = old if isinstance(old, CommentedMap) else CommentedMap()
    if not items:
        if key in cam and len(old):
            del cam[key]
        return
    flow = _flow_like(old)
    new = CommentedMap()
    new.ca.comment = old.ca.comment
    for it in items:
        src = it.was if it.was is not None and it.was in old else it.name
        entry = old.get(src) if src in old else None
        if not isinstance(entry, CommentedMap):
            entry = CommentedMap()
            if flow:
                entry.fa.set_flow_style()
        if isinstance(it, ZoneIn):
            entry["polygon"] = _new_polygon(it.polygon, entry.get("polygon"))
        else:
            entry["a"] = _new_point(it.a, entry.get("a"))
            entry["b"] = _new_point(it.b, entry.get("b"))
            if "direction" in entry or it.direction != "both":
                entry["direction"] = it.direction
        new[it.name] = entry
        if src in old.ca.items:
            new.ca.items[it.name] = old.ca.items[src]
    if [list(new), [new[k] for k in new]] != [list(old), [old[k] for k in old]]:
        _put(cam, key, new)


def _polygon_list(parent: Any, key: str, polys: Sequence[Sequence[Sequence[float]]]) -> None:
    from ruamel.yaml.comments import CommentedSeq

    old = parent.get(key)
    old_list = list(old) if isinstance(old, list) else []
    if not polys:
        if key in parent and old_list:
            del parent[key]
        return
    if len(old_list) == len(polys) and all(
            isinstance(o, list) and len(o) == len(p) and all(_same(a, b) for a, b in zip(o, p))
            for o, p in zip(old_list, polys)):
        return
    seq = CommentedSeq([_new_polygon(p, old_list[i] if i < len(old_list) else None) for i, p in enumerate(polys)])
    if isinstance(old, CommentedSeq) and old.fa.flow_style():
        seq.fa.set_flow_style()
    else:
        seq.fa.set_block_style()
    _put(parent, key, seq)


def _anchored(node: Any) -> bool:
    """Whether anything in ``node`` carries an anchor: aliases elsewhere share it (the same object)."""
    anchor = getattr(node, "anchor", None)
    if anchor is not None and getattr(anchor, "value", None):
        return True
    if isinstance(node, dict):
        return any(_anchored(v) for v in node.values())
    if isinstance(node, list):
        return any(_anchored(v) for v in node)
    return False


def edit_camera(text: str, camera_id: str, geo: GeometryIn) -> str:
    """The config text with the camera's zones, lines and masks replaced, everything else as it was.

    Raises ValueError when the text is not a YAML mapping with that camera (ruamel's message).
    """
    from ruamel.yaml.comments import CommentedMap

    bom = text.startswith("\ufeff")
    crlf = "\r\n" in text
    original = (text[1:] if bom else text).replace("\r\n", "\n")
    y = _yaml(original)
    try:
        doc = y.load(original)
        before = _dump(y, doc)  # ruamel's own rendering of the untouched file
    except Exception as e:
        raise ValueError(" ".join(str(e).split())) from None
    cams = doc.get("cameras") if isinstance(doc, CommentedMap) else None
    cam = cams.get(camera_id) if isinstance(cams, CommentedMap) else None
    if not isinstance(cam, CommentedMap):
        raise ValueError(f"cameras.{camera_id} is not a mapping in the file")
    motion0 = cam.get("motion")
    for node in (cam.get("zones"), cam.get("lines"), cam.get("masks"),
                 motion0.get("masks") if isinstance(motion0, CommentedMap) else None):
        if _anchored(node):
            raise ValueError(f"cameras.{camera_id}: its zones, lines or masks use a YAML anchor (&name) or alias "
                             "(*name) shared with other places; the editor would change those too: edit the file")
    _named(cam, "zones", geo.zones)
    _named(cam, "lines", geo.lines)
    _polygon_list(cam, "masks", geo.masks)
    motion = cam.get("motion")
    if geo.motion_masks and not isinstance(motion, CommentedMap):
        motion = CommentedMap()
        _put(cam, "motion", motion)
    if isinstance(motion, CommentedMap):
        _polygon_list(motion, "masks", geo.motion_masks)
        if not len(motion):
            del cam["motion"]
    after = _dump(y, doc)
    out = splice(original, before, after)
    if crlf:
        out = out.replace("\n", "\r\n")
    return ("\ufeff" if bom else "") + out


# ------------------------------------------------------------------------------------------ the splice

def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _trivia(line: str) -> bool:
    s = line.strip()
    return not s or s.startswith("#")


def _trivia_run(lines: Sequence[str], end: int, start: int, indent: int) -> int:
    """How many lines before ``end`` (and from ``start`` on) are blank, or comments at most ``indent`` deep."""
    n = 0
    while end - n - 1 >= start:
        line = lines[end - n - 1]
        if not _trivia(line) or (line.strip() and _indent(line) > indent):
            break
        n += 1
    return n


@dataclass
class _Hunk:
    start: int  # lines [start, end) of ruamel's rendering of the original are replaced by `new`
    end: int
    new: list[str]


def _hunks(n: list[str], m: list[str], place_trivia: bool) -> list[_Hunk]:
    """The edit ``n -> m`` as hunks; with ``place_trivia``, comments stay with what follows them.

    ruamel hangs a comment on the node before it, so a key inserted after that node lands under the
    comment (which was about the next key), and deleting the node deletes the comment.  Here an
    insertion moves above the blank and comment lines just before it, and a deletion keeps them.
    """
    out = []
    prev_end = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, n, m, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        h = _Hunk(i1, i2, m[j1:j2])
        first = next((ln for ln in h.new if ln.strip()), None)
        if place_trivia and tag == "insert" and first is not None:
            k = _trivia_run(n, i1, prev_end, _indent(first))
            if k:
                h = _Hunk(i1 - k, i1, h.new + n[i1 - k:i1])
        elif place_trivia and tag in ("delete", "replace"):
            lead = next((ln for ln in n[i1:i2] if ln.strip()), None)
            if lead is not None:
                k = _trivia_run(n, i2, i1, _indent(lead))
                kept = n[i2 - k:i2]
                if k and not any(ln in h.new for ln in kept if ln.strip()):
                    h = _Hunk(i1, i2, h.new + kept)
        out.append(h)
        prev_end = i2
    return out


def splice(original: str, before: str, after: str) -> str:
    """Apply the change ``before -> after`` (two ruamel renderings) to ``original``, line by line.

    ``before`` is ruamel's rendering of ``original``: equal to it except where ruamel normalises
    (spacing after a colon, the indentation of sequences, ...).  Each changed region of ``before``
    is widened until both its ends fall where ``before`` and ``original`` agree, and the original's
    lines there are replaced by the edited lines; every other line keeps the original's bytes.  The
    result must load as the same data as ``after``: if it does not (with comments placed, then
    without), ``after`` itself is returned.
    """
    o, n, m = (s.splitlines(keepends=True) for s in (original, before, after))
    if n == m:
        return original
    no = difflib.SequenceMatcher(None, n, o, autojunk=False).get_opcodes()

    def widen(s: int, e: int) -> tuple[int, int]:
        """Ends moved out of any block ruamel normalised (where ``before`` and ``original`` differ)."""
        for tag, a1, a2, _b1, _b2 in no:
            if tag != "equal" and a1 < s < a2:
                s = a1
            if tag != "equal" and a1 < e < a2:
                e = a2
        return s, e

    def at(p: int) -> tuple[int, int]:
        """The original's lines (lo, hi) at the boundary before ``before[p]``: lines lo..hi exist only in the
        original (ruamel dropped them), so a region starts after them and ends before them."""
        lo, hi = 0, len(o)
        for _tag, a1, a2, b1, b2 in no:
            if a1 < p < a2:  # inside an equal block (widen() moved the ends out of the others)
                return b1 + p - a1, b1 + p - a1
            if a1 < p == a2:
                lo = b2
            if p == a1 < a2:
                hi = b1
        if p == len(n):
            hi = len(o)
        return lo, max(lo, hi)

    for place_trivia in (True, False):
        regions: list[tuple[int, int, list[_Hunk]]] = []
        for h in sorted(_hunks(n, m, place_trivia), key=lambda h: (h.start, h.end)):
            s, e = widen(h.start, h.end)
            hs = [h]
            while regions and (s < regions[-1][1] or s == e == regions[-1][0] == regions[-1][1]):
                ps, pe, phs = regions.pop()
                s, e = widen(min(s, ps), max(e, pe))
                hs = phs + hs
            regions.append((s, e, hs))
        out = list(o)
        for s, e, hs in reversed(regions):
            start = at(s)[1]
            stop = max(start, at(e)[0])
            new: list[str] = []
            p = s
            for h in hs:
                new += n[p:h.start] + h.new
                p = h.end
            out[start:stop] = new + n[p:e]
        text = "".join(out)
        try:
            if yaml.safe_load(text) == yaml.safe_load(after):
                return text
        except yaml.YAMLError:
            pass
    log.warning("zone editor: the edit could not be placed into the original lines; the file is written as "
                "ruamel renders it (comments kept, some spacing normalised)")
    return after


# ------------------------------------------------------------------------------------------ validate, then replace

class Refused(Exception):
    def __init__(self, status: int, code: str, **extra: Any):
        super().__init__(code)
        self.status, self.code, self.extra = status, code, extra


def _validate(path: Path, text: str) -> list[str]:
    """``sharpeye check`` on the proposed text, in a temporary file beside the config (relative paths resolve
    alike); the problems name the config file and the lines of the proposed text."""
    from pipeline.analyse.models import validate_config

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".check", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
        try:
            validate_config(tmp)
        except ConfigError as e:
            return [p.replace(tmp, str(path)) for p in e.problems]
        return []
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@dataclass
class Saved:
    changed: bool
    version: str
    before: dict[str, Any]
    after: dict[str, Any]
    diff: str
    backup: str | None
    grid_cell: str


def save_geometry(path: Path, camera_id: str, geo: GeometryIn, user: User) -> Saved:
    """Edit, validate, back up, replace; raises :class:`Refused` (409 changed, 422 invalid)."""
    with _save_lock:
        raw, data = _read(path)
        if _version(raw) != geo.version:
            raise Refused(409, "config_changed", version=_version(raw))
        cam = _camera_entry(data, camera_id, user)
        before, cell = geometry(cam), str(cam.get("grid_cell"))
        text = raw.decode("utf-8")
        try:
            new_text = edit_camera(text, camera_id, geo)
        except ValueError as e:
            raise Refused(422, "config_unreadable", problems=[f"{path}: {e}"]) from None
        if new_text == text:
            return Saved(False, _version(raw), before, before, "", None, cell)
        problems = _validate(path, new_text)
        if problems:
            lines = new_text.splitlines()
            excerpt = {}
            for p in problems:
                mt = re.match(re.escape(str(path)) + r":(\d+):", p)
                if mt and 0 < int(mt.group(1)) <= len(lines):
                    excerpt[mt.group(1)] = lines[int(mt.group(1)) - 1]
            raise Refused(422, "config_invalid", problems=problems, excerpt=excerpt)
        mode = path.stat().st_mode & 0o7777
        backup = path.with_name(path.name + ".bak")
        _write_atomic(backup, raw, mode)
        new_raw = new_text.encode("utf-8")
        _write_atomic(path, new_raw, mode)
        diff = "".join(difflib.unified_diff(text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                            f"{path.name} (before)", f"{path.name} (after)", n=2))
        after = geometry(_camera_entry(yaml.safe_load(new_text), camera_id, user))
        return Saved(True, _version(new_raw), before, after, diff, str(backup), cell)


# ------------------------------------------------------------------------------------------ the picture

async def _live_jpeg(d: Dashboard, camera_id: str) -> bytes | None:
    """One JPEG from the worker that runs the camera (its own packets, decoded for JPEG viewers only)."""
    try:
        stream = await protocol.open_stream(await live_seams(d, camera_id), camera_id, "sub", "jpeg")
    except LiveError:
        return None
    try:
        deadline = time.monotonic() + FRAME_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            kind, payload = await asyncio.wait_for(stream.read(), left)
            if kind == protocol.JPEG:
                return payload
        return None
    except (TimeoutError, LiveError, OSError):
        return None
    finally:
        await stream.close()


def _newest_snapshot(d: Dashboard, camera_id: str) -> Path | None:
    """The camera's newest alert snapshot: newest day folder first, newest file in it."""
    root = d.data_dir / "snapshots" / camera_id
    try:
        days = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True)
    except OSError:
        return None
    for day in days:
        files = [p for p in day.glob("*.jpg") if p.is_file()]
        if files:
            return max(files, key=lambda p: p.stat().st_mtime)
    return None


async def _live_overlay(d: Dashboard, camera_id: str, timeout: float) -> dict[str, Any] | None:
    """The next detection overlay of the worker that runs the camera (objects with relative boxes), or None.

    The overlay channel of the live seam carries the tracked objects of every analysed frame while
    somebody watches; subscribing here makes the worker mux the stream for a moment (a few ms of a
    core), the video bytes are dropped.
    """
    try:
        stream = await protocol.open_stream(await live_seams(d, camera_id), camera_id, "sub", "fmp4")
    except LiveError:
        return None
    try:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            kind, payload = await asyncio.wait_for(stream.read(), left)
            if kind == protocol.OVERLAY:
                return dict(json.loads(payload))
        return None
    except (TimeoutError, LiveError, OSError, ValueError):
        return None
    finally:
        await stream.close()


def rule_params(cam: CameraConfig) -> list[dict[str, Any]]:
    """The rules that run on the camera, with every default resolved: what the page's preview tests.

    Only the per-object tests of ``pipeline.analyse.rules`` (labels, score, box size, zone by
    the anchor, the side of a line); timing (inertia, dwell, for_s) and schedules are not judged
    from one frame, the page says so.
    """
    out = []
    for rid, r in cam.effective_rules().items():
        d = r.model_dump()
        out.append({"id": rid, "kind": d["kind"], "labels": list(d["labels"]),
                    "min_score": d["min_score"] if d["min_score"] is not None else cam.min_score,
                    "min_box": list(d["min_box"]), "zone": d.get("zone"), "line": d.get("line"),
                    "max_count": d.get("max_count"), "debounce": d.get("debounce"), "scheduled": bool(d["schedule"])})
    return out


# ------------------------------------------------------------------------------------------ routes

@router.get("/zones", include_in_schema=False)
async def zones_page(_user: User = Depends(engineer)) -> HTMLResponse:
    return page("zones.html")


@router.get("/api/zones")
async def zone_cameras(request: Request, user: User = Depends(engineer)) -> dict[str, Any]:
    """The cameras this engineer may edit (from the file on disk: disabled ones too)."""
    d = ctx(request)
    path = _config_path(d)
    _raw, data = await run_in_threadpool(_read, path)
    cfg = d.config()
    cams: dict[Any, Any] = data["cameras"] if isinstance(data.get("cameras"), dict) else {}
    out = []
    for cid, cam in cams.items():
        if not isinstance(cam, dict) or not user.sees_cell(str(cam.get("grid_cell"))):
            continue
        cell = cfg.grid_cells.get(str(cam.get("grid_cell")))
        out.append({"id": str(cid), "name": str(cam.get("name", cid)),
                    "grid_cell": {"id": cam.get("grid_cell"), "name": cell.name if cell else cam.get("grid_cell")}})
    return {"file": path.name, "cameras": out}


@router.get("/api/zones/{camera_id}")
async def camera_geometry(camera_id: str, request: Request, user: User = Depends(engineer)) -> dict[str, Any]:
    """The camera's zones, lines and masks as in the file now, its rules (what the zones are for) and the
    file's version for the save."""
    d = ctx(request)
    path = _config_path(d)
    raw, data = await run_in_threadpool(_read, path)
    cam = _camera_entry(data, camera_id, user)
    return {"camera": {"id": camera_id, "name": str(cam.get("name", camera_id)), "grid_cell": cam.get("grid_cell")},
            "file": path.name, "version": _version(raw), **geometry(cam), "rules": _rules(cam)}


@router.get("/api/zones/{camera_id}/frame")
async def camera_frame(camera_id: str, request: Request, user: User = Depends(engineer)) -> dict[str, Any]:
    """A picture to draw on: live (the worker's seam), else the newest alert snapshot, else none."""
    d = ctx(request)
    _raw, data = await run_in_threadpool(_read, _config_path(d))
    cam = _camera_entry(data, camera_id, user)
    jpeg = await _live_jpeg(d, camera_id)
    source, taken = "live", time.time()
    if jpeg is None:
        snap = await run_in_threadpool(_newest_snapshot, d, camera_id)
        if snap is None:
            return {"source": "none", "image": None, "time": None}
        jpeg, source, taken = await run_in_threadpool(snap.read_bytes), "snapshot", snap.stat().st_mtime

    def _audit() -> None:  # footage seen is logged, as on the wall
        with d.engine.begin() as conn:
            record(conn, "view_live" if source == "live" else "view_snapshot", user_id=user.id,
                   username=user.username, grid_cell_id=str(cam.get("grid_cell")),
                   data={"camera": camera_id, "format": "jpeg", "purpose": "zone_editor"}, remote=remote_addr(request))
    await run_in_threadpool(_audit)
    return {"source": source, "time": taken, "image": "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()}


@router.get("/api/zones/{camera_id}/detections")
async def camera_detections(camera_id: str, request: Request, picture: bool = False,
                            user: User = Depends(engineer)) -> dict[str, Any]:
    """The worker's newest detections on the camera (live seam overlay) and its rules with defaults resolved:
    the page tests each rule against them with the geometry being drawn (not yet saved).

    ``picture``: also a live JPEG taken at the same moment (both asked of the worker at once, a
    fraction of a second apart), so the boxes are drawn on the picture they belong to.
    """
    d = ctx(request)
    _raw, data = await run_in_threadpool(_read, _config_path(d))
    entry = _camera_entry(data, camera_id, user)  # 404 outside the engineer's cells
    cam = d.config().cameras.get(camera_id)
    overlay = jpeg = None
    if cam is not None and cam.enabled:
        if picture:
            overlay, jpeg = await asyncio.gather(_live_overlay(d, camera_id, DETECTIONS_TIMEOUT_S),
                                                 _live_jpeg(d, camera_id))
        else:
            overlay = await _live_overlay(d, camera_id, DETECTIONS_TIMEOUT_S)
    if jpeg is not None and _audit_due(user.id, camera_id):
        def _audit() -> None:  # footage seen is logged, once a minute per camera while the preview runs
            with d.engine.begin() as conn:
                record(conn, "view_live", user_id=user.id, username=user.username,
                       grid_cell_id=str(entry.get("grid_cell")),
                       data={"camera": camera_id, "format": "jpeg", "purpose": "zone_preview"},
                       remote=remote_addr(request))
        await run_in_threadpool(_audit)
    objects = [{"id": o.get("id"), "label": o.get("label"), "score": o.get("score"), "box": o.get("box")}
               for o in (overlay or {}).get("objects", []) if isinstance(o, dict)]
    return {"source": "live" if overlay is not None else "none", "time": time.time(),
            "received": (overlay or {}).get("received"), "objects": objects,
            "image": "data:image/jpeg;base64," + base64.b64encode(jpeg).decode() if jpeg is not None else None,
            "rules": rule_params(cam) if cam is not None else [], "min_score": cam.min_score if cam else None}


_audited: dict[tuple[int, str], float] = {}


def _audit_due(user_id: int, camera_id: str) -> bool:
    """One audit row a minute per engineer and camera while the preview polls (not one every 1.5 s)."""
    now = time.monotonic()
    if now - _audited.get((user_id, camera_id), -PREVIEW_AUDIT_S) < PREVIEW_AUDIT_S:
        return False
    _audited[(user_id, camera_id)] = now
    if len(_audited) > 10_000:
        _audited.clear()
    return True


@router.post("/api/zones/{camera_id}")
async def save_zones(camera_id: str, geo: GeometryIn, request: Request,
                     user: User = Depends(engineer)) -> dict[str, Any]:
    """Save the camera's geometry into the config file: 200 saved (or unchanged), 409 the file changed since
    it was loaded, 422 the result does not pass ``sharpeye check`` (``problems``: FILE:LINE lines)."""
    d = ctx(request)
    path = _config_path(d)
    for kind, items in (("zone", geo.zones), ("line", geo.lines)):
        names = [i.name for i in items]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise refuse(400, "duplicate_name", kind=kind, names=dup)
    try:
        saved = await run_in_threadpool(save_geometry, path, camera_id, geo, user)
    except Refused as e:
        raise refuse(e.status, e.code, **e.extra) from None
    if saved.changed:
        def _audit() -> None:
            with d.engine.begin() as conn:
                record(conn, "edit_zones", user_id=user.id, username=user.username, grid_cell_id=saved.grid_cell,
                       data={"camera": camera_id, "file": str(path), "before": saved.before, "after": saved.after,
                             "diff": saved.diff[:MAX_DIFF_CHARS]}, remote=remote_addr(request))
        await run_in_threadpool(_audit)
        log.info("%s edited the zones of camera %s in %s", user.username, camera_id, path)
    return {"changed": saved.changed, "version": saved.version, "diff": saved.diff, "backup": saved.backup,
            "geometry": saved.after}
