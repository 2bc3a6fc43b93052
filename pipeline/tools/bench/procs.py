"""The two processes ``sharpeye bench`` measures, each run as its own child process.

``python -m pipeline.tools.bench.procs worker --probe FILE -- --config X --redis URL``
    The real worker (``pipeline.runtime.worker.main``, unchanged) with its detector wrapped so every
    ``detect_batch`` call is timed.  Why: the worker's status only carries a rolling median of
    inference time, and the bench must report p99 too.  The wrapper adds two ``perf_counter``
    calls per batch; nothing else in the worker's path changes.

``python -m pipeline.tools.bench.procs naive --probe FILE --config X``
    The naive baseline, modelled on Ultralytics' multi-stream loader (``LoadStreams`` with
    ``buffer=False``) and predictor: one ``cv2.VideoCapture`` thread per stream that ``grab()``s
    (reads and decodes) every frame and ``retrieve()``s (converts to BGR) every k-th, keeping only
    the newest; a main loop that waits until every stream has a frame, then runs the detector on
    them.  Same config, hence the same model, onnxruntime settings and detect fps as the worker.
    Differences from Ultralytics, and why: streams are opened in parallel in their threads (the
    start-up is not measured, and opening 16 RTSP streams one after another takes half a minute),
    and a failed ``grab()`` reopens the stream after a short sleep instead of spinning.

Both also report their serial loop (the worker's detect thread, the naive main loop): its native
thread id, so the bench can read that thread's own CPU and run-queue time from
``/proc/<pid>/task/<tid>/schedstat``, and the seconds it spent waiting for work (the worker in
``DetectLoop.take_work``, the naive loop sleeping until every stream has a frame).  Busy time that is
neither on a core nor in the run queue is the loop blocked (GIL, a lock, I/O) while frames wait.

Both write a probe file (JSON, replaced atomically every ``PROBE_PERIOD_S``) with their counters
and timestamped samples; the bench reads it at the start and the end of its window.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PROBE_PERIOD_S = 0.5
MAX_SAMPLES = 50_000  # per kind; a long bench keeps the newest


class Probe:
    """Counters and samples of one measured process, dumped to a file by a background thread."""

    def __init__(self, path: Path, counters: Callable[[], dict[str, Any]] | None = None):
        self.path = path
        self.counters = counters or (lambda: {})
        self.lock = threading.Lock()
        self.detector_ms: collections.deque[tuple[float, float]] = collections.deque(maxlen=MAX_SAMPLES)
        self.latency_s: collections.deque[tuple[float, float]] = collections.deque(maxlen=MAX_SAMPLES)
        # (end time, wall ms, frames) per detector call: the gaps between calls show a loop that stalls
        self.batches: collections.deque[tuple[float, float, int]] = collections.deque(maxlen=MAX_SAMPLES)
        self.loop_tid: int | None = None  # native id of the serial loop's thread
        self.loop_idle_s = 0.0  # seconds that loop waited for work (nothing to detect)
        self.loop_rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-probe", daemon=True)

    def add_detector(self, t: float, ms_per_frame: float, frames: int) -> None:
        with self.lock:
            for _ in range(frames):
                self.detector_ms.append((t, ms_per_frame))
            self.batches.append((t, ms_per_frame * frames, frames))

    def add_idle(self, seconds: float) -> None:
        with self.lock:
            self.loop_idle_s += seconds
            self.loop_rounds += 1

    def add_latency(self, t: float, seconds: float) -> None:
        with self.lock:
            self.latency_s.append((t, seconds))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.dump()

    def _loop(self) -> None:
        while not self._stop.wait(PROBE_PERIOD_S):
            self.dump()

    def dump(self) -> None:
        with self.lock:
            doc = {"time": time.time(), "pid": os.getpid(), "counters": self.counters(),
                   "detector_ms": list(self.detector_ms), "latency_s": list(self.latency_s),
                   "batches": list(self.batches),
                   "loop": {"tid": self.loop_tid, "idle_s": round(self.loop_idle_s, 6), "rounds": self.loop_rounds}}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.path)


def read_probe(path: Path) -> dict[str, Any] | None:
    """The newest probe document, or None before the child wrote one."""
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# ------------------------------------------------------------------------------ timed worker


class TimedDetector:
    """Wraps the worker's detector: same results, every batch timed into the probe."""

    def __init__(self, inner: Any, probe: Probe):
        self._inner = inner
        self._probe = probe

    def detect_batch(self, images: Sequence[np.ndarray]) -> Any:
        t0 = time.perf_counter()
        out = self._inner.detect_batch(images)
        if images:
            self._probe.add_detector(time.time(), (time.perf_counter() - t0) * 1000 / len(images), len(images))
        return out

    def __getattr__(self, name: str) -> Any:  # names, input_size, ... come from the real detector
        return getattr(self._inner, name)


def nice_readers(nice: int) -> None:
    """Experiment (``sharpeye bench --reader-nice N``): every reader thread (RTSP demux and decode of a
    camera, and a record input) lowers its own priority by ``nice`` as it starts; FFmpeg's decoder
    threads, created by that thread, inherit it.  The detect thread keeps the default, so in a burst
    of decoding it is not one runnable thread among dozens of equal ones.  Needs no privilege."""
    from pipeline.ingest.reader import Reader

    run = Reader._run

    def niced_run(self: Any) -> None:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)  # this thread only (Linux)
        run(self)

    Reader._run = niced_run  # type: ignore[method-assign]


