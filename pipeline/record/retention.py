"""Deleting old recordings: by age, then oldest first over quotas, never what ``protected`` vetoes.

Everything is decided from file names and ``stat`` sizes; deletions are appended to the index
(never rewritten) so a reader can tell deleted video from video that was never recorded.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipeline.record.layout import INDEX_NAME, SegmentInfo, has_gap_records, parse_segment_name, write_deleted

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    deleted_files: int = 0
    freed_bytes: int = 0
    kept_protected: int = 0  # segments that were due but protected
    errors: int = 0


# protected(camera, start, end): True keeps the segment (an export, an open incident needs it)
Protected = Callable[[str, float, float], bool]


class Retention:
    """Deletes old recordings: by age, then oldest first over the total and per-camera quotas.

    Everything is decided from file names and ``stat`` sizes.  ``protected(camera, start,
    end)`` vetoes a deletion (exports, open incidents); a protected segment still counts
    towards the quota, so a quota can be exceeded by protected video, never by deleting it.
    The segment being written (a ``.part`` file) is never touched.
    """

    def __init__(self, recordings_dir: str | Path, retain_days: float, quota_bytes: int | None = None,
                 camera_quota_bytes: int | None = None, protected: Protected | None = None):
        self.dir = Path(recordings_dir)
        self.retain_days = retain_days
        self.quota_bytes = quota_bytes
        self.camera_quota_bytes = camera_quota_bytes
        self.protected = protected

    def scan(self) -> list[SegmentInfo]:
        """All finished segments on disk, oldest first."""
        out: list[SegmentInfo] = []
        if not self.dir.is_dir():
            return out
        for cam in _subdirs(self.dir):
            for day in _subdirs(cam):
                for hour in _subdirs(day):
                    for e in os.scandir(hour):
                        parsed = parse_segment_name(e.name)
                        if parsed is None:
                            continue
                        try:
                            size = e.stat().st_size
                        except FileNotFoundError:
                            continue
                        out.append(SegmentInfo(cam.name, parsed[0], parsed[0] + parsed[1], Path(e.path), size))
        out.sort(key=lambda s: s.start)
        return out

    def sweep(self, now: float | None = None) -> SweepResult:
        now = time.time() if now is None else now
        result = SweepResult()
        segs = self.scan()
        alive: list[SegmentInfo] = []
        cutoff = now - self.retain_days * 86400
        for s in segs:
            if s.end < cutoff and self._may_delete(s, result):
                self._delete(s, "age", result)
            else:
                alive.append(s)
        if self.quota_bytes is not None:
            alive = self._enforce(alive, self.quota_bytes, "quota", result)
        if self.camera_quota_bytes is not None:
            by_cam: dict[str, list[SegmentInfo]] = {}
            for s in alive:
                by_cam.setdefault(s.camera, []).append(s)
            for cam_segs in by_cam.values():
                self._enforce(cam_segs, self.camera_quota_bytes, "camera_quota", result)
        self._remove_empty(cutoff)
        if result.deleted_files:
            log.info("retention: deleted %d segments, freed %.1f MB (%d protected kept)",
                     result.deleted_files, result.freed_bytes / 1e6, result.kept_protected)
        return result

    def _enforce(self, segs: list[SegmentInfo], quota: int, why: str, result: SweepResult) -> list[SegmentInfo]:
        """Delete the oldest deletable segments until ``segs`` fit ``quota``; returns the survivors."""
        total = sum(s.bytes for s in segs)
        keep: list[SegmentInfo] = []
        for s in segs:  # oldest first
            if total > quota and self._may_delete(s, result) and self._delete(s, why, result):
                total -= s.bytes
                continue
            keep.append(s)
        return keep

    def _may_delete(self, s: SegmentInfo, result: SweepResult) -> bool:
        if self.protected is not None and self.protected(s.camera, s.start, s.end):
            result.kept_protected += 1
            return False
        return True

    def _delete(self, s: SegmentInfo, why: str, result: SweepResult) -> bool:
        try:
            s.path.unlink()
        except FileNotFoundError:
            return True
        except OSError as e:
            result.errors += 1
            log.error("retention: cannot delete %s: %s", s.path, e)
            return False
        result.deleted_files += 1
        result.freed_bytes += s.bytes
        try:
            write_deleted(self.dir, s, why)
        except OSError as e:
            result.errors += 1
            log.error("retention: cannot mark %s deleted in the index: %s", s.path, e)
        return True

    def _remove_empty(self, cutoff: float) -> None:
        """Drop empty hour folders; then a day with no hour left goes with its index.

        A day folder that still holds only gap records is kept until it is older than the
        retention, so gaps stay visible as long as the video around them would have been.
        """
        for cam in _subdirs(self.dir):
            for day in _subdirs(cam):
                for hour in _subdirs(day):
                    _rmdir_quiet(hour)
                if any(p.is_dir() for p in day.iterdir()):
                    continue
                try:
                    day_end = datetime.strptime(day.name, "%Y-%m-%d").replace(tzinfo=UTC).timestamp() + 86400
                except ValueError:
                    continue  # not ours
                if day_end < cutoff or not has_gap_records(day):
                    (day / INDEX_NAME).unlink(missing_ok=True)
                    _rmdir_quiet(day)
            _rmdir_quiet(cam)


def _subdirs(p: Path) -> list[Path]:
    try:
        return sorted(Path(e.path) for e in os.scandir(p) if e.is_dir())
    except FileNotFoundError:
        return []


def _rmdir_quiet(p: Path) -> None:
    try:
        p.rmdir()
    except OSError:  # not empty (a writer is busy there), or gone already
        pass
