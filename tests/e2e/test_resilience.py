"""Streams that fail in the field: server restarts, stalls, corrupt packets, worker crashes, reloads.

Real RTSP server (scripts/camsim.py), real redis-server, real decoder; no mocks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import CameraConfig, load_config, parse_config
from pipeline.ingest.source import CameraSource, SampledFrame, State
from pipeline.publish import bus
from pipeline.tools.simulator import RtspSimulator, free_port
from tests.support.assets import require_camsim
from tests.support.config import config_text, line_of, write_config
from tests.support.media import make_clip
from tests.support.waits import wait_for


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("media") / "moving.mp4", seconds=8)


@pytest.fixture(scope="module")
def corrupt_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("media") / "corrupt.mp4", seconds=4, corrupt_every=5)


def camera(url: str | Path, **extra: Any) -> CameraConfig:
    """One camera with a short stall timeout and a backoff starting at 1 s."""
    watchdog = {"stall_s": 2, "backoff_initial_s": 1, "backoff_max_s": 30}
    cfg = parse_config(config_text({"c1": {"source": url, "watchdog": watchdog, **extra}}))
    return cfg.cameras["c1"]


class Recorder:
    """Collects frames and state changes of a CameraSource."""

    def __init__(self) -> None:
        self.frames: list[SampledFrame] = []
        self.states: list[tuple[float, State, str]] = []

    def on_frame(self, f: SampledFrame) -> None:
        self.frames.append(f)

    def on_state(self, _cid: str, st: State, detail: str) -> None:
        self.states.append((time.monotonic(), st, detail))

    def count(self, state: State, since: int = 0) -> int:
        """How often the source entered ``state`` from the ``since``-th state change on."""
        return sum(st == state for _, st, _ in self.states[since:])

    def wait_for(self, pred: Callable[[], object], timeout: float) -> float:
        return wait_for(pred, timeout, lambda: f"a condition; states: {[(s.value, d) for _, s, d in self.states]}")

    def wait_frames(self, more_than: int, timeout: float) -> float:
        return self.wait_for(lambda: len(self.frames) > more_than, timeout)

    def wait_backoffs(self, n: int, since: int, timeout: float, held_s: float = 0.0) -> float:
        """Wait until the source is in its ``n``-th backoff since state change ``since``, for ``held_s``."""
        def held() -> bool:
            if self.count(State.BACKOFF, since) < n:
                return False
            t, st, _ = self.states[-1]
            return st == State.BACKOFF and time.monotonic() - t >= held_s
        return self.wait_for(held, timeout)


def test_server_restart_every_camera_back_within_5s(clip: Path) -> None:
    require_camsim()
    with RtspSimulator({"a": clip, "b": clip}) as sim:
        recs = {m: Recorder() for m in ("a", "b")}
        srcs = [CameraSource(m, camera(sim.url(m)), Path("."), recs[m].on_frame, recs[m].on_state) for m in recs]
        for s in srcs:
            s.start()
        try:
            for r in recs.values():
                r.wait_frames(5, 15)
            down_at = {m: len(r.states) for m, r in recs.items()}
            sim.stop()
            # down until the backoff has grown past its first steps (1 s, 2 s, 4 s, now 8 s +-20 %) and
            # its port probe has seen the port closed (probes run every 0.5 s): a camera back within
            # 5 s is back through the probe, not by waiting out the backoff
            for m, r in recs.items():
                r.wait_backoffs(4, since=down_at[m], timeout=30, held_s=1.0)
            n_before = {m: len(r.frames) for m, r in recs.items()}
            sim.start()
            returned = time.monotonic()
            for m, r in recs.items():
                r.wait_frames(n_before[m] + 2, 10)
                back = time.monotonic() - returned
                print(f"camera {m} back {back:.2f} s after the server returned")
                assert back < 5.0, f"camera {m} back after {back:.1f} s"
            assert all(s.stats.reconnects >= 1 for s in srcs)
            assert all(s.state == State.STREAMING for s in srcs)
        finally:
            for s in srcs:
                s.stop()


def test_stalled_stream_is_detected_and_recovers(clip: Path) -> None:
    require_camsim()
    with RtspSimulator({"a": clip}) as sim:
        rec = Recorder()
        src = CameraSource("a", camera(sim.url("a"), timeout_s=2), Path("."), rec.on_frame, rec.on_state)
        src.start()
        try:
            rec.wait_for(lambda: len(rec.frames) > 5, 15)
            sim.pause()  # SIGSTOP: the connection stays open, nothing flows
            rec.wait_for(lambda: any(s == State.STALLED for _, s, _ in rec.states), 12)
            assert src.stats.stalls >= 1
            sim.resume()
            n = len(rec.frames)
            rec.wait_for(lambda: len(rec.frames) > n + 2, 20)
            assert src.state == State.STREAMING
        finally:
            src.stop()


def test_corrupt_packets_are_counted_not_fatal(corrupt_clip: Path) -> None:
    rec = Recorder()
    src = CameraSource("a", camera(str(corrupt_clip), detect_fps=25), Path("."), rec.on_frame, rec.on_state)
    src.start()
    try:
        rec.wait_for(lambda: src.stats.decode_errors >= 5 and len(rec.frames) > 60, 15)
        assert src.state == State.STREAMING
    finally:
        src.stop()


def test_truncated_file_reconnects_without_crash(tmp_path: Path, clip: Path) -> None:
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # moov at the end of a non-faststart mp4 → unreadable
    rec = Recorder()
    src = CameraSource("a", camera(str(cut)), Path("."), rec.on_frame, rec.on_state)
    src.start()
    try:
        rec.wait_for(lambda: src.stats.reconnects >= 1, 10)
        assert src.stats.last_error and src._thread is not None and src._thread.is_alive()
        assert any(s == State.BACKOFF for _, s, _ in rec.states)
    finally:
        src.stop()
    assert src.state == State.STOPPED


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_killed_worker_is_back_within_2s_and_reload_applies(tmp_path: Path, clip: Path, redis_url: str) -> None:
    top: dict[str, Any] = {"redis_url": redis_url, "bus": {"prefix": "kill-test"}}
    cfg_path = write_config(tmp_path, {"a": {"source": clip}}, **top)
    run = subprocess.Popen([sys.executable, "-m", "cli.main", "run", "--config", str(cfg_path),
                            "--port", str(free_port())], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, start_new_session=True)
    r = bus.connect(redis_url)
    keys = bus.BusKeys("kill-test")
    try:
        def streaming(cid: str) -> bool:
            st = bus.camera_statuses(r, keys).get(cid)
            return bool(st and st.state == "streaming")

        wait_for(lambda: streaming("a"), 30, "camera a streaming")
        workers = [p for p in _children(run.pid) if "pipeline.runtime.worker" in _cmdline(p)]
        assert len(workers) == 1
        os.kill(workers[0], signal.SIGKILL)
        t0 = time.monotonic()
        wait_for(lambda: any(p != workers[0] and "pipeline.runtime.worker" in _cmdline(p) for p in _children(run.pid)),
                 5, "a new worker process")
        restarted = time.monotonic() - t0
        assert restarted < 2.0, f"worker restarted after {restarted:.2f} s"
        r.hdel(keys.cameras, "a")
        wait_for(lambda: streaming("a"), 20, "camera a streaming again")
        print(f"worker process back after {restarted:.2f} s, camera streaming again after "
              f"{time.monotonic() - t0:.2f} s")

        # live reload: add a camera, and one whose entry is invalid (refused, the rest keep running)
        write_config(tmp_path, {"a": {"source": clip}, "b": {"source": clip}, "c": {"source": clip, "detect_fps": 99}},
                     **top)
        os.killpg(run.pid, 0)  # still alive
        run_pid_children = _children(run.pid)
        wait_for(lambda: streaming("b"), 20, "the added camera b streaming")
        assert "c" not in bus.camera_statuses(r, keys)
        problems = r.hgetall(keys.prefix_key("config"))
        assert any(b"cameras.c.detect_fps" in v for v in problems.values())
        assert _children(run.pid) == run_pid_children  # no process was restarted for the reload
    finally:
        os.killpg(run.pid, signal.SIGINT)
        out, _ = run.communicate(timeout=30)
    assert run.returncode == 0, out[-2000:]


def test_reload_touches_only_changed_cameras(tmp_path: Path, clip: Path, redis_url: str) -> None:
    from pipeline.runtime.worker import Worker

    bus_prefix = {"prefix": "reload-test"}
    cfg_path = write_config(tmp_path, {"a": {"source": clip}, "b": {"source": clip}}, bus=bus_prefix)
    w = Worker(load_config(cfg_path), redis_url)
    w.start()
    try:
        src_a, src_b = w.cameras["a"].source, w.cameras["b"].source
        wait_for(lambda: src_a.state == State.STREAMING and src_b.state == State.STREAMING, 15, "both streaming")
        write_config(tmp_path, {"a": {"source": clip}, "b": {"source": clip, "detect_fps": 2},
                                "d": {"source": clip, "colour": "red"}}, bus=bus_prefix)
        problems = w.reload()
        colour_line = line_of(cfg_path, "colour: red")
        assert len(problems) == 1 and "cameras.d.colour: unknown key" in problems[0], problems
        assert f":{colour_line}:" in problems[0], problems
        assert w.cameras["a"].source is src_a and src_a.state == State.STREAMING  # untouched
        assert w.cameras["b"].source is not src_b and w.cameras["b"].source.cam.detect_fps == 2
        assert "d" not in w.cameras
        write_config(tmp_path, {"a": {"source": clip}}, bus=bus_prefix)
        w.reload()
        assert set(w.cameras) == {"a"} and w.cameras["a"].source is src_a
    finally:
        w.stop()


def test_password_never_in_logs_or_status(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    url = f"rtsp://admin:s3cret-pw@127.0.0.1:{free_port()}/ch1"
    rec = Recorder()
    src = CameraSource("a", camera(url), Path("."), rec.on_frame, rec.on_state)
    src.start()
    try:
        rec.wait_for(lambda: src.stats.reconnects >= 1, 10)
    finally:
        src.stop()
    assert src.stats.last_error
    text = caplog.text + src.stats.last_error + " ".join(d for _, _, d in rec.states)
    assert "s3cret-pw" not in text
    assert "admin:***@" in text or "Connection refused" in text


def test_reader_threads_run_below_the_detect_thread_as_configured(clip: Path) -> None:
    """``reader_nice``: each reader thread lowers its own priority (Linux, per thread), the threads that
    start it (the detect loop's) keep theirs; 0 leaves it alone."""
    import threading

    from pipeline.ingest.reader import set_reader_nice

    def nice_of(tid: int) -> int:
        stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[16])  # field 19 of proc(5), counted after the name

    mine = nice_of(threading.get_native_id())
    try:
        for nice in (7, 0):
            set_reader_nice(nice)
            rec = Recorder()
            src = CameraSource("a", camera(str(clip)), Path("."), rec.on_frame, rec.on_state)
            src.start()
            try:
                rec.wait_frames(3, 15)
                tid = src._thread.native_id if src._thread else None
                assert tid is not None and nice_of(tid) == mine + nice
                assert nice_of(threading.get_native_id()) == mine
            finally:
                src.stop()
    finally:
        set_reader_nice(0)
