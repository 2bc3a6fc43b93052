"""Fencing stamps on messages: the worker's side (stamp, or refuse) and the consumers' side (drop stale).

With ``cluster.enabled`` a worker may run a camera only while it holds the camera's lease
(``pipeline/cluster``).  Each lease comes with a fencing token that rises on every acquisition, and
every message of the camera carries ``fence: {"owner", "token"}``:

- :class:`FencedSink` (worker) wraps the publisher's sink: it stamps each message with the camera's
  current fence, or refuses it (raises :class:`Fenced`) when the worker no longer holds the camera
  or is past its self-fencing deadline, so a frozen or cut-off worker publishes nothing new;
- the bus itself (first line): the outbox writes fenced messages through one Lua script that refuses a
  token below the camera's token counter (``bus.add_events_fenced``), so what a worker stamped before
  it fenced itself and delivers late from its outbox, after another worker took the camera, never
  reaches the stream or ``P:open``;
- :class:`FenceFilter` (consumers: archiver, dashboard live stream; second line) keeps the highest
  token seen per camera and drops a message with a lower one.  It only knows what it has seen since
  it started, which is why the check at the source comes first.  Messages without a fence (one
  machine) always pass.

Imports nothing else of Sharp Eyes: the fence comes in as a callable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol


class Fenced(RuntimeError):
    """The worker does not hold this camera's lease (any more): the message is not published."""


class Sink(Protocol):
    def send(self, message: dict[str, Any]) -> None: ...


def camera_of(message: dict[str, Any]) -> str | None:
    cam = message.get("camera")
    if isinstance(cam, dict):
        return cam.get("id")
    return cam if isinstance(cam, str) else None


class FencedSink:
    """Stamps every message with ``fence(camera)``; refuses one whose camera has no valid fence."""

    def __init__(self, sink: Sink, fence: Callable[[str], dict[str, Any] | None]):
        self.sink = sink
        self.fence = fence
        self.refused = 0

    def send(self, message: dict[str, Any]) -> None:
        cam = camera_of(message)
        stamp = self.fence(cam) if cam is not None else None
        if stamp is None:
            self.refused += 1
            raise Fenced(f"camera {cam}: this worker does not hold its lease; message not published")
        message["fence"] = stamp
        self.sink.send(message)


class FenceFilter:
    """Per-camera highest token seen; :meth:`accept` says whether a message is current."""

    def __init__(self) -> None:
        self.highest: dict[str, int] = {}
        self.dropped = 0
        self._lock = threading.Lock()

    def accept(self, message: dict[str, Any]) -> bool:
        fence = message.get("fence")
        cam = camera_of(message)
        if not isinstance(fence, dict) or cam is None:
            return True
        try:
            token = int(fence["token"])
        except (KeyError, TypeError, ValueError):
            return True
        with self._lock:
            if token < self.highest.get(cam, 0):
                self.dropped += 1
                return False
            self.highest[cam] = token
            return True
