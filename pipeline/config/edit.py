"""Editing a camera's zones, lines and masks in the config text: text in, text out, comments kept.

Why it is built this way:

- **The file stays the engineer's file.**  ``streams.yaml`` is written by people, with comments,
  aligned remarks and their own indentation.  The edit goes through ruamel.yaml's round-trip mode,
  and then only the lines that the edit changed are put back into the original text (a three-way
  merge of original, ruamel's rendering of it, and ruamel's rendering of the edit; see
  :func:`splice`), so every other camera stays byte-identical even where ruamel would have
  normalised spacing or indentation.  The result must read back as exactly the data ruamel
  produced, or the plain ruamel rendering is used instead.
- **One validation, passed in.**  :func:`check_text` writes the proposed text to a temporary file
  beside the config and runs the validator it is given on it (the dashboard passes
  ``pipeline.analyse.models.validate_config``, the function ``sharpeye check`` and ``sharpeye run``
  use: this layer may not import it); the problems name the config file and the proposed lines.

Nothing here reads or writes the config file itself, and nothing knows who asks: the caller checks
the scope, the version and writes the file.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import io
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from pipeline.config.load import ConfigError

log = logging.getLogger("sharpeye.config.edit")

DIGITS = 4  # relative coordinates: 1e-4 of the picture is a fifth of a pixel at 1920 px
NAME = r"^[^\x00-\x1f\x7f]+$"  # a YAML key the loader reads back: no control characters

Pt = tuple[float, float]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ZoneEdit(_Body):
    name: str = Field(min_length=1, max_length=100, pattern=NAME)
    was: str | None = Field(None, max_length=100, description="The zone's name when loaded (a rename).")
    polygon: list[Pt] = Field(max_length=500)


class LineEdit(_Body):
    name: str = Field(min_length=1, max_length=100, pattern=NAME)
    was: str | None = Field(None, max_length=100)
    a: Pt
    b: Pt
    direction: Literal["left_to_right", "right_to_left", "both"] = "both"


class GeometryEdit(_Body):
    """A camera's zones, lines, detection masks and motion masks as the editor sends them (all of them)."""

    zones: list[ZoneEdit] = Field(default_factory=list, max_length=200)
    lines: list[LineEdit] = Field(default_factory=list, max_length=200)
    masks: list[list[Pt]] = Field(default_factory=list, max_length=200)
    motion_masks: list[list[Pt]] = Field(default_factory=list, max_length=200)


def version(raw: bytes) -> str:
    """The text's version as the editor compares it (sha256 of the file's bytes)."""
    return hashlib.sha256(raw).hexdigest()


# ------------------------------------------------------------------------------------------ reading

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


def _named(cam: Any, key: str, items: Sequence[ZoneEdit | LineEdit]) -> None:
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
        if isinstance(it, ZoneEdit):
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


def edit_camera(text: str, camera_id: str, geo: GeometryEdit) -> str:
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



# ------------------------------------------------------------------------------------------ validating

Validator = Callable[[str], object]  # reads the config at a path; raises ConfigError with its problems


def check_text(path: Path, text: str, validate: Validator) -> list[str]:
    """``validate`` run on the proposed text, in a temporary file beside ``path`` (relative paths resolve
    alike); the problems as ``FILE:LINE: path: message`` lines naming ``path``, none when it passes."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".check", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
        try:
            validate(tmp)
        except ConfigError as e:
            return [p.replace(tmp, str(path)) for p in e.problems]
        return []
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def excerpt(path: Path, text: str, problems: list[str]) -> dict[str, str]:
    """The proposed lines the problems point at (line number → line), for the page to show beside them."""
    lines = text.splitlines()
    out = {}
    for p in problems:
        mt = re.match(re.escape(str(path)) + r":(\d+):", p)
        if mt and 0 < int(mt.group(1)) <= len(lines):
            out[mt.group(1)] = lines[int(mt.group(1)) - 1]
    return out


def diff(path: Path, text: str, new_text: str) -> str:
    """The edit as a unified diff (for the audit log and the page)."""
    return "".join(difflib.unified_diff(text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                        f"{path.name} (before)", f"{path.name} (after)", n=2))
