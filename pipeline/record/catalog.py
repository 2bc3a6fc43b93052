"""What was recorded when: segments, recorded ranges and gaps (with reasons), from names and the index.

Readers never open a video: the segment files' names hold start and duration, and gaps are
recorded, not inferred, so the UI can show *why* there is no video.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.record.layout import Gap, SegmentInfo, hour_dir, parse_segment_name, part_files, part_start, read_gaps

# The longest a segment is assumed to last when looking for segments overlapping a window:
# segments start in the hour folder of their start, so readers look one hour further back.
LOOKBACK_S = 3600.0


class Recordings:
    """Answers "what was recorded when" from file names and the gap index, opening no video."""

    def __init__(self, recordings_dir: str | Path):
        self.dir = Path(recordings_dir)

    def segments(self, camera: str, start: float, end: float) -> list[SegmentInfo]:
        """Finished segments overlapping [start, end], oldest first."""
        out: list[SegmentInfo] = []
        seen_hours: set[Path] = set()
        t = start - LOOKBACK_S
        while t <= end + 3600:
            folder = hour_dir(self.dir, camera, t)
            t += 3600
            if folder in seen_hours:
                continue
            seen_hours.add(folder)
            try:
                entries = list(os.scandir(folder))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for e in entries:
                parsed = parse_segment_name(e.name)
                if parsed is None:
                    continue
                s, d = parsed
                if s < end and s + d > start:
                    try:
                        size = e.stat().st_size
                    except FileNotFoundError:  # deleted by retention meanwhile
                        continue
                    out.append(SegmentInfo(camera, s, s + d, Path(e.path), size))
        out.sort(key=lambda s: s.start)
        return out

    def recorded_ranges(self, camera: str, start: float, end: float, join_s: float = 1.0) -> list[tuple[float, float]]:
        """Recorded time inside [start, end] as merged (start, end) ranges; holes over ``join_s`` split."""
        ranges: list[list[float]] = []
        for seg in self.segments(camera, start, end):
            s, e = max(seg.start, start), min(seg.end, end)
            if ranges and s - ranges[-1][1] <= join_s:
                ranges[-1][1] = max(ranges[-1][1], e)
            else:
                ranges.append([s, e])
        return [(s, e) for s, e in ranges]

    def recorded_gaps(self, camera: str, start: float, end: float) -> list[Gap]:
        """Gap records (with their reasons) overlapping [start, end], oldest first."""
        out = sorted(read_gaps(self.dir, camera, start, end), key=lambda g: g.start)
        return _merge_gaps(out)

    def gaps(self, camera: str, start: float, end: float, join_s: float = 1.0) -> list[Gap]:
        """Every hole in [start, end]: recorded gaps with their reason, other holes as 'not recorded'.

        A hole nobody recorded (the process was down, the segment was deleted) is still a
        hole: the UI must show it.  The live edge is not a hole while a segment is being
        written: the window is cut at the start of an open ``.part`` file.
        """
        open_start = self._open_segment_start(camera)
        if open_start is not None and open_start < end:
            end = max(start, open_start)
        known = self.recorded_gaps(camera, start, end)
        covered = sorted([(s, e) for s, e in self.recorded_ranges(camera, start, end, join_s)]
                         + [(g.start, g.end) for g in known])
        holes: list[Gap] = []
        t = start
        for s, e in covered:
            if s - t > join_s:
                holes.append(Gap(t, s, "not recorded"))
            t = max(t, e)
        if end - t > join_s:
            holes.append(Gap(t, end, "not recorded"))
        return sorted([Gap(max(g.start, start), min(g.end, end), g.reason) for g in known] + holes,
                      key=lambda g: g.start)

    def _open_segment_start(self, camera: str) -> float | None:
        starts = []
        for part in part_files(self.dir, camera):
            try:
                starts.append(part_start(part))
            except ValueError:
                continue
        return max(starts) if starts else None


def _merge_gaps(gaps: list[Gap]) -> list[Gap]:
    """Join the per-day pieces of one gap back together."""
    out: list[Gap] = []
    for g in gaps:
        if out and out[-1].reason == g.reason and abs(g.start - out[-1].end) < 1e-3:
            out[-1] = Gap(out[-1].start, g.end, g.reason)
        else:
            out.append(g)
    return out
