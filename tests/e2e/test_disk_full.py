"""Disk full, on a real small filesystem of the test's own (tmpfs, else a loop-mounted ext4 image).

The segment writer on a full disk (its files are never kept half-written, the lost time is a gap,
it resumes by itself), the janitor's free-space watermark (oldest recordings and snapshots first,
protected ones kept), and a live worker whose recordings fill the disk: nothing crashes, alerts
keep reaching the bus, the janitor frees space and recording resumes.  Needs root to mount: a
machine where no small filesystem can be mounted FAILS these tests (they are the only proof that
a full disk is survived), it does not skip them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.analyse.detect import Detector
from pipeline.config import load_config, parse_config
from pipeline.ingest.reader import State
from pipeline.publish import bus
from pipeline.publish.status import metrics_text
from pipeline.record.catalog import Recordings
from pipeline.record.janitor import Janitor
from pipeline.record.layout import iter_index, segment_path
from pipeline.record.segments import SegmentWriter
from tests.integration.test_replay import FLOOR, cut_clip
from tests.support.assets import ROOT
from tests.support.config import config_text, write_config
from tests.support.media import make_clip
from tests.support.record import GOP_S, T0, decode_check, feed_file
from tests.support.waits import wait_for

# little CPU, timings bounded by seconds: scripts/test runs it beside the timed e2e tests
pytestmark = pytest.mark.beside

MB = 1_000_000


# ------------------------------------------------------------------------------------ the filesystem


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def small_filesystem(where: Path, size_mb: int) -> Iterator[Path]:
    """Mount a ``size_mb`` filesystem at ``where`` for the block; unmounted (and the image deleted) after.

    tmpfs first (no image, no mkfs); a loop-mounted ext4 image where tmpfs is refused.  When
    neither can be mounted the test fails and says why: skipping would hide the only disk-full test.
    """
    where.mkdir(parents=True, exist_ok=True)
    image: Path | None = None
    tmpfs = _run("mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(where))
    if tmpfs.returncode != 0:
        image = where.parent / f"{where.name}.img"
        with open(image, "wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        mkfs = _run("mkfs.ext4", "-q", "-F", "-m", "0", str(image))
        loop = _run("mount", "-o", "loop", str(image), str(where)) if mkfs.returncode == 0 else mkfs
        if loop.returncode != 0:
            image.unlink(missing_ok=True)
            pytest.fail(f"cannot mount a {size_mb} MB filesystem at {where} (these tests need root): "
                        f"tmpfs: {tmpfs.stderr.strip() or tmpfs.returncode}; loop ext4: "
                        f"{loop.stderr.strip() or loop.returncode}", pytrace=False)
    try:
        yield where
    finally:
        if _run("umount", str(where)).returncode != 0:
            _run("umount", "-l", str(where))  # something still holds a file open: detach it all the same
        if image is not None:
            image.unlink(missing_ok=True)


def fill(path: Path) -> int:
    """Append to ``path`` until the disk refuses even one byte (another program took the disk); returns bytes."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            block = b"\0" * chunk
            while True:
                try:
                    written += os.write(fd, block)
                except OSError:
                    break
    finally:
        os.close(fd)
    return written


def free_percent(path: Path) -> float:
    usage = shutil.disk_usage(path)
    return 100.0 * usage.free / usage.total


# ------------------------------------------------------------------------------------ the segment writer


