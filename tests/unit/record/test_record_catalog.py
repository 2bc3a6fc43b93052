"""The catalog (pipeline/record/catalog.py) over the on-disk layout (layout.py): what was recorded when.

The catalog never opens a video, so these tests lay out filler files under real segment names.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.record.catalog import Recordings
from pipeline.record.layout import INDEX_NAME, Gap, date_dir, part_path, write_gap
from tests.support.record import T0, fake_segments

MIDNIGHT = (datetime.fromtimestamp(T0, UTC).replace(hour=0, minute=0, second=0) + timedelta(days=1)).timestamp()


def test_a_gap_over_midnight_is_indexed_per_day_and_read_back_whole(tmp_path: Path) -> None:
    write_gap(tmp_path, "cam1", Gap(MIDNIGHT - 30, MIDNIGHT + 30, "input lost: camera rebooted"))
    assert (date_dir(tmp_path, "cam1", MIDNIGHT - 1) / INDEX_NAME).is_file()
    assert (date_dir(tmp_path, "cam1", MIDNIGHT + 1) / INDEX_NAME).is_file()
    rec = Recordings(tmp_path)
    assert rec.recorded_gaps("cam1", MIDNIGHT - 60, MIDNIGHT + 60) == [
        Gap(MIDNIGHT - 30, MIDNIGHT + 30, "input lost: camera rebooted")]
    assert rec.gaps("cam1", MIDNIGHT - 60, MIDNIGHT + 60) == [
        Gap(MIDNIGHT - 60, MIDNIGHT - 30, "not recorded"),
        Gap(MIDNIGHT - 30, MIDNIGHT + 30, "input lost: camera rebooted"),
        Gap(MIDNIGHT + 30, MIDNIGHT + 60, "not recorded")]


def test_unrecorded_time_is_a_hole_but_the_segment_being_written_is_not(tmp_path: Path) -> None:
    fake_segments(tmp_path, "cam1", [T0, T0 + 10])  # 20 s recorded back to back
    part = part_path(tmp_path, "cam1", T0 + 40)  # being written since T0 + 40
    part.write_bytes(b"\0")
    rec = Recordings(tmp_path)
    assert rec.recorded_ranges("cam1", T0 - 5, T0 + 100) == [(T0, T0 + 20)]
    assert rec.gaps("cam1", T0 - 5, T0 + 100) == [
        Gap(T0 - 5, T0, "not recorded"), Gap(T0 + 20, T0 + 40, "not recorded")]


def test_a_segment_that_started_in_the_previous_hour_is_found(tmp_path: Path) -> None:
    hour = (datetime.fromtimestamp(T0, UTC).replace(minute=0, second=0) + timedelta(hours=1)).timestamp()
    (path,) = fake_segments(tmp_path, "cam1", [hour - 5])  # lives in the earlier hour's folder
    (seg,) = Recordings(tmp_path).segments("cam1", hour + 1, hour + 2)
    assert (seg.path, seg.start, seg.end, seg.bytes) == (path, hour - 5, hour + 5, 1000)
