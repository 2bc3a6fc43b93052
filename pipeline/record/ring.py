"""The pre-event ring: the last seconds of a camera's stored packets, so a clip can start before its alert."""

from __future__ import annotations

import threading
from collections import deque
from itertools import islice

from pipeline.record.packets import StoredPacket

DEFAULT_RING_BYTES = 64 * 2**20


class PacketRing:
    """The newest packets of one stream in memory, always starting at a keyframe.

    It keeps whole GOPs: the oldest one is dropped only once the next keyframe is itself at
    least ``seconds`` old, so ``packets_since(now - seconds)`` can always start at a keyframe
    at or before the requested time.  It therefore holds between ``seconds`` and
    ``seconds`` + one keyframe interval.  ``max_bytes`` is a hard cap that wins over time
    (a 4 Mbit/s stream needs ~5 MB for 10 s; the cap stops a broken or huge stream from
    eating the machine).  Thread-safe: the input thread adds, alert threads read.
    """

    def __init__(self, seconds: float, max_bytes: int = DEFAULT_RING_BYTES):
        if seconds < 0 or max_bytes <= 0:
            raise ValueError("PacketRing needs seconds >= 0 and max_bytes > 0")
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._q: deque[StoredPacket] = deque()
        self._keys: deque[tuple[int, float]] = deque()  # (absolute index, wall) of each keyframe
        self._base = 0  # absolute index of _q[0]
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, sp: StoredPacket) -> None:
        with self._lock:
            if self._q and not self._q[-1].template.compatible(sp.template):
                self._clear()  # new codec parameters: old packets cannot be muxed with new ones
            if not self._q and not sp.keyframe:
                return  # the ring must start at a keyframe
            if sp.keyframe:
                self._keys.append((self._base + len(self._q), sp.wall))
            self._q.append(sp)
            self._bytes += len(sp.data)
            self._trim(sp.wall)

    def packets_since(self, t: float) -> list[StoredPacket]:
        """Packets from the last keyframe at or before wall time ``t`` (or the oldest one)."""
        with self._lock:
            start = self._base
            for idx, wall in reversed(self._keys):
                if wall <= t:
                    start = idx
                    break
            return list(islice(self._q, start - self._base, None))

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def duration(self) -> float:
        """Wall-clock span from the oldest to the newest packet, in seconds."""
        with self._lock:
            return self._q[-1].wall - self._q[0].wall if self._q else 0.0

    def __len__(self) -> int:
        # also makes an empty ring falsy: the worker's status reports ``pre_event_s`` None until it fills
        return len(self._q)

    def _trim(self, newest: float) -> None:
        while len(self._keys) >= 2 and self._keys[1][1] <= newest - self.seconds:
            self._drop_head_gop()
        while self._bytes > self.max_bytes:
            if len(self._keys) >= 2:
                self._drop_head_gop()
            else:  # a single GOP over the cap: start again at the next keyframe
                self._clear()

    def _drop_head_gop(self) -> None:
        self._keys.popleft()
        nxt = self._keys[0][0]
        for _ in range(nxt - self._base):
            self._bytes -= len(self._q.popleft().data)
        self._base = nxt

    def _clear(self) -> None:
        self._base += len(self._q)
        self._q.clear()
        self._keys.clear()
        self._bytes = 0
