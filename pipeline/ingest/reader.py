"""The one reconnecting reader: a camera input in its own thread, whatever is done with its packets.

Both roles of an input (decoding sampled frames for the detector, copying packets to the recorder)
share this lifecycle, so it is written once:

* an explicit state machine whose transitions are checked in one place (``ALLOWED``): an illegal
  transition is a bug and raises, instead of leaving the dashboard with a state that cannot happen;
* PyAV opened with an open timeout and a socket (read) timeout, so a silent stream raises instead of
  blocking forever; a timeout counts as a stall and shows as ``stalled`` before the reconnect;
* reconnection with capped exponential backoff and jitter, cut short by a cheap TCP probe as soon as
  a camera (or server) that refused connections accepts again;
* local files played at real-time pace (their recordings and alerts then carry real wall-clock
  times), looped when asked, so demos and tests behave like cameras;
* the URL's secrets never reach a log line, a state detail or ``last_error``.

A role subclasses :class:`Reader` and supplies only :meth:`Reader._packet` (and, when it needs them,
:meth:`Reader._connected` and :meth:`Reader._finished`).
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import av
import av.error

from pipeline.config import redact_url

log = logging.getLogger(__name__)

# Priority of reader threads (demux + decode; FFmpeg's decoder threads inherit it), set by the worker from
# the config's ``reader_nice``.  A worker's one detect thread stays at the default priority: in a burst of
# decoding it is not one runnable thread among dozens of equal ones (docs/benchmarks.md, the stall hunt).
_reader_nice = 0


def set_reader_nice(nice: int) -> None:
    """Reader threads started from now on lower their own priority by ``nice`` (0 = as the process)."""
    global _reader_nice
    _reader_nice = nice


def _nice_this_thread(nice: int) -> None:
    if nice <= 0:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)  # Linux: this thread only
    except (OSError, AttributeError) as e:  # another system, or refused: the thread runs as it is
        log.debug("reader thread priority not lowered: %s", e)


class State(str, enum.Enum):  # noqa: UP042 (StrEnum would change str() in log lines and status)
    CONNECTING = "connecting"  # opening the stream
    STREAMING = "streaming"  # data arrives
    STALLED = "stalled"  # connected, but nothing for the read timeout: about to reconnect
    BACKOFF = "backoff"  # failed; waiting before the next try
    STOPPED = "stopped"


# the only transitions an input may make; anything else is a bug
ALLOWED = {
    State.CONNECTING: {State.STREAMING, State.STALLED, State.BACKOFF, State.STOPPED},
    State.STREAMING: {State.STALLED, State.BACKOFF, State.STOPPED, State.CONNECTING},
    State.STALLED: {State.BACKOFF, State.CONNECTING, State.STOPPED},
    State.BACKOFF: {State.CONNECTING, State.STOPPED},
    State.STOPPED: {State.CONNECTING},
}

StateCallback = Callable[[str, State, str], None]


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


@dataclass
class ReaderStats:
    """What every input counts; a role adds its own counters by subclassing."""

    packets: int = 0
    connects: int = 0
    reconnects: int = 0
    stalls: int = 0
    last_error: str = ""
    cpu_s: float = 0.0  # CPU time of the input thread (demux and the role's work)


def input_options(rtsp_transport: str = "tcp", read_timeout_s: float = 5.0,
                  low_latency: bool = False) -> dict[str, str]:
    """FFmpeg open options for a network input: transport, socket timeout (else a stall blocks forever)."""
    opts = {
        "rtsp_transport": rtsp_transport,
        "timeout": str(int(read_timeout_s * 1_000_000)),  # µs
        "analyzeduration": "500000",
        "probesize": "500000",
    }
    if low_latency:
        opts["fflags"] = "nobuffer"  # decode what arrives now; the recorder can afford FFmpeg's buffering
    return opts


def is_network_url(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def is_timeout(exc: BaseException) -> bool:
    """True for the errors a silent stream produces (socket timeout, interrupted read)."""
    return isinstance(exc, (av.error.ExitError, TimeoutError)) or getattr(exc, "errno", None) in (
        errno.ETIMEDOUT, errno.EAGAIN, errno.EINTR) or "timed out" in str(exc).lower()


def host_port(url: str) -> tuple[str | None, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("rtsp", "rtsps", "http", "https") or not parts.hostname:
        return None, 0
    default = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}[scheme]
    try:
        return parts.hostname, parts.port or default
    except ValueError:  # a port that is not a number: no probe, the open will say what is wrong
        return None, 0


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Reader:
    """One input in a thread: connect → demux → ``_packet`` for every packet; reconnect on failure.

    ``on_disconnect(reason)`` is told each time a connection is lost (not when a looping file
    restarts), so a recorder can write an explicit gap.  ``loop``: a local file starts again at its
    end instead of stopping the reader.
    """

    role = "input"

    def __init__(self, camera_id: str, url: str, *, options: dict[str, str] | None = None,
                 open_timeout_s: float = 10.0, read_timeout_s: float = 10.0, loop: bool = True,
                 backoff: Backoff | None = None, on_state: StateCallback | None = None,
                 on_disconnect: Callable[[str], None] | None = None, stats: ReaderStats | None = None):
        self.camera_id = camera_id
        self.url = url.removeprefix("file://")
        self.safe_url = redact_url(url)
        self.is_file = not is_network_url(url)
        if options is None:
            options = {} if self.is_file else input_options(read_timeout_s=read_timeout_s)
        self.options = dict(options)
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.loop = loop
        self.backoff = backoff or Backoff()
        self.on_state = on_state
        self.on_disconnect = on_disconnect
        self.stats = stats if stats is not None else ReaderStats()
        self.state = State.STOPPED
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpu0 = 0.0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"{self.role}-{self.camera_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop reading; waits up to ``timeout`` (a stalled read ends within the read timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _set_state(self, new: State, detail: str = "") -> None:
        if new == self.state:
            return
        if new not in ALLOWED[self.state]:
            raise RuntimeError(f"camera {self.camera_id} {self.role}: illegal transition "
                               f"{self.state.value} → {new.value}")
        self.state = new
        log.info("camera %s %s: %s %s", self.camera_id, self.role, new.value, detail)
        if self.on_state is not None:
            try:
                self.on_state(self.camera_id, new, detail)
            except Exception:  # a status callback must never kill the stream
                log.exception("camera %s: %s state callback failed", self.camera_id, self.role)

    def _streaming(self, detail: str) -> None:
        """The role saw real data: the connection is good, the backoff starts again from its first step."""
        if self.state != State.STREAMING:
            self._set_state(State.STREAMING, detail)
            self.backoff.reset()

    def _scrub(self, text: str) -> str:
        return text.replace(self.url, self.safe_url)

    def _run(self) -> None:
        _nice_this_thread(_reader_nice)
        self._cpu0 = time.thread_time()
        self._set_state(State.CONNECTING)
        try:
            while not self._stop.is_set():
                try:
                    self._read_once()
                    reason = "end of stream"
                except (av.error.FFmpegError, OSError, ValueError, RuntimeError) as e:
                    reason = self._scrub(f"{type(e).__name__}: {e}")
                    if is_timeout(e) and not self._stop.is_set():
                        self.stats.stalls += 1
                        self._set_state(State.STALLED, f"no data for {self.read_timeout_s:g} s")
                except Exception as e:  # one camera must never take the process down
                    log.exception("camera %s: %s failed", self.camera_id, self.role)
                    reason = self._scrub(f"{type(e).__name__}: {e}")
                self.stats.cpu_s = time.thread_time() - self._cpu0
                if self._stop.is_set():
                    break
                file_ended = self.is_file and reason == "end of stream"
                if not file_ended:
                    self.stats.last_error = reason
                    if self.on_disconnect is not None:
                        try:
                            self.on_disconnect(reason)
                        except Exception:
                            log.exception("camera %s: disconnect callback failed", self.camera_id)
                if file_ended and not self.loop:
                    break
                delay = 0.0 if file_ended else self.backoff.next_delay()
                if delay:
                    self._set_state(State.BACKOFF, f"{reason}; retry in {delay:.1f} s")
                    if self._wait_backoff(delay, refused="refused" in reason.lower()):
                        break
                self.stats.reconnects += 1
                self._set_state(State.CONNECTING, reason)
        finally:
            try:
                self._finished()
            finally:
                self.stats.cpu_s = time.thread_time() - self._cpu0
                self._set_state(State.STOPPED)

    def _wait_backoff(self, delay: float, refused: bool = False) -> bool:
        """Wait out a backoff; True when asked to stop.

        A TCP probe of the camera's port every half second ends the wait early when the port goes
        from refusing to accepting: a camera or server that restarts is back in about a second, not
        after the whole (growing) backoff.  A port that accepts all along (a stream that fails for
        another reason) does not shorten the backoff.  ``refused``: the last attempt found the port
        closed, so a port open at the first probe already means the server is back.
        """
        host, port = host_port(self.url)
        deadline = time.monotonic() + delay
        was_closed = refused
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._stop.wait(min(0.5, left)):
                return True
            if host is None:
                continue
            if port_open(host, port):
                if was_closed:
                    return False
            else:
                was_closed = True

    # ------------------------------------------------------------------ one connection
    def _read_once(self) -> None:
        container = av.open(self.url, options=self.options, timeout=(self.open_timeout_s, self.read_timeout_s))
        try:
            stream = container.streams.video[0]
            self.stats.connects += 1
            self._connected(stream)
            tb = float(stream.time_base) if stream.time_base else 1 / 90000
            t0: tuple[float, float] | None = None  # (monotonic, stream seconds): real-time pacing of files
            for packet in container.demux(stream):
                if self._stop.is_set():
                    return
                ts = packet.dts if packet.dts is not None else packet.pts
                if self.is_file and ts is not None:
                    t = ts * tb
                    if t0 is None:
                        t0 = (time.monotonic(), t)
                    ahead = (t - t0[1]) - (time.monotonic() - t0[0])
                    if ahead > 0 and self._stop.wait(min(ahead, 1.0)):
                        return
                self._packet(packet, stream)
                if self.stats.packets % 25 == 0:
                    self.stats.cpu_s = time.thread_time() - self._cpu0
        finally:
            container.close()
            self._disconnected()

    # ------------------------------------------------------------------ what a role supplies
    def _connected(self, stream: av.video.stream.VideoStream) -> None:
        """A new connection is open (decoders, samplers and timelines start here)."""

    def _packet(self, packet: av.Packet, stream: av.video.stream.VideoStream) -> None:
        raise NotImplementedError

    def _disconnected(self) -> None:
        """The connection closed, whatever the reason."""

    def _finished(self) -> None:
        """The reader stops for good (close open files here)."""
