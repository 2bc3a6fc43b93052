"""The record role of an input: read a record URL packet by packet (never decoding) into a
segment writer and the pre-event ring."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import av
import av.error

from pipeline.config import redact_url
from pipeline.ingest.source import Backoff, State
from pipeline.record.packets import PacketCapture
from pipeline.record.ring import PacketRing
from pipeline.record.segments import SegmentWriter

log = logging.getLogger(__name__)


@dataclass
class RecordStats:
    packets: int = 0
    bytes: int = 0
    reconnects: int = 0
    connects: int = 0
    last_error: str = ""
    last_packet_wall: float = 0.0
    cpu_s: float = 0.0  # CPU time of the input thread (demux + copy + mux)


def record_options(rtsp_transport: str = "tcp", timeout_s: float = 5.0) -> dict[str, str]:
    """Open options for a record input: TCP, a socket timeout (else a stall blocks forever), fast probe."""
    return {"rtsp_transport": rtsp_transport, "timeout": str(int(timeout_s * 1_000_000)),
            "analyzeduration": "500000", "probesize": "500000"}


def _is_network(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


class RecordInput:
    """A thread that reads a record URL packet by packet (never decoding) into a writer and ring.

    On end of stream or error it tells the writer (``mark_gap``), waits with capped
    exponential backoff and jitter, and reconnects.  Local files (demos) are played at
    real-time pace and looped, so their recordings carry real wall-clock times.
    """

    def __init__(self, camera_id: str, url: str, options: dict[str, str] | None, writer: SegmentWriter | None,
                 ring: PacketRing | None = None,
                 on_state: Callable[[str, State, str], None] | None = None,
                 backoff: Backoff | None = None):
        self.camera_id = camera_id
        self.url = url.removeprefix("file://")
        self.safe_url = redact_url(url)
        self.options = dict(record_options() if options is None and _is_network(url) else (options or {}))
        self.writer = writer
        self.ring = ring
        self.on_state = on_state
        self.backoff = backoff or Backoff()
        self.stats = RecordStats()
        self.state = State.STOPPED
        self._capture = PacketCapture()  # only used when there is no writer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"rec-{self.camera_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop reading and finish the open segment; waits up to the socket timeout for a stalled read."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _set_state(self, new: State, detail: str = "") -> None:
        if new == self.state:
            return
        self.state = new
        log.info("camera %s record input: %s %s", self.camera_id, new.value, detail)
        if self.on_state is not None:
            try:
                self.on_state(self.camera_id, new, detail)
            except Exception:
                log.exception("camera %s: record state callback failed", self.camera_id)

    def _run(self) -> None:
        cpu0 = time.thread_time()
        try:
            while not self._stop.is_set():
                self._set_state(State.CONNECTING)
                try:
                    self._read_once(cpu0)
                    reason = "end of stream"
                except (av.error.FFmpegError, OSError, ValueError, RuntimeError) as e:
                    reason = f"{type(e).__name__}: {e}".replace(self.url, self.safe_url)
                except Exception as e:  # one camera must never take the process down
                    log.exception("camera %s: record input failed", self.camera_id)
                    reason = f"{type(e).__name__}: {e}".replace(self.url, self.safe_url)
                self.stats.cpu_s = time.thread_time() - cpu0
                if self._stop.is_set():
                    break
                self.stats.last_error = reason
                looping_file = not _is_network(self.url) and reason == "end of stream"
                if self.writer is not None and not looping_file:
                    self.writer.mark_gap(f"input lost: {reason}")
                delay = 0.0 if looping_file else self.backoff.next_delay()
                if delay:
                    self._set_state(State.BACKOFF, f"{reason}; retry in {delay:.1f} s")
                    if self._stop.wait(delay):
                        break
                self.stats.reconnects += 1
        finally:
            if self.writer is not None:
                self.writer.close_segment()
            self.stats.cpu_s = time.thread_time() - cpu0
            self._set_state(State.STOPPED)

    def _read_once(self, cpu0: float) -> None:
        container = av.open(self.url, options=self.options, timeout=(10.0, 10.0))
        try:
            stream = container.streams.video[0]
            self.stats.connects += 1
            paced = not _is_network(self.url)
            t0: tuple[float, float] | None = None  # (monotonic, stream seconds) for file pacing
            for packet in container.demux(stream):
                if self._stop.is_set():
                    return
                if paced and packet.dts is not None and stream.time_base is not None:
                    ts = float(packet.dts * stream.time_base)
                    if t0 is None:
                        t0 = (time.monotonic(), ts)
                    ahead = (ts - t0[1]) - (time.monotonic() - t0[0])
                    if ahead > 0 and self._stop.wait(ahead):
                        return
                stored = (self.writer.feed(packet, stream) if self.writer is not None
                          else self._capture.capture(packet, stream))
                if self.ring is not None:
                    for sp in stored:
                        self.ring.add(sp)
                if stored:
                    if self.state != State.STREAMING:
                        self._set_state(State.STREAMING, f"{stream.codec_context.name} "
                                        f"{stream.codec_context.width}x{stream.codec_context.height}")
                        self.backoff.reset()
                    self.stats.packets += len(stored)
                    self.stats.bytes += sum(len(sp.data) for sp in stored)
                    self.stats.last_packet_wall = stored[-1].wall
                if self.stats.packets % 25 == 0:
                    self.stats.cpu_s = time.thread_time() - cpu0
        finally:
            container.close()
