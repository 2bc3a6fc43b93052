"""The one publisher: every alert update and camera change becomes a message here, and only here.

It writes the snapshot (when one is due), builds the message (``events``: each carries a unique
``id`` consumers de-duplicate on) and hands it to a *sink*: the bus for a live worker, a list
for ``sharpeye replay``.  It is the only place that handles their failures:

* a snapshot that cannot be written (disk full, permissions) never blocks its alert: the message
  goes out with ``snapshot: null`` and ``snapshot_error`` saying why;
* a sink that fails is counted and logged; the message is not lost silently (the sink decides
  what a failure means: the bus sink spools to the durable outbox).

Everything here runs on the caller's thread (the worker's detect thread), so messages of one camera
leave in the order their updates happened.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.analyse.alerts import AlertUpdate
from pipeline.analyse.tamper import TamperEvent
from pipeline.analyse.watchlist import WatchlistHit
from pipeline.config import Config
from pipeline.publish.events import (
    alert_message,
    camera_message,
    draw_snapshot,
    tamper_message,
    watchlist_message,
    write_snapshot,
)

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where finished messages go. ``send`` raises when the message could not be taken."""

    def send(self, message: dict[str, Any]) -> None: ...


class ListSink:
    """Keeps messages in memory (replay, tests)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)


class Frame(Protocol):
    """What the publisher needs of a frame: its picture (made on demand) and capture time."""

    @property
    def image(self) -> np.ndarray: ...

    capture_time: float


@dataclass
class PublishStats:
    published: int = 0  # messages the sink took
    failed: int = 0  # messages the sink refused
    snapshot_errors: int = 0  # alerts sent without their snapshot
    snapshot_s: float = 0.0  # time drawing and encoding snapshots (per-stage timing)
    send_s: float = 0.0  # time handing messages to the sink


class Publisher:
    """Turns updates into messages and sends them; ``snapshot_dir`` None means no snapshots (replay default)."""

    def __init__(self, cfg: Config, sink: Sink, snapshot_dir: Path | None):
        self.cfg = cfg
        self.sink = sink
        self.snapshot_dir = snapshot_dir
        self.stats: dict[str, PublishStats] = {}
        self._lock = threading.Lock()  # stats only: sends are ordered by the caller's thread

    def _stats(self, camera_id: str) -> PublishStats:
        with self._lock:
            return self.stats.setdefault(camera_id, PublishStats())

    def alert(self, camera_id: str, update: AlertUpdate, frame: Frame | None) -> dict[str, Any]:
        """Publish one lifecycle step of an alert; returns the message (also when the sink failed)."""
        snapshot: dict[str, Any] | None = None
        snapshot_error: str | None = None
        if frame is not None and update.snapshot_due and self.snapshot_dir is not None:
            snapshot, snapshot_error = self._snapshot(
                camera_id, update.alert_id, update.time, update.best_score,
                lambda: draw_snapshot(frame.image, update.objects, update.severity))
        msg = alert_message(update, self.cfg, camera_id, snapshot, frame.capture_time if frame else None)
        if snapshot_error is not None:
            msg["snapshot_error"] = snapshot_error
        return self._send(camera_id, msg)

    def tamper(self, camera_id: str, event: TamperEvent, frame: Frame | None) -> dict[str, Any]:
        """Publish a tamper alert's start or end (an ``alert`` with rule kind ``tamper``).

        The ``new`` carries a snapshot of what the camera shows now (black, covered, blurred, the
        wrong view): the operator confirms the tampering by looking, like any alert."""
        snapshot: dict[str, Any] | None = None
        snapshot_error: str | None = None
        if frame is not None and event.phase == "new" and self.snapshot_dir is not None:
            snapshot, snapshot_error = self._snapshot(camera_id, event.alert_id, event.time, event.score,
                                                      lambda: frame.image)
        msg = tamper_message(event, self.cfg, camera_id, snapshot, frame.capture_time if frame else None)
        if snapshot_error is not None:
            msg["snapshot_error"] = snapshot_error
        return self._send(camera_id, msg)

    def watchlist(self, hit: WatchlistHit, picture: np.ndarray | None) -> list[dict[str, Any]]:
        """Publish a watchlist hit: its ``new`` (with the vehicle's view as the snapshot) and its ``end``."""
        snapshot: dict[str, Any] | None = None
        snapshot_error: str | None = None
        if picture is not None and self.snapshot_dir is not None:
            snapshot, snapshot_error = self._snapshot(hit.camera_id, hit.alert_id, hit.seen_t, hit.confidence,
                                                      lambda: picture)
        new = watchlist_message(hit, self.cfg, "new", snapshot)
        if snapshot_error is not None:
            new["snapshot_error"] = snapshot_error
        return [self._send(hit.camera_id, new),
                self._send(hit.camera_id, watchlist_message(hit, self.cfg, "end", None))]

    def _snapshot(self, camera_id: str, alert_id: str, t: float, score: float,
                  picture: Callable[[], np.ndarray]) -> tuple[dict[str, Any] | None, str | None]:
        """Write an alert's snapshot: (its reference, None), or (None, why) when it cannot be written (disk
        full, permissions, the encoder): the alert goes out without it."""
        assert self.snapshot_dir is not None
        st = self._stats(camera_id)
        t0 = time.perf_counter()
        try:
            img = picture()
            rel = write_snapshot(self.snapshot_dir, camera_id, f"{alert_id}-{int(t * 1000) % 10_000_000}", img)
            return {"path": rel, "width": int(img.shape[1]), "height": int(img.shape[0]),
                    "score": round(float(score), 4)}, None
        except Exception as e:
            st.snapshot_errors += 1
            error = f"{type(e).__name__}: {e}"
            log.warning("camera %s: snapshot of %s not written: %s", camera_id, alert_id, error)
            return None, error
        finally:
            st.snapshot_s += time.perf_counter() - t0

    def camera(self, camera_id: str, state: str, detail: str, online: bool) -> dict[str, Any]:
        """Publish a camera going offline or coming back."""
        return self._send(camera_id, camera_message(self.cfg, camera_id, state, detail, online))

    def _send(self, camera_id: str, msg: dict[str, Any]) -> dict[str, Any]:
        st = self._stats(camera_id)
        t0 = time.perf_counter()
        try:
            self.sink.send(msg)
            st.published += 1
        except Exception as e:
            st.failed += 1
            log.error("camera %s: %s message %s not published: %s", camera_id, msg.get("type"), msg["id"], e)
        st.send_s += time.perf_counter() - t0
        return msg