@pytest.fixture(scope="module")
def clip30(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip30.mp4", 30, picture="texture", tune=None)  # ~200 kB/s


def test_segment_writer_on_a_full_disk_keeps_no_broken_file_records_a_gap_and_resumes(
        clip30: Path, tmp_path: Path) -> None:
    stored = feed_file(None, clip30)  # simulated wall clock: T0 + stream time, 25 packets a second
    with small_filesystem(tmp_path / "disk", 8) as disk:
        rec = disk / "recordings"
        writer = SegmentWriter("cam1", rec, segment_s=4, retry_s=5.0)
        for sp in stored[:150]:  # 6 s: one segment stored, one open
            writer.write(sp)
        assert writer.stats.segments == 1 and not writer.stats.disk_full
        ballast = disk / "other-program.bin"
        fill(ballast)
        # finishing fails (the index cannot be written): the file is deleted, never renamed as valid
        assert writer.close_segment() is None
        assert writer.stats.discarded == 1 and writer.stats.disk_full
        assert "No space left" in writer.stats.last_error
        assert not list(rec.rglob("*.part"))
        # packets go on arriving while the disk is full: nothing is raised, nothing is kept
        for sp in stored[150:400]:  # 6 s .. 16 s
            writer.write(sp)
        assert writer.stats.segments == 1 and writer.stats.disk_full
        assert not list(rec.rglob("*.part")), "a part file that cannot be written must not stay"
        # the space comes back: the writer resumes by itself at a keyframe after its retry delay
        ballast.unlink()
        for sp in stored[400:]:  # 16 s .. 30 s
            writer.write(sp)
        writer.close()
        assert not writer.stats.disk_full
        catalog = Recordings(rec)
        segs = catalog.segments("cam1", T0 - 10, T0 + 60)
        for s in segs:  # every file that has a final name decodes from its first frame to its end
            frames, duration, starts_clean = decode_check(s.path)
            assert starts_clean and frames > 0 and duration == pytest.approx(s.duration, abs=0.05), s.path.name
        (gap,) = catalog.recorded_gaps("cam1", T0, T0 + 60)
        assert gap.reason.startswith("disk full") and "No space left" in gap.reason
        assert gap.start == pytest.approx(segs[0].end) == pytest.approx(T0 + 4.0)  # the last stored segment's end
        assert gap.end == pytest.approx(segs[1].start)
        # space came back at 16 s: recording resumes at a keyframe within one retry delay (and a GOP) of it
        assert T0 + 16 <= segs[1].start <= T0 + 16 + writer.retry_s + GOP_S + 0.1
        assert sum(s.duration for s in segs) == pytest.approx(30 - (gap.end - gap.start), abs=0.1)
        print(f"\nwriter: gap of {gap.end - gap.start:.1f} s ({gap.reason}); {writer.stats.discarded} segment(s) "
              f"discarded, {writer.stats.errors} write errors, {len(segs)} segments kept")


# ------------------------------------------------------------------------------------ the janitor


def fake_recordings_and_snapshots(data: Path, now: float, count: int, size: int) -> list[tuple[float, Path]]:
    """Real files in the real layouts, a segment then a snapshot, 10 s apart, oldest first: (time, path)."""
    out: list[tuple[float, Path]] = []
    for i in range(count):
        t = now - 3600 + i * 10
        if i % 2 == 0:
            p = segment_path(data / "recordings", "cam1", t, 10.0)
        else:
            p = data / "snapshots" / "cam1" / time.strftime("%Y-%m-%d", time.localtime(t)) / f"a{i}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(size))
        if p.suffix == ".jpg":
            os.utime(p, (t, t))
        out.append((t, p))
    return out


def janitor_config(data: Path, min_free_percent: float) -> Any:
    return parse_config(config_text({"cam1": {"source": "rtsp://127.0.0.1:1/x"}}, data_dir=data,
                                    recordings={"min_free_percent": min_free_percent}))


def test_janitor_frees_the_oldest_recordings_and_snapshots_below_the_watermark(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "disk", 16) as disk:
        data = disk / "data"
        now = float(int(time.time()))  # whole seconds: segment names keep start times to the millisecond
        files = fake_recordings_and_snapshots(data, now, count=16, size=500_000)  # 8 MB, half the disk
        protected_at = files[2][0]  # the third oldest (a segment) belongs to an exported incident
        janitor = Janitor.from_config(janitor_config(data, 5.0),
                                      protected=lambda cam, s, e: s <= protected_at < e)
        assert janitor.check().freed_bytes == 0, "above the watermark nothing is deleted"
        fill(disk / "other-program.bin")  # another program takes the rest: 0 % free
        t = time.perf_counter()
        result = janitor.check(now)
        took = time.perf_counter() - t
        after = free_percent(disk)
        assert 5.0 + 1.0 <= after < 5.0 + 1.0 + 500_000 / (16 * 1024 * 1024) * 100 + 0.5, after  # just enough
        gone = [not p.exists() for _, p in files]
        n = sum(gone)
        assert n == result.deleted_files + result.deleted_snapshots == 3 and result.kept_protected == 1
        assert gone[:4] == [True, True, False, True], "oldest first across both kinds, the protected one kept"
        assert not any(gone[4:])
        assert result.deleted_files >= 1 and result.deleted_snapshots >= 1
        deleted = [r for r in iter_index(data / "recordings", "cam1", now - 7200, now) if r["type"] == "deleted"]
        assert {r["reason"] for r in deleted} == {"disk_space"}
        assert janitor.check(now).freed_bytes == 0, "above the watermark again: the next check deletes nothing"
        print(f"\njanitor: 0 % -> {after:.1f} % free in {took * 1000:.1f} ms, {result.freed_bytes / MB:.1f} MB freed "
              f"({result.deleted_files} segments, {result.deleted_snapshots} snapshots, 1 protected kept)")

        # everything left is protected: nothing is deleted, and the janitor says it cannot reach the watermark
        fill(disk / "other-program.bin")
        keep_all = Janitor.from_config(janitor_config(data, 5.0), protected=lambda cam, s, e: True)
        assert keep_all.check(now).freed_bytes == 0 and keep_all.stats.short
        assert all(p.exists() for g, (_, p) in zip(gone, files) if not g)
        # a watermark of 0 turns the check off
        off = Janitor.from_config(janitor_config(data, 0.0))
        assert off.check(now).freed_bytes == 0 and off.stats.free_percent is None


# ------------------------------------------------------------------------------------ a live worker


def noise_clip(path: Path, seconds: float = 8.0, size: tuple[int, int] = (640, 360), fps: int = 25) -> Path:
    """A main stream that fills a disk fast: moving noise, ~1.4 MB/s, a keyframe every second."""
    w, h = size
    base = np.random.default_rng(3).integers(0, 255, (h * 2, w * 2, 3), dtype=np.uint8)

    def picture(i: int, n: int) -> np.ndarray:
        y, x = (i * 7) % h, (i * 13) % w
        return np.ascontiguousarray(base[y:y + h, x:x + w])

    return make_clip(path, seconds, size, fps, gop=fps, picture=picture, preset="ultrafast", crf=20)


class BusReader:
    """Reads the events stream on a thread: every message by id (de-duplicated), alerts with their receive time."""

    def __init__(self, redis_url: str, prefix: str):
        self.r = bus.connect(redis_url)
        self.keys = bus.BusKeys(prefix)
        self.ids: set[str] = set()
        self.alerts: dict[str, tuple[float, dict[str, Any]]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bus-reader", daemon=True)

    def _run(self) -> None:
        last = "0-0"
        while not self.stop.is_set():
            for sid, msg in bus.read_events(self.r, self.keys, last, count=100, block_ms=200):
                last = sid
                self.ids.add(msg["id"])
                if msg.get("type") == "alert":
                    self.alerts.setdefault(msg["id"], (time.time(), msg))

    def count(self) -> int:
        return len(self.ids)


class Topper:
    """Another program that keeps taking whatever space is freed, until stopped (its file stays)."""

    def __init__(self, path: Path):
        self.path = path
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="topper", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            fill(self.path)


def test_worker_survives_a_full_disk_alerts_arrive_the_janitor_frees_space_recording_resumes(
        tmp_path: Path, person_clip: Path, redis_url: str) -> None:
    people = cut_clip(person_clip, tmp_path / "people.mp4", 48.0, 92.0)  # two people walk in, 44 s, looped
    main = noise_clip(tmp_path / "main.mp4")
    prefix = f"diskfull-{uuid.uuid4().hex[:8]}"
    lobby = {"source": people, "record_source": main, "detect_fps": 5, "idle": {"enabled": False},
             "zones": {"floor": {"polygon": FLOOR}},
             "rules": {"intruder": {"kind": "intrusion", "zone": "floor", "labels": ["person"], "severity": "high"}}}
    from pipeline.runtime.worker import Worker

    with small_filesystem(tmp_path / "disk", 64) as disk:
        data = disk / "data"
        # another program holds 40 MB of the 64: recording fills the other 24 in ~17 s
        (disk / "other-program.bin").write_bytes(b"\0" * 40 * 1024 * 1024)
        cfg = load_config(write_config(tmp_path, {"lobby": lobby}, data_dir=data, bus={"prefix": prefix},
                                       timezone="Asia/Shanghai", alerts={"end_after_s": 2.0},
                                       recordings={"segment_s": 2, "pre_event_s": 2, "min_free_percent": 5}))
        # the model is read from the repository's cache, not copied onto the small disk
        detector = Detector.from_config(cfg.model_copy(update={"data_dir": str(ROOT / ".cache")}))
        worker = Worker(cfg, redis_url, detector=detector)
        rt = worker.cameras["lobby"]
        writer, record_input = rt.writer, rt.record_input
        assert writer is not None and record_input is not None
        janitor = Janitor.from_config(cfg, check_s=1.0)
        stop_janitor = threading.Event()
        janitor_thread = threading.Thread(target=janitor.run, args=(stop_janitor,), name="janitor", daemon=True)
        reader = BusReader(redis_url, prefix)
        topper = Topper(disk / "other-program.bin")

        def published() -> int:
            st = worker.publisher.stats.get("lobby")
            return (st.published + st.failed) if st else 0

        def alive() -> None:
            dead = [loop.name for loop in worker.running if not loop.alive()]
            assert not dead, f"worker threads died: {dead}"
            assert rt.source.state == State.STREAMING, rt.source.state
            assert record_input.state == State.STREAMING, record_input.state

        reader.thread.start()
        t0 = time.time()
        worker.start()
        try:
            # 1. recording alone fills the disk; the janitor is not running (as if the supervisor were gone)
            wait_for(lambda: writer.stats.disk_full, 60, lambda: f"the disk to fill ({free_percent(disk):.1f} % free)")
            t_full = time.time()
            detected_at_full = rt.detected
            # 2. it stays full (another program takes whatever is freed) until an alert message was raised
            topper.thread.start()
            raised_at_full = published()
            wait_for(lambda: published() > raised_at_full and time.time() - t_full >= 6, 45,
                     "an alert message raised while the disk is full")
            alive()
            assert writer.stats.disk_full and rt.detected > detected_at_full, "detection must go on"
            status = worker.status_of(rt)  # what `sharpeye status` and /metrics show
            assert status.disk_full is True and status.record_errors and status.state == "streaming"
            assert 'sharpeye_camera_disk_full{camera="lobby"} 1.0' in metrics_text({"lobby": status}).decode()
            snapshot_errors = worker.publisher.stats["lobby"].snapshot_errors
            topper.stop.set()
            topper.thread.join(5)
            segments_at_full = writer.stats.segments
            free_when_full = free_percent(disk)
            # 3. the janitor runs (the supervisor starts it): space is freed at once, recording resumes
            t_janitor = time.time()
            janitor_thread.start()
            wait_for(lambda: janitor.stats.freed_bytes > 0, 10, "the janitor to free space")
            t_freed = time.time()
            wait_for(lambda: writer.stats.segments > segments_at_full and not writer.stats.disk_full, 30,
                     lambda: f"recording to resume ({writer.stats})")
            t_resumed = time.time()
            wait_for(lambda: writer.stats.segments >= segments_at_full + 4, 30, "recording to go on")
            raised_at_resume = published()
            wait_for(lambda: published() > raised_at_resume, 45, "an alert message after recovery")
            alive()
            assert worker.status_of(rt).disk_full is False
            assert free_percent(disk) >= 1.0, "the janitor keeps space free while recording goes on"
        finally:
            topper.stop.set()
            stop_janitor.set()
            worker.stop()
            if janitor_thread.is_alive():
                janitor_thread.join(5)
        t_end = time.time()
        # every message the worker raised reaches the bus, those raised while the disk was full too
        st = worker.publisher.stats["lobby"]
        wait_for(lambda: reader.count() >= st.published, 15, lambda: f"{st.published} messages on the bus, "
                 f"{reader.count()} arrived")
        reader.stop.set()
        reader.thread.join(5)
        during_full = sum(t_full <= m["time"] <= t_freed for _, m in reader.alerts.values())
        after = sum(m["time"] > t_resumed for _, m in reader.alerts.values())

        catalog = Recordings(data / "recordings")
        segs = catalog.segments("lobby", t0 - 5, t_end + 5)
        gaps = [g for g in catalog.recorded_gaps("lobby", t0, t_end) if g.reason.startswith("disk full")]
        lost_s = sum(g.end - g.start for g in gaps)
        print(f"\nworker: disk full {t_full - t0:.1f} s after start ({free_when_full:.1f} % free, "
              f"{writer.stats.discarded} segments discarded, {snapshot_errors} snapshots not written); "
              f"janitor freed {janitor.stats.freed_bytes / MB:.1f} MB ({janitor.stats.deleted_segments} segments, "
              f"{janitor.stats.deleted_snapshots} snapshots), the first {t_freed - t_janitor:.1f} s after it "
              f"started; recording resumed {t_resumed - t_janitor:.1f} s after it started; {lost_s:.1f} s "
              f"recorded as disk-full gaps; alert messages: {during_full} while full, {after} after recovery, "
              f"{len(reader.alerts)} on the bus, {st.failed} not queued")
        assert any(s.start >= t_full for s in segs), "no segment recorded after the disk filled"
        for s in segs:
            frames, duration, starts_clean = decode_check(s.path)
            assert starts_clean and frames > 0, f"{s.path.name} is not a valid segment"
        assert gaps, "the time lost to the full disk is not recorded as a gap"
        deleted = [r for r in iter_index(data / "recordings", "lobby", t0, t_end) if r["type"] == "deleted"]
        assert deleted and {r["reason"] for r in deleted} == {"disk_space"}
        assert max(r["start"] for r in deleted) < min(s.start for s in segs), "the oldest segments go first"
        assert not list((data / "recordings").rglob("*.part")), "the worker's stop finishes the last segment"
        assert st.failed == 0, f"{st.failed} alert messages were lost: the outbox could not take them on a full disk"
        assert during_full >= 1 and after >= 1, (during_full, after)
