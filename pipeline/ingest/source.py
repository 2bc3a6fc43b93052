"""The decode role of a camera input: frames sampled at the detect rate, handed to ``on_frame``.

The reconnecting lifecycle (timeouts, backoff with the port probe, stall counting, file pacing,
URL redaction) is :class:`pipeline.ingest.reader.Reader`'s; this role decodes.  Frames are sampled
by *timestamp*, not by counting, so a camera that changes its frame rate or drops frames still
gives the configured detect fps.  While the camera is idle (nothing moved for a while) only
keyframes are decoded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import av.error
import numpy as np

from pipeline.config import CameraConfig
from pipeline.ingest.reader import ALLOWED, Backoff, Reader, ReaderStats, State, StateCallback, input_options

__all__ = ["ALLOWED", "Backoff", "CameraSource", "SampledFrame", "Sampler", "SourceStats", "State", "open_options"]


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
class SourceStats(ReaderStats):
    decoded: int = 0
    sampled: int = 0
    decode_errors: int = 0
    idle_skipped: int = 0  # packets not decoded because the camera was idle
    decode_s: float = 0.0  # wall time in the decoder (per-stage timing)
    width: int = 0
    height: int = 0


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


def open_options(cam: CameraConfig, url: str | None = None) -> dict[str, str]:
    """Open options for one of the camera's URLs (none for a local file)."""
    if cam.is_file_source(url):
        return {}
    return input_options(cam.rtsp_transport, cam.watchdog.stall_s, low_latency=True)


class CameraSource(Reader):
    """Decodes one camera: connect → decode → sample → ``on_frame``; reconnect on failure.

    ``on_packet(packet, stream)`` sees every demuxed packet (the recorder, when one URL serves both
    roles); ``idle()`` is asked after each sampled frame: True decodes keyframes only.
    """

    role = "source"
    stats: SourceStats

    def __init__(self, camera_id: str, cam: CameraConfig, base_dir: Path,
                 on_frame: Callable[[SampledFrame], None],
                 on_state: StateCallback | None = None,
                 backoff: Backoff | None = None, idle: Callable[[], bool] | None = None,
                 on_packet: Callable[[av.Packet, av.video.stream.VideoStream], None] | None = None,
                 on_disconnect: Callable[[str], None] | None = None):
        url = str(cam.file_path(base_dir)) if cam.is_file_source() else cam.source
        super().__init__(camera_id, url, options=open_options(cam), open_timeout_s=cam.timeout_s,
                         read_timeout_s=cam.watchdog.stall_s, loop=cam.loop,
                         backoff=backoff or Backoff(cam.watchdog.backoff_initial_s, cam.watchdog.backoff_max_s),
                         on_state=on_state, on_disconnect=on_disconnect, stats=SourceStats())
        self.cam = cam
        self.on_frame = on_frame
        self.idle = idle or (lambda: False)
        self.on_packet = on_packet
        self._pts_offset = 0.0  # keeps a looping file's timeline growing
        self._last_pts = 0.0
        self._sampler = Sampler(cam.detect_fps)
        self._tb = 1 / 90000
        self._idle = False

    @property
    def pts_offset(self) -> float:
        """What this source adds to a packet's ``pts * time_base`` (a looping file's growing timeline): a frame's
        ``pts`` is that sum, so a packet hook can compute the same key (live overlays match frames by it)."""
        return self._pts_offset

    def _connected(self, stream: av.video.stream.VideoStream) -> None:
        stream.thread_type = "AUTO"
        self._sampler = Sampler(self.cam.detect_fps)
        self._tb = float(stream.time_base) if stream.time_base else 1 / 90000
        self._last_pts = self._pts_offset
        self._idle = False

    def _disconnected(self) -> None:
        if self.is_file:
            self._pts_offset = self._last_pts + 0.1

    def _packet(self, packet: av.Packet, stream: av.video.stream.VideoStream) -> None:
        if packet.dts is None and packet.pts is None:
            return  # live RTSP's first packet may carry no timestamp
        self.stats.packets += 1
        if self.on_packet is not None:
            self.on_packet(packet, stream)  # copies what it keeps; never raises
        if self._idle and not packet.is_keyframe:
            self.stats.idle_skipped += 1  # idle mode: nothing moves, only keyframes are decoded
            return
        t0 = time.perf_counter()
        try:
            frames = packet.decode()
        except av.error.InvalidDataError as e:
            self.stats.decode_s += time.perf_counter() - t0
            self.stats.decode_errors += 1
            self.stats.last_error = f"decode: {e}"
            return
        self.stats.decode_s += time.perf_counter() - t0
        for frame in frames:
            if frame.is_corrupt:
                self.stats.decode_errors += 1  # concealed by the decoder, but counted
            if frame.pts is None:
                continue
            pts = frame.pts * self._tb + self._pts_offset
            self._last_pts = pts
            self.stats.decoded += 1
            if self.state != State.STREAMING:
                self.stats.width, self.stats.height = frame.width, frame.height
                self._streaming(f"{frame.width}x{frame.height}")
            if not (self._sampler.take(pts) or (self._idle and frame.key_frame)):
                continue
            self.stats.sampled += 1
            self.on_frame(SampledFrame(self.camera_id, None, pts, time.time(), self.stats.decoded, frame))
            self._idle = self.idle()
