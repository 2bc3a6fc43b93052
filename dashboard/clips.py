"""The clip inside an alert: the recorded segments around it stream-copied into one seekable MP4, cached.

The cutting is the export's (``pipeline.export.cut.cut_camera``: stream copy, continuous timeline,
starts at the keyframe at or before the window); here it is only aimed at an alert's window and
cached, so opening an alert twice cuts once.  A clip of an alert that is still open covers what
is recorded so far and is cut again when more is recorded (the cache key holds the covered end).

Only finished segments are read (a plain MP4 is unreadable while it is written).  For an open
alert the dashboard first asks the worker that runs the camera, through the live seam's ``finish``
op, to finish its open segment at the next keyframe (no packet lost, no gap: that segment is only
shorter), so the clip reaches within about one keyframe interval of now.  With ``cluster.enabled``
that worker is the camera's lease owner, wherever it runs, reached through the seam it announced in
Redis with a request signed by the site key (``dashboard/services/live.py``, docs/live.md); its
segments come through the fetcher.  When no worker answers (the camera is not running) the clip
covers what is finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.export.cut import cut_camera
from pipeline.export.fetch import SegmentFetcher
from pipeline.record.catalog import Recordings
from pipeline.record.layout import Gap, SegmentInfo

CACHE_KEEP_S = 24 * 3600.0
SAME_ALERT_KEEP = 3  # versions of one alert's clip kept (an open alert's clip grows at each opening)
VERSION = re.compile(r"[0-9]{1,16}-[0-9]{1,16}")


class ClipError(Exception):
    """No clip can be made; ``code`` is what the page shows (no_recording)."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True)
class Clip:
    path: Path
    start: float  # epoch seconds of the clip's first frame (a keyframe at or before the window's start)
    end: float
    duration: float
    gaps: list[dict[str, Any]]
    cached: bool
    version: str


def _key(camera: str, alert_id: str) -> str:
    return hashlib.sha256(f"{camera}\0{alert_id}".encode()).hexdigest()[:20]


def cut_clip(recordings_dir: Path, cache_dir: Path, camera: str, alert_id: str, start: float, end: float,
             is_open: bool = False, fetcher: SegmentFetcher | None = None) -> Clip:
    """The clip of [start, end] for one alert, from the cache when what it covers has not changed.

    ``fetcher`` (cluster): the parts of the window another machine recorded (the camera moved) are
    fetched from it first (pipeline/export/fetch.py), so the clip spans the move."""
    rec = Recordings(recordings_dir)
    segs = rec.segments(camera, start, end)
    if fetcher is not None:
        segs = fetcher.complete(camera, start, end, segs)
    if not segs:
        raise ClipError("no_recording", f"nothing of camera {camera} is recorded between {start:.0f} and {end:.0f}")
    covered = min(end, segs[-1].end)
    key = _key(camera, alert_id)
    version = f"{round(start * 1000)}-{round(covered * 1000)}"
    final = cache_dir / f"{key}-{version}.mp4"
    meta_path = final.with_suffix(".json")
    holes = rec.gaps(camera, start, covered)
    if fetcher is not None and any(s.path in fetcher.origin for s in segs):
        holes = _holes(holes, [g for g in fetcher.moves.get(camera, []) if g.start < covered], segs, start, covered)
    gaps = [{"start": g.start, "end": g.end, "reason": g.reason} for g in holes]
    if final.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return Clip(final, meta["start"], meta["end"], meta["duration"], gaps, True, version)
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".cut-", dir=cache_dir))
    try:
        cut = cut_camera(recordings_dir, camera, start, covered, work, segments=segs)
        if not cut.files:
            raise ClipError("no_recording", f"the recordings of camera {camera} hold no frame in the alert's window")
        f = cut.files[0]
        meta = {"start": f.start, "end": f.end, "duration": f.duration_s, "camera": camera, "alert_id": alert_id,
                "notes": cut.notes, "skipped": [str(s.path) for s in cut.skipped]}
        os.replace(f.path, final)
        meta_path.write_text(json.dumps(meta))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _prune(cache_dir, keep=final, same_alert=key)
    return Clip(final, meta["start"], meta["end"], meta["duration"], gaps, False, version)


def _holes(local: list[Gap], moves: list[Gap], segs: list[SegmentInfo], start: float, end: float) -> list[Gap]:
    """The window's holes when some segments came from other machines: this machine's recorded gaps
    (with reasons) where no fetched segment covers them, the moves between machines, and "not
    recorded" where nothing does."""
    spans = sorted((s.start, s.end) for s in segs)

    def covered(t0: float, t1: float) -> bool:
        return any(a <= t0 + 1.0 and b >= t1 - 1.0 for a, b in spans)

    out = [g for g in local if g.reason != "not recorded" and not covered(g.start, g.end)] + moves
    t = start
    for a, b in spans + [(end, end)]:
        if a - t > 1.0 and not any(g.start <= t + 1.0 and g.end >= a - 1.0 for g in out):
            out.append(Gap(t, min(a, end), "not recorded"))
        t = max(t, b)
    return sorted(out, key=lambda g: g.start)


def cached_clip(cache_dir: Path, camera: str, alert_id: str, version: str) -> Path | None:
    """The file of one cut version, when still cached: a page plays the version its info named.

    An open alert's clip is cut again on every opening (it grows); a player that is seeking in an
    earlier version must keep getting the same bytes, not a longer file under the same URL.
    """
    if not VERSION.fullmatch(version):
        return None
    path = cache_dir / f"{_key(camera, alert_id)}-{version}.mp4"
    return path if path.is_file() else None


def _prune(cache_dir: Path, keep: Path, same_alert: str) -> None:
    """Cuts of the same alert beyond the newest few go (a page may still be playing one), any cut after a day.

    The recordings are the original; a cut is only a cache.
    """
    now = time.time()
    mine: list[tuple[float, Path]] = []
    for p in cache_dir.glob("*.mp4"):
        if p == keep:
            continue
        try:
            mtime = p.stat().st_mtime
            if now - mtime > CACHE_KEEP_S:
                _drop(p)
            elif p.name.startswith(same_alert + "-"):
                mine.append((mtime, p))
        except OSError:
            continue
    for _mtime, p in sorted(mine, reverse=True)[SAME_ALERT_KEEP - 1:]:
        _drop(p)


def _drop(p: Path) -> None:
    p.unlink(missing_ok=True)
    p.with_suffix(".json").unlink(missing_ok=True)
