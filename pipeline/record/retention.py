"""Deleting old recordings and alert snapshots: by age, then oldest first over quotas or to free disk
space, never what ``protected`` vetoes.

Everything is decided from file names, ``stat`` sizes and (for snapshots) modification times;
deletions of segments are appended to the index (never rewritten) so a reader can tell deleted video
from video that was never recorded.  Snapshots (``<data_dir>/snapshots/<camera>/<YYYY-MM-DD>/*.jpg``,
written by ``pipeline.publish.events.write_snapshot``) age out with the recordings, under the same
``retain_days``: an alert's picture is worth keeping as long as the video around it.
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


SNAPSHOT_SUFFIX = ".jpg"
TMP_SUFFIX = ".tmp"  # a snapshot being written (write_snapshot renames it when complete)
STALE_TMP_S = 300.0  # a .tmp this old was left by a failed write (disk full) and is deleted


@dataclass
class SweepResult:
    deleted_files: int = 0  # segments
    freed_bytes: int = 0  # segments and snapshots
    kept_protected: int = 0  # segments and snapshots that were due but protected
    errors: int = 0
    deleted_snapshots: int = 0

    def add(self, other: SweepResult) -> None:
        self.deleted_files += other.deleted_files
        self.freed_bytes += other.freed_bytes
        self.kept_protected += other.kept_protected
        self.errors += other.errors
        self.deleted_snapshots += other.deleted_snapshots


@dataclass(frozen=True)
class SnapshotInfo:
    """An alert snapshot file; ``time`` is its modification time (when it was written)."""

    camera: str
    time: float
    path: Path
    bytes: int = 0


# protected(camera, start, end): True keeps the segment (an export, an open incident needs it).
# A snapshot is asked about as the instant it was written: protected(camera, t, t).
Protected = Callable[[str, float, float], bool]


class Retention:
    """Deletes old recordings and snapshots: by age, then oldest first over the quotas or to free space.

    Everything is decided from file names and ``stat`` sizes.  ``protected(camera, start,
    end)`` vetoes a deletion (exports, open incidents); a protected segment still counts
    towards the quota, so a quota can be exceeded by protected video, never by deleting it.
    The segment being written (a ``.part`` file) is never touched.  ``recordings_dir`` None
    (recording off) or ``snapshots_dir`` None leaves that kind alone.  The quotas count
    recordings only; :meth:`free` (the janitor's, when the disk runs low) takes both kinds,
    oldest first.
    """

    def __init__(self, recordings_dir: str | Path | None, retain_days: float, quota_bytes: int | None = None,
                 camera_quota_bytes: int | None = None, protected: Protected | None = None,
                 snapshots_dir: str | Path | None = None):
        self.dir = Path(recordings_dir) if recordings_dir is not None else None
        self.retain_days = retain_days
        self.quota_bytes = quota_bytes
        self.camera_quota_bytes = camera_quota_bytes
        self.protected = protected
        self.snapshots_dir = Path(snapshots_dir) if snapshots_dir is not None else None

    def scan(self) -> list[SegmentInfo]:
        """All finished segments on disk, oldest first."""
        out: list[SegmentInfo] = []
        if self.dir is None or not self.dir.is_dir():
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

    def scan_snapshots(self, now: float | None = None) -> list[SnapshotInfo]:
        """All snapshots on disk, oldest first; ``.tmp`` files older than ``STALE_TMP_S`` are deleted on the way."""
        out: list[SnapshotInfo] = []
        if self.snapshots_dir is None:
            return out
        now = time.time() if now is None else now
        for cam in _subdirs(self.snapshots_dir):
            for day in _subdirs(cam):
                try:
                    entries = list(os.scandir(day))
                except FileNotFoundError:
                    continue
                for e in entries:
                    try:
                        st = e.stat()
                    except FileNotFoundError:
                        continue
                    if e.name.endswith(SNAPSHOT_SUFFIX):
                        out.append(SnapshotInfo(cam.name, st.st_mtime, Path(e.path), st.st_size))
                    elif e.name.endswith(SNAPSHOT_SUFFIX + TMP_SUFFIX) and st.st_mtime < now - STALE_TMP_S:
                        Path(e.path).unlink(missing_ok=True)  # half a snapshot from a failed write
        out.sort(key=lambda s: s.time)
        return out

    def sweep(self, now: float | None = None) -> SweepResult:
        """The periodic pass: recordings and snapshots by age, then recordings over the quotas."""
        now = time.time() if now is None else now
        result = SweepResult()
        segs = self.scan()
        alive: list[SegmentInfo] = []
        cutoff = now - self.retain_days * 86400
        for s in segs:
            if s.end < cutoff and self._may_delete(s.camera, s.start, s.end, result):
                self._delete(s, "age", result)
            else:
                alive.append(s)
        for snap in self.scan_snapshots(now):
            if snap.time >= cutoff:
                break  # oldest first: the rest are younger
            if self._may_delete(snap.camera, snap.time, snap.time, result):
                self._delete_snapshot(snap, result)
        if self.quota_bytes is not None:
            alive = self._enforce(alive, self.quota_bytes, "quota", result)
        if self.camera_quota_bytes is not None:
            by_cam: dict[str, list[SegmentInfo]] = {}
            for s in alive:
                by_cam.setdefault(s.camera, []).append(s)
            for cam_segs in by_cam.values():
                self._enforce(cam_segs, self.camera_quota_bytes, "camera_quota", result)
        self._remove_empty(cutoff)
        if result.deleted_files or result.deleted_snapshots:
            log.info("retention: deleted %d segments and %d snapshots, freed %.1f MB (%d protected kept)",
                     result.deleted_files, result.deleted_snapshots, result.freed_bytes / 1e6, result.kept_protected)
        return result

    def free(self, need_bytes: int, now: float | None = None, recordings: bool = True,
             snapshots: bool = True) -> SweepResult:
        """Delete the oldest segments and snapshots, the two kinds merged by time, until ``need_bytes`` are freed.

        The janitor calls this when free disk space falls below the watermark, whatever their age:
        without space nothing new is recorded at all, and the oldest footage is the least likely
        to be asked for.  Protected files are skipped; when only protected files are left, less
        than ``need_bytes`` is freed (the caller sees it in the result).
        """
        now = time.time() if now is None else now
        result = SweepResult()
        items: list[tuple[float, SegmentInfo | SnapshotInfo]] = []
        if recordings:
            items += [(s.start, s) for s in self.scan()]
        if snapshots:
            items += [(s.time, s) for s in self.scan_snapshots(now)]
        items.sort(key=lambda item: item[0])
        for _, it in items:
            if result.freed_bytes >= need_bytes:
                break
            if isinstance(it, SegmentInfo):
                if self._may_delete(it.camera, it.start, it.end, result):
                    self._delete(it, "disk_space", result)
            elif self._may_delete(it.camera, it.time, it.time, result):
                self._delete_snapshot(it, result)
        self._remove_empty(now - self.retain_days * 86400)
        if result.deleted_files or result.deleted_snapshots:
            log.warning("retention: low disk space: deleted %d segments and %d snapshots, oldest first, "
                        "freed %.1f MB (%d protected kept)", result.deleted_files, result.deleted_snapshots,
                        result.freed_bytes / 1e6, result.kept_protected)
        return result

    def _enforce(self, segs: list[SegmentInfo], quota: int, why: str, result: SweepResult) -> list[SegmentInfo]:
        """Delete the oldest deletable segments until ``segs`` fit ``quota``; returns the survivors."""
        total = sum(s.bytes for s in segs)
        keep: list[SegmentInfo] = []
        for s in segs:  # oldest first
            if total > quota and self._may_delete(s.camera, s.start, s.end, result) and self._delete(s, why, result):
                total -= s.bytes
                continue
            keep.append(s)
        return keep

    def _may_delete(self, camera: str, start: float, end: float, result: SweepResult) -> bool:
        if self.protected is not None and self.protected(camera, start, end):
            result.kept_protected += 1
            return False
        return True

    @staticmethod
    def _unlink(path: Path, result: SweepResult) -> bool | None:
        """Delete a file: True when deleted now, None when it was gone already, False (counted, logged) when
        it could not be deleted."""
        try:
            path.unlink()
        except FileNotFoundError:
            return None
        except OSError as e:
            result.errors += 1
            log.error("retention: cannot delete %s: %s", path, e)
            return False
        return True

    def _delete_snapshot(self, snap: SnapshotInfo, result: SweepResult) -> bool:
        deleted = self._unlink(snap.path, result)
        if deleted:
            result.deleted_snapshots += 1
            result.freed_bytes += snap.bytes
        return deleted is not False

    def _delete(self, s: SegmentInfo, why: str, result: SweepResult) -> bool:
        assert self.dir is not None  # segments are only found under a recordings folder
        deleted = self._unlink(s.path, result)
        if not deleted:
            return deleted is None
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
        Empty snapshot day folders go too, except today's, where a snapshot may be being written.
        """
        if self.dir is not None:
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
        if self.snapshots_dir is not None:
            today = datetime.now().strftime("%Y-%m-%d")  # write_snapshot names day folders by local date
            for cam in _subdirs(self.snapshots_dir):
                for day in _subdirs(cam):
                    if day.name < today:
                        _rmdir_quiet(day)


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