def run_worker(probe_path: Path, worker_argv: list[str], reader_nice: int = 0, slot_depth: int = 0) -> int:
    from pipeline.analyse.detect import Detector
    from pipeline.runtime import worker

    if reader_nice:
        nice_readers(reader_nice)
    if slot_depth:  # experiment: sampled frames a camera may have waiting before the oldest is skipped
        worker.SLOT_DEPTH = slot_depth

    probe = Probe(probe_path)
    original = Detector.from_config
    Detector.from_config = lambda cfg: TimedDetector(original(cfg), probe)  # type: ignore[assignment,method-assign]
    from pipeline.runtime.loops import DetectLoop

    loop, take = DetectLoop.run, DetectLoop.take_work

    def timed_loop(self: Any) -> None:
        probe.loop_tid = threading.get_native_id()
        loop(self)

    def timed_take(self: Any, timeout: float) -> Any:
        t0 = time.perf_counter()
        try:
            return take(self, timeout)
        finally:  # waiting on the condition for frames (or the lock it takes): the loop has nothing to do
            probe.add_idle(time.perf_counter() - t0)

    DetectLoop.run = timed_loop  # type: ignore[method-assign]
    DetectLoop.take_work = timed_take  # type: ignore[method-assign]
    probe.start()
    try:
        return worker.main(worker_argv)
    finally:
        probe.stop()


# ------------------------------------------------------------------------------ naive loop


class NaiveStream(threading.Thread):
    """One camera read the way most first attempts do: cv2 grabs every frame, keeps the newest k-th."""

    def __init__(self, camera_id: str, url: str, stride: int, stop: threading.Event):
        super().__init__(name=f"naive-{camera_id}", daemon=True)
        self.camera_id = camera_id
        self.url = url
        self.stride = stride
        self.stop_event = stop
        self.lock = threading.Lock()
        self.slot: tuple[np.ndarray, float] | None = None  # newest retrieved frame and its capture time
        self.grabbed = 0
        self.retrieved = 0
        self.detected = 0
        self.skipped = 0  # retrieved frames overwritten before the detector took them
        self.reopens = 0
        self.opened = False

    def run(self) -> None:
        import cv2

        cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG)
        n = 0
        while not self.stop_event.is_set():
            if not cap.isOpened() or not cap.grab():
                self.reopens += 1
                time.sleep(0.5)
                cap.open(self.url, cv2.CAP_FFMPEG)
                continue
            self.opened = True
            n += 1
            self.grabbed += 1
            if n % self.stride:
                continue
            ok, img = cap.retrieve()
            if not ok or img is None:
                continue
            t = time.time()
            with self.lock:
                if self.slot is not None:
                    self.skipped += 1
                self.slot = (img, t)
                self.retrieved += 1
        cap.release()

    def take(self) -> tuple[np.ndarray, float] | None:
        with self.lock:
            item, self.slot = self.slot, None
            return item


def run_naive(probe_path: Path, config_path: str, source_fps: float) -> int:
    # the worker's own detector factory: the same model file, providers, threads and thresholds
    from pipeline.analyse.detect import Detector
    from pipeline.config import load_config

    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")  # as the worker reads RTSP
    cfg = load_config(config_path)
    detector = Detector.from_config(cfg)
    stop = threading.Event()
    streams = []
    for cid, cam in cfg.enabled_cameras().items():
        stride = max(1, round(source_fps / cam.detect_fps))  # Ultralytics' vid_stride
        streams.append(NaiveStream(cid, cam.source, stride, stop))

    def counters() -> dict[str, Any]:
        return {s.camera_id: {"decoded": s.grabbed, "sampled": s.retrieved, "detected": s.detected,
                              "skipped": s.skipped, "reopens": s.reopens, "opened": s.opened}
                for s in streams}

    probe = Probe(probe_path, counters)
    probe.loop_tid = threading.get_native_id()  # the main loop: waits, then runs the detector
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    for s in streams:
        s.start()
    probe.start()
    wait_s = 1.0 / source_fps  # LoadStreams sleeps one source frame while a buffer is empty
    try:
        while not stop.is_set():
            batch: list[tuple[NaiveStream, np.ndarray, float]] = []
            for s in streams:  # wait for every stream, in order, as LoadStreams.__next__ does
                item = s.take()
                t_wait = time.perf_counter()
                while item is None and not stop.is_set():
                    time.sleep(wait_s)
                    item = s.take()
                probe.add_idle(time.perf_counter() - t_wait)
                if item is not None:
                    batch.append((s, *item))
            if not batch:
                continue
            t0 = time.perf_counter()
            detector.detect_batch([img for _, img, _ in batch])
            done = time.time()
            probe.add_detector(done, (time.perf_counter() - t0) * 1000 / len(batch), len(batch))
            for s, _, captured in batch:
                s.detected += 1
                probe.add_latency(done, done - captured)
    finally:
        stop.set()
        for s in streams:
            s.join(2)
        probe.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    worker_argv: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, worker_argv = argv[:cut], argv[cut + 1:]
    ap = argparse.ArgumentParser(prog="python -m pipeline.tools.bench.procs")
    ap.add_argument("kind", choices=("worker", "naive"))
    ap.add_argument("--probe", required=True, type=Path, help="probe file the bench reads")
    ap.add_argument("--config", help="naive: the bench's generated config")
    ap.add_argument("--source-fps", type=float, default=25.0, help="naive: camera frame rate, for k")
    ap.add_argument("--reader-nice", type=int, default=0, help="worker: nice value of reader threads (experiment)")
    ap.add_argument("--slot-depth", type=int, default=0, help="worker: frames waiting per camera (experiment)")
    args = ap.parse_args(argv)
    if args.kind == "worker":
        return run_worker(args.probe, worker_argv, args.reader_nice, args.slot_depth)
    if not args.config:
        ap.error("naive needs --config")
    return run_naive(args.probe, args.config, args.source_fps)


if __name__ == "__main__":
    raise SystemExit(main())
