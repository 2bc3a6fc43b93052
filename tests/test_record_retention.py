"""Retention (pipeline/record/retention.py): age, quotas, the ``protected`` veto, folders left clean."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.record.catalog import Recordings
from pipeline.record.layout import iter_index
from pipeline.record.retention import Retention
from pipeline.record.segments import SegmentWriter
from tests.record_support import T0, fake_segments, feed_file, make_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip20.mp4", 20)


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
