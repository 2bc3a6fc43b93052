"""Watchlists (布控): which plates the room wants to hear about the moment a camera reads them.

An entry is a plate pattern (exact, or with one character a witness did not see, written ``?``:
``藏D·T50?2``), the grid cells it covers (``*``: every cell) and an expiry.  The history database
holds the entries (:mod:`history.watchlists`); the dashboard mirrors the active ones, without their
reason or owner, into one bus key (:data:`MIRROR_KEY`) and the workers match every plate they read
against it (:func:`match`), so a hit is raised by the worker that read the plate, a second or two
after the vehicle came into view, and not when its track ends.

Pure: strings and numbers in, entries out.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipeline.analyse.plates import DIGITS, LETTERS, PROVINCES, SUFFIXES, compact, plate_kind

MIRROR_KEY = "watchlist"  # {prefix}:watchlist, a JSON string the dashboard writes and the workers read
UNKNOWN = "?"
ALL_CELLS = "*"
_SEPARATORS = "·.•・-_ :：'\"|"
_TAIL_FIX = {"O": "0", "I": "1"}
_FILL = PROVINCES + LETTERS + DIGITS + SUFFIXES


class PatternError(ValueError):
    """A plate pattern that no mainland plate can fit; the message says why."""


def parse_pattern(raw: str) -> str:
    """A plate pattern as typed (``藏d·t5022``, ``藏D T50?2``) in its compact form (``藏DT50?2``).

    At most one ``?``; with the ``?`` filled by some character the pattern must be a plate of the
    mainland grammar (:func:`pipeline.analyse.plates.plate_kind`), else :class:`PatternError`.
    """
    s = "".join(ch for ch in raw.strip() if ch not in _SEPARATORS).replace("？", UNKNOWN)
    if len(s) < 7:
        raise PatternError(f"plate {raw!r}: too short for a plate (7 or 8 characters, e.g. 藏D·T5022)")
    s = s[0] + s[1].upper() + "".join(_TAIL_FIX.get(ch.upper(), ch.upper()) for ch in s[2:])
    unknown = s.count(UNKNOWN)
    if unknown > 1:
        raise PatternError(f"plate {raw!r}: at most one unknown character (?)")
    if unknown == 0:
        if plate_kind(s) is None:
            raise PatternError(f"plate {raw!r}: not a mainland plate (province, letter, 5 or 6 letters/digits)")
        return s
    i = s.index(UNKNOWN)
    if not any(plate_kind(s[:i] + ch + s[i + 1:]) for ch in _FILL):
        raise PatternError(f"plate {raw!r}: no plate fits it whatever the ? stands for")
    return s


def display(pattern: str) -> str:
    """The compact pattern with its middle dot (``藏D·T50?2``), as plates are written."""
    return f"{pattern[:2]}·{pattern[2:]}"


def fits(pattern: str, plate: str) -> bool:
    """Whether a plate read (normal or compact form) fits a compact pattern (``?``: any one character)."""
    p = compact(plate)
    return len(p) == len(pattern) and all(a == UNKNOWN or a == b for a, b in zip(pattern, p))


@dataclass(frozen=True)
class Entry:
    """An active entry as the workers see it: no reason, no owner (the room reads those in the history)."""

    id: int
    pattern: str  # compact, may hold one ?
    cells: tuple[str, ...]  # ("*",): every cell
    expires_at: float | None  # epoch s; None: until removed

    def active(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at

    def covers(self, cell: str | None) -> bool:
        return ALL_CELLS in self.cells or (cell is not None and cell in self.cells)

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "pattern": self.pattern, "cells": list(self.cells), "expires_at": self.expires_at}


@dataclass(frozen=True)
class WatchlistHit:
    """A plate read on one camera's vehicle track that hit an entry: what its alert carries."""

    alert_id: str
    entry_id: int
    pattern: str
    plate: str  # as read, normal form (藏D·T5022)
    confidence: float
    camera_id: str
    track_id: int
    label: str
    box: tuple[float, float, float, float]
    first_t: float  # the track's first sight (epoch s)
    seen_t: float  # the frame the plate was read from, about (epoch s)


def alert_id(camera_id: str, entry_id: int, t: float) -> str:
    """``<camera>-<UTC yyyymmddThhmmss>-wl<entry>-<4 hex>``: unique, and says what it is."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(t))
    return f"{camera_id}-{stamp}-wl{entry_id}-{secrets.token_hex(2)}"


def match(entries: Iterable[Entry], plate: str, cell: str | None, now: float | None = None) -> list[Entry]:
    """The entries a plate read on a camera of ``cell`` hits now: active, covering the cell, fitting the plate.

    Exact entries first (a ``?`` entry hit by the same read says less)."""
    t = time.time() if now is None else now
    hits = [e for e in entries if e.active(t) and e.covers(cell) and fits(e.pattern, plate)]
    return sorted(hits, key=lambda e: (UNKNOWN in e.pattern, e.id))


def mirror_json(entries: Sequence[Entry], now: float | None = None) -> str:
    """What the dashboard writes under :data:`MIRROR_KEY`."""
    return json.dumps({"updated": time.time() if now is None else now, "entries": [e.to_dict() for e in entries]},
                      ensure_ascii=False)


def from_mirror(raw: str | bytes | None) -> list[Entry]:
    """The entries of a mirror (empty for none); entries that do not parse are skipped, never fatal."""
    if not raw:
        return []
    out = []
    for e in json.loads(raw).get("entries", []):
        try:
            exp = e.get("expires_at")
            out.append(Entry(int(e["id"]), str(e["pattern"]), tuple(str(c) for c in e["cells"]),
                             float(exp) if exp is not None else None))
        except (KeyError, TypeError, ValueError):
            continue
    return out
