"""Source and decode: one camera's video in, frames sampled at the detect rate out.

PyAV opens the camera (RTSP over TCP with a socket timeout, so a stalled stream raises
instead of blocking forever) or a video file played at real-time pace.  Frames are
sampled by *timestamp*, not by counting, so a camera that changes its frame rate or
drops frames still gives the configured detect fps.  On end of stream or error the
source reconnects with capped exponential backoff and jitter; every state change is
reported through a callback, so the watchdog and the dashboard see it.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import av
import av.error
import numpy as np

from pipeline.config import CameraConfig, redact_url

log = logging.getLogger(__name__)


class State(str, enum.Enum):
    CONNECTING = "connecting"  # opening the stream
    STREAMING = "streaming"  # frames arrive
    STALLED = "stalled"  # connected, but no packet for watchdog.stall_s: about to reconnect
    BACKOFF = "backoff"  # failed; waiting before the next try
    STOPPED = "stopped"


# the only transitions a stream may make; anything else is a bug
ALLOWED = {
    State.CONNECTING: {State.STREAMING, State.STALLED, State.BACKOFF, State.STOPPED},
    State.STREAMING: {State.STALLED, State.BACKOFF, State.STOPPED, State.CONNECTING},
    State.STALLED: {State.BACKOFF, State.CONNECTING, State.STOPPED},
    State.BACKOFF: {State.CONNECTING, State.STOPPED},
    State.STOPPED: {State.CONNECTING},
}


class SampledFrame:
    """A decoded frame chosen by the sampler.

    The BGR picture is made only when somebody asks for ``image`` (the detector): the motion
    gate reads the luma plane straight from the decoder's buffer with ``gray()``, so a frame
    the gate turns away never pays for a colour conversion.
    """

    __slots__ = ("camera_id", "pts", "capture_time", "index", "_image", "_frame")

    def __init__(self, camera_id: str, image: np.ndarray | None, pts: float, capture_time: float, index: int,
                 frame: av.VideoFrame | None = None):
        self.camera_id = camera_id
        self.pts = pts  # stream time in seconds (grows across loops of a file)
        self.capture_time = capture_time  # wall clock (epoch s) when the frame came off the decoder
        self.index = index  # decoded-frame counter of this source
        self._image = image
        self._frame = frame

    @property
    def image(self) -> np.ndarray:
        """BGR, source resolution."""
        if self._image is None:
            assert self._frame is not None
            self._image = self._frame.to_ndarray(format="bgr24")
            self._frame = None
        return self._image

    @property
    def size(self) -> tuple[int, int]:
        if self._image is not None:
            return int(self._image.shape[1]), int(self._image.shape[0])
        assert self._frame is not None
        return self._frame.width, self._frame.height

    def gray(self) -> tuple[np.ndarray, bool]:
        """(luma or grey picture, limited_range): the cheapest picture for a motion check."""
        f = self._frame
        if f is not None and f.format.name in ("yuv420p", "yuvj420p", "nv12", "yuv422p", "yuv444p"):
            plane = f.planes[0]
            y = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]
            return y, f.format.name != "yuvj420p"
        return self.image, False


@dataclass
class SourceStats:
    packets: int = 0
    decoded: int = 0
    sampled: int = 0
    decode_errors: int = 0
    reconnects: int = 0
    stalls: int = 0
    idle_skipped: int = 0  # packets not decoded because the camera was idle
    last_error: str = ""
    width: int = 0
    height: int = 0


@dataclass
class Backoff:
    """Capped exponential backoff with jitter: 1 s, 2 s, 4 s ... 30 s, ±20 %."""

    initial: float = 1.0
    cap: float = 30.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        base = min(self.cap, self.initial * (2 ** self.attempt))
        self.attempt += 1
        return base * self.rng.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.attempt = 0


class Sampler:
    """Pick frames at ``fps`` by timestamp; after a gap, restart the grid instead of bursting."""

    def __init__(self, fps: float):
        self.period = 1.0 / fps
        self.next_t: float | None = None

    def take(self, t: float) -> bool:
        if self.next_t is None or t >= self.next_t + self.period or t < self.next_t - 2 * self.period:
            # first frame, a gap of more than one period, or time went backwards: restart the grid
            self.next_t = t + self.period
            return True
        if t >= self.next_t - 1e-6:
            self.next_t += self.period
            return True
        return False


def _host_port(url: str) -> tuple[str | None, int]:
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("rtsp", "rtsps", "http", "https") or not parts.hostname:
        return None, 0
    default = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}[parts.scheme.lower()]
    return parts.hostname, parts.port or default


def _port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    import socket
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def is_timeout(exc: BaseException) -> bool:
    """True for the errors a silent stream produces (socket timeout, interrupted read)."""
    import errno
    return isinstance(exc, (av.error.ExitError, TimeoutError)) or getattr(exc, "errno", None) in (
        errno.ETIMEDOUT, errno.EAGAIN, errno.EINTR) or "timed out" in str(exc).lower()


def open_options(cam: CameraConfig, url: str | None = None) -> dict[str, str]:
    if cam.is_file_source(url):
        return {}
    return {
        "rtsp_transport": cam.rtsp_transport,
        # socket timeout in µs: a stream silent this long fails instead of blocking forever
        "timeout": str(int(cam.watchdog.stall_s * 1_000_000)),
        "analyzeduration": "500000",
        "probesize": "500000",
        "fflags": "nobuffer",
    }


class CameraSource:
    """Runs one camera in a thread: connect → decode → sample → ``on_frame``; reconnect on failure."""

    def __init__(self, camera_id: str, cam: CameraConfig, base_dir: Path,
                 on_frame: Callable[[SampledFrame], None],
                 on_state: Callable[[str, State, str], None] | None = None,
                 backoff: Backoff | None = None, idle: Callable[[], bool] | None = None,
                 on_packet: Callable[[av.Packet, av.video.stream.VideoStream], None] | None = None,
                 on_disconnect: Callable[[str], None] | None = None):
        self.camera_id = camera_id
        self.cam = cam
        self.url = str(cam.file_path(base_dir)) if cam.is_file_source() else cam.source
        self.safe_url = redact_url(self.url)
        self.on_frame = on_frame
        self.on_state = on_state
        self.backoff = backoff or Backoff(cam.watchdog.backoff_initial_s, cam.watchdog.backoff_max_s)
        self.idle = idle or (lambda: False)  # asked after each sampled frame: decode keyframes only?
        self.on_packet = on_packet  # every demuxed packet (recording when one URL serves both roles)
        self.on_disconnect = on_disconnect  # the input dropped: the recording gets an explicit gap
        self.stats = SourceStats()
        self.state = State.STOPPED
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pts_offset = 0.0  # keeps a looping file's timeline growing

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"src-{self.camera_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def _set_state(self, new: State, detail: str = "") -> None:
        if new == self.state:
            return
        if new not in ALLOWED[self.state]:
            raise RuntimeError(f"camera {self.camera_id}: illegal transition {self.state.value} → {new.value}")
        self.state = new
        log.info("camera %s: %s %s", self.camera_id, new.value, detail)
        if self.on_state:
            try:
                self.on_state(self.camera_id, new, detail)
            except Exception:  # a status callback must never kill the stream
                log.exception("camera %s: state callback failed", self.camera_id)

    def _run(self) -> None:
        self._set_state(State.CONNECTING)
        while not self._stop.is_set():
            try:
                self._stream_once()
                if self._stop.is_set():
                    break
                reason = "end of stream"
            except (av.error.FFmpegError, OSError, ValueError, RuntimeError) as e:
                reason = f"{type(e).__name__}: {e}".replace(self.url, self.safe_url)
                self.stats.last_error = reason
                if is_timeout(e) and not self._stop.is_set():
                    self.stats.stalls += 1
                    self._set_state(State.STALLED, f"no data for {self.cam.watchdog.stall_s:g} s")
            except Exception as e:  # never let one camera take the process down
                log.exception("camera %s: unexpected error", self.camera_id)
                reason = f"{type(e).__name__}: {e}".replace(self.url, self.safe_url)
                self.stats.last_error = reason
            if self.on_disconnect and not (self.cam.is_file_source() and reason == "end of stream"):
                try:
                    self.on_disconnect(reason)
                except Exception:
                    log.exception("camera %s: disconnect callback failed", self.camera_id)
            if self._stop.is_set():
                break
            if self.cam.is_file_source() and not self.cam.loop and reason == "end of stream":
                break
            delay = 0.0 if (self.cam.is_file_source() and self.cam.loop and reason == "end of stream") \
                else self.backoff.next_delay()
            if delay:
                self._set_state(State.BACKOFF, f"{reason}; retry in {delay:.1f} s")
                if self._wait_backoff(delay):
                    break
            self.stats.reconnects += 1
            self._set_state(State.CONNECTING, reason)
        self._set_state(State.STOPPED)

    def _wait_backoff(self, delay: float) -> bool:
        """Wait out a backoff; True when asked to stop.

        A TCP probe of the camera's port every half second ends the wait early when the
        port goes from refusing to accepting: a camera or server that restarts is back in
        about a second, not after the whole (growing) backoff.  A port that accepts all
        along (a stream that fails for another reason) does not shorten the backoff.
        """
        host, port = _host_port(self.url)
        deadline = time.monotonic() + delay
        was_closed = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._stop.wait(min(0.5, left)):
                return True
            if host is None:
                continue
            if _port_open(host, port):
                if was_closed:
                    return False
            else:
                was_closed = True

    # ------------------------------------------------------------------ one connection
    def _stream_once(self) -> None:
        container = av.open(self.url, options=open_options(self.cam),
                            timeout=(self.cam.timeout_s, self.cam.watchdog.stall_s))
        try:
            vs = container.streams.video[0]
            vs.thread_type = "AUTO"
            sampler = Sampler(self.cam.detect_fps)
            tb = float(vs.time_base) if vs.time_base else 1 / 90000
            file_mode = self.cam.is_file_source()
            t0_wall: float | None = None
            t0_pts: float | None = None
            last_pts = self._pts_offset
            idle = False
            for packet in container.demux(vs):
                if self._stop.is_set():
                    return
                if packet.dts is None and packet.pts is None:
                    continue  # live RTSP's first packet may carry no timestamp
                self.stats.packets += 1
                if self.on_packet is not None:
                    self.on_packet(packet, vs)  # copies what it keeps; never raises
                if file_mode and packet.pts is not None:  # play files at real-time pace
                    ppts = packet.pts * tb + self._pts_offset
                    if t0_wall is None or t0_pts is None:
                        t0_wall, t0_pts = time.monotonic(), ppts
                    ahead = (ppts - t0_pts) - (time.monotonic() - t0_wall)
                    if ahead > 0 and self._stop.wait(min(ahead, 1.0)):
                        return
                if idle and not packet.is_keyframe:
                    self.stats.idle_skipped += 1  # idle mode: nothing moves, only keyframes are decoded
                    continue
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError as e:
                    self.stats.decode_errors += 1
                    self.stats.last_error = f"decode: {e}"
                    continue
                for frame in frames:
                    if frame.is_corrupt:
                        self.stats.decode_errors += 1  # concealed by the decoder, but counted
                    if frame.pts is None:
                        continue
                    pts = frame.pts * tb + self._pts_offset
                    last_pts = pts
                    self.stats.decoded += 1
                    if self.state != State.STREAMING:
                        self.stats.width, self.stats.height = frame.width, frame.height
                        self._set_state(State.STREAMING, f"{frame.width}x{frame.height}")
                        self.backoff.reset()
                    if not (sampler.take(pts) or (idle and frame.key_frame)):
                        continue
                    self.stats.sampled += 1
                    self.on_frame(SampledFrame(self.camera_id, None, pts, time.time(), self.stats.decoded, frame))
                    idle = self.idle()
            if file_mode:
                self._pts_offset = last_pts + 0.1
        finally:
            container.close()
