"""The bus: how workers and the dashboard meet, through Redis Streams and hashes.

Keys (``P`` is ``bus.prefix``, default ``sharpeye``), documented in docs/bus.md:

- ``P:events``   stream, capped with ``XADD MAXLEN ~``; each entry has the fields
  ``type`` (``alert`` or ``camera``), ``alert_id`` / ``camera`` and ``json``: the message,
  described by ``docs/schemas/event.schema.json``.
- ``P:cameras``  hash, camera id → JSON status (``state``, ``since``, ``updated``, counters).
  A status whose ``updated`` is older than ``STALE_S`` means the worker is gone: offline.
- ``P:open``     hash, alert id → JSON of the last message of every open alert, written in the
  same transaction as the stream entry (a restarted worker ends what its predecessor left open).

Nothing else crosses between processes except files under the data directory.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Iterator

import redis

from pipeline.publish.status import CameraStatus

SCHEMA_VERSION = "sharpeye.event/1"
STALE_S = 10.0


@dataclass(frozen=True)
class BusKeys:
    prefix: str = "sharpeye"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def cameras(self) -> str:
        return f"{self.prefix}:cameras"

    @property
    def open_alerts(self) -> str:
        return f"{self.prefix}:open"

    def prefix_key(self, name: str) -> str:
        return f"{self.prefix}:{name}"


def connect(url: str) -> "redis.Redis[bytes]":
    """A client with short timeouts so a dead Redis is noticed, not waited on forever."""
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)


def add_event(r: Any, keys: BusKeys, message: dict[str, Any], maxlen: int) -> Any:
    """Queue one message on ``r`` (a client or a pipeline): XADD to the events stream, and keep
    ``P:open`` (alert id → last message of every open alert) in step with it."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    fields: dict[str, str] = {"type": message["type"], "json": body}
    if "id" in message:
        fields["id"] = message["id"]
    if "alert_id" in message:
        fields["alert_id"] = message["alert_id"]
    if "camera" in message:
        fields["camera"] = message["camera"]["id"]
    sid = r.xadd(keys.events, fields, maxlen=maxlen, approximate=True)
    if message["type"] == "alert":
        if message.get("phase") == "end":
            r.hdel(keys.open_alerts, message["alert_id"])
        else:
            r.hset(keys.open_alerts, message["alert_id"], body)
    return sid


def publish_event(r: "redis.Redis[bytes]", keys: BusKeys, message: dict[str, Any], maxlen: int) -> str:
    """Append one message to the events stream (at once, atomically with ``P:open``); return its stream id."""
    pipe = r.pipeline(transaction=True)
    add_event(pipe, keys, message, maxlen)
    sid = pipe.execute()[0]
    return sid.decode() if isinstance(sid, bytes) else str(sid)


def open_alerts(r: "redis.Redis[bytes]", keys: BusKeys) -> dict[str, dict[str, Any]]:
    """alert id → the last message of every alert no ``end`` was published for."""
    return {(k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in r.hgetall(keys.open_alerts).items()}


def decode_entries(entries: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """Stream entries ``[(id, {b'json': ...})]`` → ``[(id, message)]``, skipping foreign entries."""
    out = []
    for sid, fields in entries:
        raw = fields.get(b"json") if b"json" in fields else fields.get("json")
        if raw is None:
            continue
        sid = sid.decode() if isinstance(sid, bytes) else sid
        msg = json.loads(raw)
        msg["stream_id"] = sid
        out.append((sid, msg))
    return out


def read_events(r: "redis.Redis[bytes]", keys: BusKeys, last_id: str = "0-0", count: int = 100,
                block_ms: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Messages after ``last_id`` (oldest first); with ``block_ms`` wait for new ones."""
    res = r.xread({keys.events: last_id}, count=count, block=block_ms)
    if not res:
        return []
    return decode_entries(res[0][1])


def latest_events(r: "redis.Redis[bytes]", keys: BusKeys, count: int) -> list[tuple[str, dict[str, Any]]]:
    """The newest ``count`` messages, oldest first."""
    return list(reversed(decode_entries(r.xrevrange(keys.events, count=count))))


def follow_events(r: "redis.Redis[bytes]", keys: BusKeys, last_id: str = "$",
                  block_ms: int = 5000) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield messages as they arrive, forever."""
    if last_id == "$":
        newest = r.xrevrange(keys.events, count=1)
        last_id = newest[0][0].decode() if newest else "0-0"
    while True:
        for sid, msg in read_events(r, keys, last_id, count=500, block_ms=block_ms):
            last_id = sid
            yield sid, msg


def set_camera_status(r: "redis.Redis[bytes]", keys: BusKeys, status: CameraStatus) -> None:
    status.updated = time.time()
    r.hset(keys.cameras, status.camera, status.to_json())


def parse_statuses(raw: dict[Any, Any], now: float | None = None) -> dict[str, CameraStatus]:
    """``HGETALL P:cameras`` → camera id → status; a stale one (worker gone) reads as offline."""
    now = time.time() if now is None else now
    out: dict[str, CameraStatus] = {}
    for k, v in raw.items():
        cid = k.decode() if isinstance(k, bytes) else k
        st = CameraStatus.from_dict(cid, json.loads(v))
        fresh = now - st.updated < STALE_S
        st.online = st.state == "streaming" and fresh
        if not fresh and st.state != "stopped":
            st.state = "offline"
        out[cid] = st
    return out


def camera_statuses(r: "redis.Redis[bytes]", keys: BusKeys, now: float | None = None) -> dict[str, CameraStatus]:
    """Every camera's last status; a stale one (worker gone) reads as offline."""
    return parse_statuses(r.hgetall(keys.cameras), now)
