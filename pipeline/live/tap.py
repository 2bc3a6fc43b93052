"""One camera stream offered to live viewers: GOP cache, muxing while watched, fan-out, overlays, JPEG fallback.

Threads: the camera's input thread calls :meth:`LiveTap.feed` (or :meth:`LiveTap.capture`) for every
packet; the detect thread calls :meth:`LiveCamera.analysed`; each viewer's connection thread reads its
:class:`Subscriber`; the service's housekeeping thread calls :meth:`LiveTap.tick`.  One lock per tap.

Cost model, and why it is shaped so:

* Nobody watching: the packets of the current GOP are kept (references to packets the recorder
  already copied, or one ``bytes`` copy each), nothing is muxed or decoded.  That is what lets the
  first viewer start at once, at a keyframe: a viewer sent from mid-GOP sees nothing until the
  next keyframe (Chromium drops the frames silently).
* Somebody watching: each packet is remuxed once into one fragment (about 0.01 core per camera),
  and every viewer gets the same bytes; a new viewer gets the init segment and the fragments since
  the last keyframe.  ``LINGER_S`` after the last viewer left the muxer is closed.
* A viewer that cannot keep up (its queue over ``MAX_QUEUE_BYTES``) is disconnected rather than
  allowed to hold memory; the page reconnects and starts again at a keyframe.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import av
import av.error

from pipeline.live import protocol
from pipeline.live.fmp4 import Fragment, FragmentMuxer
from pipeline.record.packets import PacketCapture, StoredPacket

log = logging.getLogger(__name__)

LINGER_S = 2.0  # keep producing this long after the last viewer left (a page reload comes straight back)
MAX_QUEUE_BYTES = 8 * 2**20
GOP_MAX_PACKETS = 1500  # a GOP longer than a minute at 25 fps is not cached: viewers wait for a keyframe
GOP_MAX_BYTES = 32 * 2**20
TIMES_KEPT = 600  # packets remembered for matching an analysed frame to its media time
MATCH_S = 1e-4  # same formula on both sides: the stream times of frame and packet agree to rounding
JPEG_FPS = 2.0
HOLD_OVERLAY_S = 1.0  # main-stream boxes wait this long at most for the frame they belong to
JPEG_QUALITY = 75

Message = tuple[bytes, bytes]


class Subscriber:
    """One viewer's queue of framed messages; the tap puts, the viewer's connection thread gets."""

    def __init__(self, fmt: str, max_bytes: int = MAX_QUEUE_BYTES):
        self.fmt = fmt
        self.max_bytes = max_bytes
        self.closed = False
        self.reason = ""
        self.started = False  # has had its hello and init (fmp4) for the current timeline
        self.next_jpeg = 0.0
        self._q: collections.deque[Message] = collections.deque()
        self._bytes = 0
        self._cond = threading.Condition()

    def put(self, kind: bytes, payload: bytes) -> bool:
        """Queue a message; False (and closed) when the viewer is too far behind."""
        with self._cond:
            if self.closed:
                return False
            if self._bytes + len(payload) > self.max_bytes:
                self.closed, self.reason = True, "too_slow"
                self._cond.notify_all()
                return False
            self._q.append((kind, payload))
            self._bytes += len(payload)
            self._cond.notify()
            return True

    def get(self, timeout: float) -> Message | None:
        """The next message, or None after ``timeout`` (or when closed and drained)."""
        with self._cond:
            if not self._q and not self.closed:
                self._cond.wait(timeout)
            if not self._q:
                return None
            kind, payload = self._q.popleft()
            self._bytes -= len(payload)
            return kind, payload

    def close(self, reason: str) -> None:
        with self._cond:
            if not self.closed:
                self.closed, self.reason = True, reason
            self._cond.notify_all()


class MediaClock:
    """A stream's media time mapped onto the receive clock by the lower envelope of (receive - media) time.

    Why: the sub-stream and the main stream of a camera are two RTSP sessions with unrelated
    timestamps, so a detection on a sub-stream frame can only be put on the main stream through a
    common clock.  The receive time of single packets is a poor one: a big main-stream frame,
    network bursts and the demuxer's buffering delay some packets by tens or hundreds of ms.  The
    camera stamps each frame when it captures it, so ``receive - media time`` is a constant plus
    each packet's delay; its minimum over the last packets (the least delayed ones) is that
    constant.  ``media time + offset`` is then the capture time in receive-clock terms, the same
    for both streams whatever jitter either had (only the two streams' smallest delays differ,
    normally well under a frame).  A jump of the offset by more than ``JUMP_S`` (the recorder's
    timeline re-anchored after a reconnect) starts the window again.
    """

    WINDOW = 250  # packets (10 s at 25 fps): slow drift between the camera's clock and ours is followed
    JUMP_S = 1.0
    MIN_SAMPLES = 10  # fewer: no estimate yet (the receive time is used instead)

    def __init__(self) -> None:
        self._offsets: collections.deque[float] = collections.deque(maxlen=self.WINDOW)
        self.offset: float | None = None

    def add(self, media_s: float, wall: float) -> None:
        d = wall - media_s
        if self.offset is not None and abs(d - self.offset) > self.JUMP_S:
            # the timeline was re-anchored (or one packet came very late): start again; a late packet's
            # offset is replaced by the next punctual one's, the minimum
            self._offsets.clear()
        self._offsets.append(d)
        self.offset = min(self._offsets)

    def capture_time(self, media_s: float) -> float | None:
        """When a packet of this media time was captured, on the receive clock (None: not enough packets yet)."""
        if self.offset is None or len(self._offsets) < self.MIN_SAMPLES:
            return None
        return media_s + self.offset


class LiveTap:
    """One stream (``sub`` or ``main``) of one camera, offered to any number of viewers."""

    def __init__(self, camera_id: str, stream: str, linger_s: float = LINGER_S, jpeg_fps: float = JPEG_FPS,
                 clock: Callable[[], float] = time.monotonic):
        self.camera_id = camera_id
        self.stream = stream
        self.linger_s = linger_s
        self.jpeg_period = 1.0 / jpeg_fps
        self.clock = clock
        self._lock = threading.Lock()
        self._capture = PacketCapture()  # for packets handed to us raw (nobody else copied them)
        self._gop: list[StoredPacket] = []
        self._gop_bytes = 0
        self._subs: list[Subscriber] = []
        self._muxer: FragmentMuxer | None = None
        self._cache: list[Fragment] = []  # fragments since the last keyframe of the current timeline
        self._decoder: Any = None  # av VideoCodecContext while JPEG viewers watch
        self._picture: av.VideoFrame | None = None
        self._idle_since: float | None = None
        # (decoder key, pts, receive time, media seconds) of the newest packets, for matching overlays
        self._times: collections.deque[tuple[float | None, int, float, float]] = collections.deque(maxlen=TIMES_KEPT)
        self.clock_media = MediaClock()  # this stream's media time on the receive clock (main-stream overlays)
        self._held: collections.deque[tuple[dict[str, Any], float, float]] = collections.deque(maxlen=64)
        self.counts: collections.Counter[str] = collections.Counter()

    # ------------------------------------------------------------------------- packets in (input thread)
    def capture(self, packet: av.Packet, stream: av.video.stream.VideoStream, key_s: float | None) -> None:
        """A raw demuxed packet: copied and repaired here (``PacketCapture``), then fed."""
        stored = self._capture.capture(packet, stream)
        for i, sp in enumerate(stored):
            self.feed(sp, key_s if i == len(stored) - 1 else None)

    def feed(self, sp: StoredPacket, key_s: float | None = None) -> None:
        """One stored packet; ``key_s``: the decoder's stream time of this packet (exact overlays)."""
        with self._lock:
            media_s = float(sp.pts * sp.template.time_base)
            self._times.append((key_s, sp.pts, sp.wall, media_s))
            self.clock_media.add(media_s, sp.wall)
            if self._gop and not self._gop[-1].template.compatible(sp.template):
                self._new_timeline("codec parameters changed")
            if sp.keyframe:
                self._gop, self._gop_bytes = [sp], len(sp.data)
            elif self._gop:
                self._gop.append(sp)
                self._gop_bytes += len(sp.data)
                if len(self._gop) > GOP_MAX_PACKETS or self._gop_bytes > GOP_MAX_BYTES:
                    self._gop, self._gop_bytes = [], 0
            if self._subs:
                self._produce(sp)
                if self._held:
                    self._release_held()
            else:
                self._stop_if_idle()

    def _produce(self, sp: StoredPacket) -> None:
        if any(s.fmt == "fmp4" for s in self._subs):
            if self._muxer is None:
                if self._gop and self._gop[-1] is sp:  # sp is in the GOP: start the timeline at its keyframe
                    self._start_muxer()
            else:
                self._mux(sp)
        if any(s.fmt == "jpeg" for s in self._subs):
            if self._decoder is None:
                if self._gop and self._gop[-1] is sp:
                    self._start_decoder()
            else:
                self._decode([sp])
            self._send_pictures()

    # ------------------------------------------------------------------------- fMP4
    def _start_muxer(self) -> None:
        """A new timeline from the cached GOP: its init, and a fragment per cached packet (but the newest)."""
        try:
            self._muxer = FragmentMuxer(self._gop[0])
        except (av.error.FFmpegError, OSError, ValueError, RuntimeError) as e:
            log.warning("camera %s %s: live muxer not started: %s", self.camera_id, self.stream, e)
            self._fail_viewers("fmp4", "mux_failed")
            return
        self.counts["timelines"] += 1
        self._cache = []
        for s in self._subs:
            if s.fmt == "fmp4":
                s.started = False
                self._greet(s)
        for sp in self._gop:
            self._mux(sp)

    def _mux(self, sp: StoredPacket) -> None:
        assert self._muxer is not None
        c0 = time.thread_time()
        try:
            frags = self._muxer.mux(sp)
        except (av.error.FFmpegError, OSError, ValueError) as e:
            log.warning("camera %s %s: live mux failed: %s", self.camera_id, self.stream, e)
            self._close_muxer()
            self._fail_viewers("fmp4", "mux_failed")
            return
        finally:
            self.counts["mux_cpu_us"] += int((time.thread_time() - c0) * 1e6)  # the remux's cost, in stats
        for f in frags:
            if f.keyframe:
                self._cache = [f]
            elif self._cache:
                self._cache.append(f)
            if len(self._cache) > GOP_MAX_PACKETS:
                self._cache = []
            self.counts["fragments"] += 1
            self.counts["fragment_bytes"] += len(f.data)
            for s in self._subs:
                if s.fmt == "fmp4" and s.started:
                    self._send(s, protocol.FRAGMENT, f.data)

    def _greet(self, s: Subscriber) -> None:
        """Hello + init + the fragments since the last keyframe: the viewer starts at a keyframe now."""
        m = self._muxer
        assert m is not None
        hello = {"camera": self.camera_id, "stream": self.stream, "format": "fmp4", "codec": m.codec,
                 "mime": f'video/mp4; codecs="{m.codec}"' if m.codec else None, "width": m.width,
                 "height": m.height, "timeline": self.counts["timelines"]}
        self._send(s, protocol.HELLO, json.dumps(hello).encode())
        self._send(s, protocol.INIT, m.init)
        for f in self._cache:
            self._send(s, protocol.FRAGMENT, f.data)
        s.started = True

    def _close_muxer(self) -> None:
        if self._muxer is not None:
            self._muxer.close()
            self._muxer = None
            self._cache = []

    # ------------------------------------------------------------------------- JPEG fallback
    def _start_decoder(self) -> None:
        t = self._gop[0].template
        try:
            ctx = av.CodecContext.create(t.codec, "r")
            if t.extradata:
                ctx.extradata = t.extradata
            self._decoder = ctx
        except (av.error.FFmpegError, ValueError) as e:
            log.warning("camera %s %s: no decoder for the JPEG fallback: %s", self.camera_id, self.stream, e)
            self._fail_viewers("jpeg", "decode_failed")
            return
        self._decode(self._gop)

    def _decode(self, packets: Sequence[StoredPacket]) -> None:
        assert self._decoder is not None
        for sp in packets:
            p = av.Packet(sp.data)
            p.pts, p.dts = sp.pts, sp.dts
            try:
                for frame in self._decoder.decode(p):
                    self._picture = frame
            except (av.error.FFmpegError, ValueError):
                self.counts["decode_errors"] += 1

    def _send_pictures(self) -> None:
        if self._picture is None:
            return
        now = self.clock()
        due = [s for s in self._subs if s.fmt == "jpeg" and now >= s.next_jpeg]
        if not due:
            return
        import cv2  # only the fallback needs it

        c0 = time.thread_time()
        ok, buf = cv2.imencode(".jpg", self._picture.to_ndarray(format="bgr24"),
                               [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            return
        data = buf.tobytes()
        self.counts["jpegs"] += 1
        self.counts["jpeg_cpu_us"] += int((time.thread_time() - c0) * 1e6)
        for s in due:
            if not s.started:
                self._send(s, protocol.HELLO, json.dumps({
                    "camera": self.camera_id, "stream": self.stream, "format": "jpeg",
                    "width": self._picture.width, "height": self._picture.height}).encode())
                s.started = True
            self._send(s, protocol.JPEG, data)
            s.next_jpeg = now + self.jpeg_period

    def _close_decoder(self) -> None:
        self._decoder = None
        self._picture = None

    # ------------------------------------------------------------------------- viewers
    def subscribe(self, fmt: str) -> Subscriber:
        """A new viewer; when a GOP is cached it gets its first picture at once."""
        if fmt not in protocol.FORMATS:
            raise ValueError(f"unknown live format {fmt!r}")
        s = Subscriber(fmt)
        with self._lock:
            self._subs.append(s)
            self._idle_since = None
            self.counts["viewers_total"] += 1
            if fmt == "fmp4":
                if self._muxer is not None:
                    self._greet(s)
                elif self._gop:
                    self._start_muxer()
            else:
                if self._decoder is None and self._gop:
                    self._start_decoder()
                self._send_pictures()
        return s

    def add_counts(self, **n: int) -> None:
        """Counters kept by others for this tap (a viewer connection's send cost)."""
        with self._lock:
            self.counts.update(n)

    def unsubscribe(self, s: Subscriber) -> None:
        s.close("left")
        with self._lock:
            if s in self._subs:
                self._subs.remove(s)
            if not self._subs and self._idle_since is None:
                self._idle_since = self.clock()

    def _send(self, s: Subscriber, kind: bytes, payload: bytes) -> None:
        if not s.put(kind, payload):
            self.counts["dropped_slow"] += 1
            log.info("camera %s %s: a live viewer fell behind and was disconnected", self.camera_id, self.stream)
            if s in self._subs:
                self._subs.remove(s)
            if not self._subs and self._idle_since is None:
                self._idle_since = self.clock()

    def _fail_viewers(self, fmt: str, code: str) -> None:
        for s in [s for s in self._subs if s.fmt == fmt]:
            s.put(protocol.ERROR, json.dumps({"code": code}).encode())
            s.close(code)
            self._subs.remove(s)

    def _new_timeline(self, why: str) -> None:
        """Codec parameters changed (a reconnect to a reconfigured camera): viewers get a new hello + init."""
        log.info("camera %s %s: new live timeline (%s)", self.camera_id, self.stream, why)
        self._gop, self._gop_bytes = [], 0
        self._close_muxer()
        self._close_decoder()
        for s in self._subs:
            s.started = False

    def _stop_if_idle(self) -> None:
        if self._idle_since is not None and self.clock() - self._idle_since >= self.linger_s:
            if self._muxer is not None or self._decoder is not None:
                log.info("camera %s %s: no live viewer for %.0f s: muxing stopped", self.camera_id, self.stream,
                         self.linger_s)
            self._close_muxer()
            self._close_decoder()

    def tick(self) -> None:
        """Housekeeping: stop producing for nobody even when no packet arrives (camera offline)."""
        with self._lock:
            if not self._subs:
                self._stop_if_idle()

    def close(self, reason: str = "camera_removed") -> None:
        with self._lock:
            for s in self._subs:
                s.put(protocol.ERROR, json.dumps({"code": reason}).encode())
                s.close(reason)
            self._subs = []
            self._close_muxer()
            self._close_decoder()
            self._gop = []

    # ------------------------------------------------------------------------- overlays (detect thread)
    @property
    def watched(self) -> bool:
        return bool(self._subs) and self._muxer is not None

    def frame_times(self, key_s: float) -> tuple[float, float | None] | None:
        """(receive time, capture time on the media clock) of the packet the decoder saw at stream time ``key_s``."""
        with self._lock:
            for k, _pts, w, media_s in reversed(self._times):
                if k is not None and abs(k - key_s) <= MATCH_S:
                    return w, self.clock_media.capture_time(media_s)
        return None

    def overlay(self, payload: dict[str, Any], key_s: float | None = None, wall: float | None = None,
                captured: float | None = None) -> float | None:
        """Send boxes keyed by the media time of the frame they were found on; returns that packet's wall time.

        ``key_s`` (the decoder's stream time of the frame) finds the very packet the detector saw:
        exact.  Without it (the main stream, whose packets the detector never saw), ``captured``
        (the sub-stream frame's capture time on its media clock) finds the packet of this stream
        captured closest to it on this stream's media clock (``match: media``); when that packet
        has not arrived yet (the main stream's bigger frames come later) the boxes wait for it, up
        to ``HOLD_OVERLAY_S``.  With no media clock yet, the packet received closest to ``wall``
        (``match: received``).  Both approximate, and marked so.
        """
        with self._lock:
            m = self._muxer
            if m is None or not any(s.fmt == "fmp4" and s.started for s in self._subs):
                return None
            if key_s is not None:
                for k, pts, w, _m in reversed(self._times):
                    if k is not None and abs(k - key_s) <= MATCH_S:
                        return self._send_overlay(payload, pts, w, True, "key")
            elif self._times:
                newest = self.clock_media.capture_time(self._times[-1][3])
                if captured is not None and newest is not None:
                    if captured > newest + self._half_frame():
                        self._held.append((payload, captured, self.clock()))  # its frame is still on the way
                        return None
                    return self._send_media_overlay(payload, captured)
                if wall is not None:
                    _k, pts, w, _m = min(self._times, key=lambda e: abs(e[2] - wall))
                    return self._send_overlay(payload, pts, w, False, "received")
            self.counts["overlays_unmatched"] += 1
            return None

    def _half_frame(self) -> float:
        if len(self._times) < 2:
            return 0.02
        return max(0.001, (self._times[-1][3] - self._times[0][3]) / (len(self._times) - 1) / 2)

    def _send_media_overlay(self, payload: dict[str, Any], captured: float) -> float | None:
        off = self.clock_media.offset or 0.0
        _k, pts, w, _m = min(self._times, key=lambda e: abs(e[3] + off - captured))
        return self._send_overlay(payload, pts, w, False, "media")

    def _release_held(self) -> None:
        """Held boxes whose frame has now arrived go out (called with the lock held, after each packet)."""
        newest = self.clock_media.capture_time(self._times[-1][3]) if self._times else None
        now = self.clock()
        while self._held:
            payload, captured, since = self._held[0]
            if newest is not None and captured <= newest + self._half_frame():
                self._held.popleft()
                if self._muxer is not None:
                    self._send_media_overlay(payload, captured)
            elif now - since > HOLD_OVERLAY_S:
                self._held.popleft()
                self.counts["overlays_unmatched"] += 1
            else:
                break

    def _send_overlay(self, payload: dict[str, Any], pts: int, received: float, exact: bool, how: str) -> float | None:
        m = self._muxer
        if m is None or pts < m.first_dts:
            self.counts["overlays_unmatched"] += 1
            return None
        msg = json.dumps({**payload, "t": round(m.media_time(pts), 6), "exact": exact, "match": how,
                          "timeline": self.counts["timelines"],
                          "received": round(received, 3)},  # when the worker got the packet: latency figures
                         separators=(",", ":")).encode()
        self.counts["overlays"] += 1
        self.counts[f"overlays_{how}"] += 1
        for s in self._subs:
            if s.fmt == "fmp4" and s.started:
                self._send(s, protocol.OVERLAY, msg)
        return received

    # ------------------------------------------------------------------------- health
    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"viewers": len(self._subs), "muxing": self._muxer is not None,
                    "decoding": self._decoder is not None, "gop_packets": len(self._gop),
                    "idle_s": round(self.clock() - self._idle_since, 1) if self._idle_since is not None else None,
                    **dict(self.counts)}


class LiveCamera:
    """A camera's live taps: its sub-stream (what the detector decodes) and, when it has one, its main stream."""

    def __init__(self, camera_id: str, has_main: bool, linger_s: float = LINGER_S):
        self.camera_id = camera_id
        self.sub = LiveTap(camera_id, "sub", linger_s)
        self.main = LiveTap(camera_id, "main", linger_s) if has_main else None
        self.errors = 0
        # the recorder's ``finish_soon`` (None: the camera is not recorded): lets the clip of an open
        # alert reach about now (the ``finish`` op of the seam)
        self.recorder: Callable[[float], float | None] | None = None

    def tap(self, stream: str) -> LiveTap:
        """The asked stream; a camera without a separate main stream offers its one stream for both."""
        return self.main if stream == "main" and self.main is not None else self.sub

    def source_packet(self, packet: av.Packet, stream: av.video.stream.VideoStream, offset_s: float,
                      stored: list[StoredPacket] | None) -> None:
        """The decode input's packet (``on_packet`` hook); ``stored``: what the recorder made of it, if it did.

        ``offset_s`` is the source's offset of a looping file's timeline, so the key is computed by
        the same formula as the decoded frame's ``pts`` (``pts * time_base + offset``).
        """
        try:
            tb = float(stream.time_base) if stream.time_base else 1 / 90000
            key = None if packet.pts is None else packet.pts * tb + offset_s
            if stored is None:
                self.sub.capture(packet, stream, key)
            else:
                for i, sp in enumerate(stored):
                    self.sub.feed(sp, key if i == len(stored) - 1 else None)
        except Exception:  # live view must never break the input that detection and recording depend on
            self._failed("sub")

    def record_packets(self, stored: Sequence[StoredPacket]) -> None:
        """The record input's stored packets (main stream), for an enlarged tile."""
        if self.main is not None:
            try:
                for sp in stored:
                    self.main.feed(sp)
            except Exception:
                self._failed("main")

    def _failed(self, stream: str) -> None:
        self.errors += 1
        if self.errors in (1, 10, 100) or self.errors % 1000 == 0:
            log.exception("camera %s %s: live tap failed (%d times)", self.camera_id, stream, self.errors)

    def analysed(self, pts_s: float, wall: float, size: tuple[int, int], objects: Sequence[Any]) -> None:
        """The detector's tracked objects on the frame decoded at stream time ``pts_s`` (detect thread)."""
        if not self.sub.watched and not (self.main is not None and self.main.watched):
            return
        w, h = max(1, size[0]), max(1, size[1])
        payload = {"objects": [{"id": int(o.track_id), "label": o.label, "score": round(float(o.score), 3),
                                "box": [round(o.box[0] / w, 5), round(o.box[1] / h, 5),
                                        round(o.box[2] / w, 5), round(o.box[3] / h, 5)]} for o in objects]}
        seen_wall = self.sub.overlay(payload, key_s=pts_s)
        if self.main is not None and self.main.watched:
            times = self.sub.frame_times(pts_s)  # the sub frame's capture time: the common clock of both streams
            self.main.overlay(payload, wall=seen_wall if seen_wall is not None else (times[0] if times else wall),
                              captured=times[1] if times else None)

    def tick(self) -> None:
        self.sub.tick()
        if self.main is not None:
            self.main.tick()

    def close(self, reason: str = "camera_removed") -> None:
        self.sub.close(reason)
        if self.main is not None:
            self.main.close(reason)

    def stats(self) -> dict[str, Any]:
        out = {"sub": self.sub.stats()}
        if self.main is not None:
            out["main"] = self.main.stats()
        return out
