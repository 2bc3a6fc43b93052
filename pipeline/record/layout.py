"""Where recordings live on disk and what the per-day index says: the one place that knows the names.

Files are named after what readers need, ``<camera>/<YYYY-MM-DD>/<HH>/<start>-<dur>.mp4`` (UTC
folders, epoch seconds with ms), so ranges, gaps and retention are answered from directory
listings without opening a file.  A segment is written as ``<start>.mp4.part`` and renamed when
complete.  Each camera and UTC day has an append-only ``index.jsonl``: one line per segment, gap
(with its reason) and deletion, each appended with a single write.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

INDEX_NAME = "index.jsonl"
PART_SUFFIX = ".mp4.part"
SEGMENT_RE = re.compile(r"^(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)\.mp4$")


@dataclass(frozen=True)
class SegmentInfo:
    """A finished segment file; start and end are epoch seconds taken from its name."""

    camera: str
    start: float
    end: float
    path: Path
    bytes: int = 0

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Gap:
    """A time without recording and why: 'no packets for 20.0 s', 'reconnect: ...'."""

    start: float
    end: float
    reason: str


# --------------------------------------------------------------------------- names


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def date_dir(recordings_dir: Path, camera: str, t: float) -> Path:
    return Path(recordings_dir) / camera / _utc(t).strftime("%Y-%m-%d")


def hour_dir(recordings_dir: Path, camera: str, t: float) -> Path:
    """The folder of the segments that start in the UTC hour of ``t``."""
    return date_dir(recordings_dir, camera, t) / _utc(t).strftime("%H")


def segment_path(recordings_dir: Path, camera: str, start: float, duration: float) -> Path:
    """Where a segment starting at epoch ``start`` lives: folders by UTC date and hour."""
    return hour_dir(recordings_dir, camera, start) / f"{start:.3f}-{duration:.3f}.mp4"


def parse_segment_name(name: str) -> tuple[float, float] | None:
    """``'1700000000.040-10.000.mp4'`` → (start, duration); None for anything else (.part files)."""
    m = SEGMENT_RE.match(name)
    return (float(m.group(1)), float(m.group(2))) if m else None


def part_path(recordings_dir: Path, camera: str, start: float) -> Path:
    """The name a segment is written under until it is complete (its duration is not known yet)."""
    return hour_dir(recordings_dir, camera, start) / f"{start:.3f}{PART_SUFFIX}"


def part_files(recordings_dir: Path, camera: str) -> list[Path]:
    """Unfinished segments of a camera: the one being written, or ones a crash left behind."""
    cam = Path(recordings_dir) / camera
    return list(cam.glob(f"*/*/*{PART_SUFFIX}")) if cam.is_dir() else []


def part_start(part: Path) -> float:
    """Start (epoch seconds) of an unfinished segment; ValueError when the name is not ours."""
    return float(part.name[: -len(PART_SUFFIX)])


def utc_days(start: float, end: float) -> Iterator[float]:
    """One timestamp inside each UTC day from ``start`` to ``end``."""
    day = _utc(start).replace(hour=0, minute=0, second=0, microsecond=0)
    while day.timestamp() <= end:
        yield max(day.timestamp(), start)
        day += timedelta(days=1)


# --------------------------------------------------------------------------- index: writing


def _append_index(recordings_dir: Path, camera: str, t: float, record: dict) -> None:
    """One JSON line, appended with a single write so concurrent appenders never interleave."""
    d = date_dir(recordings_dir, camera, t)
    d.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(d / INDEX_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _relative(recordings_dir: Path, seg: SegmentInfo) -> str:
    return str(seg.path.relative_to(date_dir(recordings_dir, seg.camera, seg.start)))


def write_segment(recordings_dir: Path, seg: SegmentInfo, **extra: object) -> None:
    """Index a finished segment; ``extra`` adds fields such as ``packets`` or ``recovered``."""
    _append_index(recordings_dir, seg.camera, seg.start, {
        "type": "segment", "start": round(seg.start, 3), "end": round(seg.end, 3),
        "path": _relative(recordings_dir, seg), "bytes": seg.bytes, **extra})


def write_gap(recordings_dir: Path, camera: str, gap: Gap) -> None:
    """Record a gap, one line per UTC day it touches, so a reader needs only the window's days."""
    for t in utc_days(gap.start, gap.end):
        day_end = (_utc(t).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)).timestamp()
        _append_index(recordings_dir, camera, t, {
            "type": "gap", "start": round(max(gap.start, t), 3), "end": round(min(gap.end, day_end), 3),
            "reason": gap.reason})


def write_deleted(recordings_dir: Path, seg: SegmentInfo, reason: str) -> None:
    """Mark a segment deleted (retention appends instead of rewriting the index)."""
    _append_index(recordings_dir, seg.camera, seg.start, {
        "type": "deleted", "path": _relative(recordings_dir, seg),
        "start": round(seg.start, 3), "reason": reason, "at": round(time.time(), 3)})


# --------------------------------------------------------------------------- index: reading


def iter_index(recordings_dir: str | Path, camera: str, start: float, end: float) -> Iterable[dict]:
    """Raw index records of the days touching [start, end] (segments, gaps, deletions)."""
    for t in utc_days(start, end):
        try:
            with open(date_dir(Path(recordings_dir), camera, t) / INDEX_NAME, encoding="utf-8") as f:
                for line in f:
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue
        except FileNotFoundError:
            continue


def read_gaps(recordings_dir: Path, camera: str, start: float, end: float) -> Iterator[Gap]:
    """Gap records overlapping [start, end], in file order; a gap over midnight comes in one piece per day."""
    for t in utc_days(start, end):
        try:
            with open(date_dir(recordings_dir, camera, t) / INDEX_NAME, encoding="utf-8") as f:
                for line in f:
                    if '"gap"' not in line:  # skip the many segment lines without parsing them
                        continue
                    try:
                        r = json.loads(line)
                    except ValueError:
                        continue  # a torn last line after a crash
                    if r.get("type") == "gap" and r["start"] < end and r["end"] > start:
                        yield Gap(float(r["start"]), float(r["end"]), str(r.get("reason", "")))
        except FileNotFoundError:
            continue


def has_gap_records(day: Path) -> bool:
    """Whether a day folder's index holds any gap (retention keeps such a day while it is young)."""
    try:
        with open(day / INDEX_NAME, encoding="utf-8") as f:
            return any('"gap"' in line for line in f)
    except FileNotFoundError:
        return False
