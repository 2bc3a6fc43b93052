"""Retention (pipeline/record/retention.py): age, quotas, the ``protected`` veto, folders left clean."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pipeline.record.catalog import Recordings
from pipeline.record.layout import iter_index
from pipeline.record.retention import Retention
from pipeline.record.segments import SegmentWriter
from tests.support.media import make_clip
from tests.support.record import T0, fake_segments, feed_file


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip20.mp4", 20, picture="texture", tune=None)


def test_retention_by_age_keeps_protected_segments(tmp_path: Path) -> None:
    now = T0 + 30 * 86400
    old = fake_segments(tmp_path, "cam1", [now - 10 * 86400 + i * 10 for i in range(5)])
    new = fake_segments(tmp_path, "cam1", [now - 86400 + i * 10 for i in range(5)])
    keep_start = now - 10 * 86400 + 20  # an exported incident covers the third old segment
    ret = Retention(tmp_path, retain_days=7, protected=lambda cam, s, e: s <= keep_start < e)
    result = ret.sweep(now)
    assert result.deleted_files == 4 and result.freed_bytes == 4000 and result.kept_protected == 1
    assert [p.exists() for p in old] == [False, False, True, False, False]
    assert all(p.exists() for p in new)
    deleted = [r for r in iter_index(tmp_path, "cam1", now - 11 * 86400, now) if r["type"] == "deleted"]
    assert sorted(r["start"] for r in deleted) == sorted(round(now - 10 * 86400 + i * 10, 3) for i in (0, 1, 3, 4))


def test_retention_quota_deletes_oldest_first_never_protected(tmp_path: Path) -> None:
    now = T0 + 86400
    a = fake_segments(tmp_path, "a", [now - 3600 + i * 10 for i in range(10)])  # older camera
    b = fake_segments(tmp_path, "b", [now - 1800 + i * 10 for i in range(10)])
    protected_start = now - 3600  # the very oldest is protected
    ret = Retention(tmp_path, retain_days=7, quota_bytes=12_000,
                    protected=lambda cam, s, e: cam == "a" and s == protected_start)
    result = ret.sweep(now)
    assert result.deleted_files == 8
    assert [p.exists() for p in a] == [True] + [False] * 8 + [True]
    assert all(p.exists() for p in b)
    # per-camera quota: each camera on its own, oldest first
    result = Retention(tmp_path, retain_days=7, camera_quota_bytes=4000).sweep(now)
    assert [p.exists() for p in b] == [False] * 6 + [True] * 4
    assert result.deleted_files == 6 + 0  # camera a holds 2000 bytes, under its quota


def test_retention_removes_empty_folders_and_is_fast(tmp_path: Path) -> None:
    now = T0 + 30 * 86400
    starts = [now - 20 * 86400 + i * 10 for i in range(3000)]  # 3000 segments over 8 hours
    fake_segments(tmp_path, "cam1", starts, size=10)
    t = time.perf_counter()
    result = Retention(tmp_path, retain_days=7).sweep(now)
    elapsed = time.perf_counter() - t
    assert result.deleted_files == 3000
    assert elapsed < 3.0, f"sweep of 3000 files took {elapsed:.2f} s"
    assert not any(tmp_path.iterdir()), "camera, day and hour folders (and the index) must go"


def test_retention_never_touches_the_segment_being_written(clip: Path, tmp_path: Path) -> None:
    writer = SegmentWriter("cam1", tmp_path, segment_s=10)
    stored = feed_file(None, clip)
    for sp in stored[:375]:  # 15 s: one finished segment, one open
        writer.write(sp)
    (part,) = tmp_path.rglob("*.part")
    result = Retention(tmp_path, retain_days=7, quota_bytes=1).sweep(T0 + 60)
    assert result.deleted_files == 1 and part.exists()
    writer.close()
    assert len(Recordings(tmp_path).segments("cam1", T0, T0 + 60)) == 1


def fake_snapshots(data_dir: Path, camera: str, times: list[float], size: int = 1000) -> list[Path]:
    """Snapshot files where write_snapshot puts them, with their write time as mtime."""
    paths = []
    for i, t in enumerate(times):
        p = data_dir / "snapshots" / camera / time.strftime("%Y-%m-%d", time.localtime(t)) / f"a{i}-{int(t)}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"\xff" * size)
        os.utime(p, (t, t))
        paths.append(p)
    return paths


def test_snapshots_age_out_with_recordings_protected_ones_stay(tmp_path: Path) -> None:
    now = time.time()
    old = fake_snapshots(tmp_path, "cam1", [now - 10 * 86400 + i * 60 for i in range(3)])
    new = fake_snapshots(tmp_path, "cam1", [now - 3600, now - 60])
    kept_at = now - 10 * 86400 + 60  # the second old one belongs to an exported incident
    stale_tmp = old[0].with_suffix(".jpg.tmp")
    stale_tmp.write_bytes(b"half")  # a write that failed on a full disk
    os.utime(stale_tmp, (now - 3600, now - 3600))
    fresh_tmp = new[1].with_suffix(".jpg.tmp")  # a write in progress
    fresh_tmp.write_bytes(b"half")
    ret = Retention(tmp_path / "recordings", retain_days=7, snapshots_dir=tmp_path / "snapshots",
                    protected=lambda cam, s, e: s <= kept_at <= e)
    result = ret.sweep(now)
    assert result.deleted_snapshots == 2 and result.freed_bytes == 2000 and result.kept_protected == 1
    assert [p.exists() for p in old] == [False, True, False]
    assert all(p.exists() for p in new)
    assert not stale_tmp.exists() and fresh_tmp.exists()
    # with the protected one gone too, its old day folder goes; today's folder stays for the writer
    Retention(None, retain_days=7, snapshots_dir=tmp_path / "snapshots").sweep(now)
    assert not old[1].parent.exists() and new[1].parent.exists()


def test_free_deletes_oldest_first_across_segments_and_snapshots(tmp_path: Path) -> None:
    now = T0 + 3600
    rec, snaps = tmp_path / "recordings", tmp_path / "snapshots"
    # interleaved in time: seg 0, snap 0, seg 1, snap 1 ... each 1000 bytes, 10 s apart
    segs = fake_segments(rec, "cam1", [T0 + i * 20 for i in range(5)])
    shots = fake_snapshots(tmp_path, "cam1", [T0 + 10 + i * 20 for i in range(5)])
    protected_start = T0 + 20  # seg 1 is protected
    ret = Retention(rec, retain_days=7, snapshots_dir=snaps, protected=lambda cam, s, e: s == protected_start)
    result = ret.free(3500, now)
    # seg0, snap0, (seg1 protected), snap1, seg2: 4000 bytes >= 3500, then it stops
    assert (result.deleted_files, result.deleted_snapshots, result.kept_protected) == (2, 2, 1)
    assert result.freed_bytes == 4000
    assert [p.exists() for p in segs] == [False, True, False, True, True]
    assert [p.exists() for p in shots] == [False, False, True, True, True]
    deleted = [r for r in iter_index(rec, "cam1", T0, now) if r["type"] == "deleted"]
    assert {r["reason"] for r in deleted} == {"disk_space"} and len(deleted) == 2
    # recordings only (snapshots on another disk): the snapshots stay
    result = ret.free(10**9, now, snapshots=False)
    assert result.deleted_snapshots == 0 and [p.exists() for p in segs] == [False, True, False, False, False]
    assert all(p.exists() for p in shots[2:])
