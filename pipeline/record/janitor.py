"""The janitor: keeps the disk under the data directory usable, so recording never stops for want of space.

Retention by age and quota runs once a minute; a camera writes 0.5-4 MB/s, so a disk that a burst,
a longer ``retain_days`` or another program fills between two sweeps would stop every recording (and
every snapshot) until the next one.  The janitor therefore also reads the free space every
``CHECK_S`` seconds (one ``statvfs``, microseconds) and, below ``recordings.min_free_percent``,
deletes the oldest recordings and snapshots at once, whatever their age and whichever kind is older,
until the disk is ``HEADROOM_PERCENT`` above the watermark (so it does not run again at the next
check).  Protected ranges are never deleted; when nothing else is left it says so and keeps what is
protected.

The workers do not depend on the janitor for their own safety: a segment writer that meets a full
disk drops packets, records a gap and tries again later (``pipeline.record.segments``); the janitor
is what gives it the space back.  Run it with :meth:`Janitor.run` on a thread (the supervisor does).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config
from pipeline.record.retention import Protected, Retention, SweepResult

log = logging.getLogger(__name__)

CHECK_S = 5.0  # free-space check period
SWEEP_S = 60.0  # full retention sweep period (age, quotas)
HEADROOM_PERCENT = 1.0  # once triggered, free until this many points above the watermark
MAX_ROUNDS = 8  # re-measure and free again (file sizes are not block counts), at most this often per check
SNAPSHOTS_DIR = "snapshots"  # under data_dir, as pipeline.publish.events.write_snapshot writes them


@dataclass
class JanitorStats:
    checks: int = 0
    low_space: int = 0  # checks that found a disk below the watermark
    freed_bytes: int = 0  # by the watermark, not counting the periodic sweep
    deleted_segments: int = 0
    deleted_snapshots: int = 0
    free_percent: float | None = None  # the fullest watched disk at the last check
    short: bool = False  # the last freeing could not reach the watermark: what is left is protected or not ours


@dataclass(frozen=True)
class _Disk:
    """One filesystem to watch and which kinds of files on it the janitor may delete."""

    path: Path  # an existing folder on it, for statvfs
    recordings: bool
    snapshots: bool


class Janitor:
    """Checks free space every ``check_s`` and frees it at once below the watermark; full sweep every ``sweep_s``."""

    def __init__(self, retention: Retention, min_free_percent: float, check_s: float = CHECK_S,
                 sweep_s: float = SWEEP_S, headroom_percent: float = HEADROOM_PERCENT):
        self.retention = retention
        self.min_free_percent = min_free_percent
        self.check_s = check_s
        self.sweep_s = sweep_s
        self.headroom_percent = headroom_percent
        self.stats = JanitorStats()

    @classmethod
    def from_config(cls, cfg: Config, protected: Protected | None = None, check_s: float = CHECK_S,
                    sweep_s: float = SWEEP_S) -> Janitor:
        """The janitor of a config's data directory: its recordings (when enabled) and its snapshots."""
        rec = cfg.recordings
        data = cfg.data_path()
        retention = Retention(data / rec.dir if rec.enabled else None, rec.retain_days,
                              int(rec.quota_gb * 1e9) if rec.quota_gb else None,
                              int(rec.camera_quota_gb * 1e9) if rec.camera_quota_gb else None,
                              protected=protected, snapshots_dir=data / SNAPSHOTS_DIR)
        return cls(retention, rec.min_free_percent, check_s=check_s, sweep_s=sweep_s)

    # ------------------------------------------------------------------ the two passes
    def check(self, now: float | None = None) -> SweepResult:
        """Read the free space of every watched disk; below the watermark, delete the oldest files at once."""
        result = SweepResult()
        self.stats.checks += 1
        lowest: float | None = None
        for disk in self._disks():
            pct = _free_percent(disk.path)
            if pct >= self.min_free_percent:
                lowest = pct if lowest is None else min(lowest, pct)
                continue
            self.stats.low_space += 1
            pct = self._free(disk, pct, result, now)
            lowest = pct if lowest is None else min(lowest, pct)
        self.stats.free_percent = None if lowest is None else round(lowest, 2)
        self.stats.freed_bytes += result.freed_bytes
        self.stats.deleted_segments += result.deleted_files
        self.stats.deleted_snapshots += result.deleted_snapshots
        return result

    def sweep(self, now: float | None = None) -> SweepResult:
        """The periodic pass: recordings and snapshots past ``retain_days``, recordings over the quotas."""
        return self.retention.sweep(now)

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set: check every ``check_s``, sweep every ``sweep_s``; a failed pass is only logged."""
        next_sweep = time.monotonic() + self.check_s  # the first sweep soon after start, then every sweep_s
        while not stop.wait(self.check_s):
            try:
                self.check()
            except Exception:
                log.exception("free-space check failed")
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self.sweep_s
                try:
                    self.sweep()
                except Exception:
                    log.exception("retention sweep failed")

    # ------------------------------------------------------------------ internals
    def _free(self, disk: _Disk, pct: float, total: SweepResult, now: float | None) -> float:
        """Free ``disk`` up to the watermark plus headroom, re-measuring after each round; returns the new percent."""
        target = min(100.0, self.min_free_percent + self.headroom_percent)
        before = pct
        result = SweepResult()
        short = False
        for _ in range(MAX_ROUNDS):
            usage = shutil.disk_usage(disk.path)
            need = int(target / 100 * usage.total) - usage.free
            if need <= 0:
                break
            r = self.retention.free(need, now, recordings=disk.recordings, snapshots=disk.snapshots)
            result.add(r)
            pct = _free_percent(disk.path)
            if r.deleted_files == 0 and r.deleted_snapshots == 0:
                short = True  # nothing deletable left: only protected files, or the space is not ours
                break
        if short and not self.stats.short:
            log.error("disk under %s is %.1f %% free, below the %.1f %% watermark, and nothing more may be "
                      "deleted (%d protected files kept): recording stops when it is full",
                      disk.path, pct, self.min_free_percent, result.kept_protected)
        self.stats.short = short
        if result.deleted_files or result.deleted_snapshots:
            log.warning("disk under %s was %.1f %% free (watermark %.1f %%): deleted %d segments and %d snapshots, "
                        "%.1f MB; now %.1f %% free", disk.path, before, self.min_free_percent,
                        result.deleted_files, result.deleted_snapshots, result.freed_bytes / 1e6, pct)
        total.add(result)
        return pct

    def _disks(self) -> list[_Disk]:
        """The filesystems holding recordings and snapshots (usually one), found from existing folders."""
        if self.min_free_percent <= 0:
            return []
        kinds: list[tuple[Path, bool]] = []
        if self.retention.dir is not None:
            kinds.append((self.retention.dir, True))
        if self.retention.snapshots_dir is not None:
            kinds.append((self.retention.snapshots_dir, False))
        by_dev: dict[int, _Disk] = {}
        for folder, is_rec in kinds:
            where = _existing(folder)
            dev = os.stat(where).st_dev
            old = by_dev.get(dev)
            by_dev[dev] = _Disk(old.path if old else where, is_rec or (old is not None and old.recordings),
                                (not is_rec) or (old is not None and old.snapshots))
        return list(by_dev.values())


def _existing(folder: Path) -> Path:
    """``folder`` or its nearest existing parent: the disk it is (or will be) on."""
    p = folder
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _free_percent(path: Path) -> float:
    """Space an unprivileged writer may still use, in percent of the filesystem (statvfs f_bavail)."""
    usage = shutil.disk_usage(path)
    return 100.0 * usage.free / usage.total if usage.total else 100.0
