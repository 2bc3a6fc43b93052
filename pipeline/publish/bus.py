"""The bus: how workers and the dashboard meet, through Redis Streams and hashes.

Keys (``P`` is ``bus.prefix``, default ``sharpeye``), documented in docs/bus.md:

- ``P:events``   stream, capped with ``XADD MAXLEN ~``; each entry has the fields
  ``type`` (``alert`` or ``camera``), ``alert_id`` / ``camera`` and ``json``: the message,
  described by ``docs/schemas/event.schema.json``.
- ``P:cameras``  hash, camera id → JSON status (``state``, ``since``, ``updated``, counters).
  A status whose ``updated`` is older than ``STALE_S`` means the worker is gone: offline.
- ``P:open``     hash, alert id → JSON of the last message of every open alert, written in the
  same transaction as the stream entry (a restarted worker ends what its predecessor left open).

With ``cluster.enabled`` every message carries ``fence: {owner, token}`` (``pipeline/publish/fencing.py``)
and is written by :func:`add_events_fenced`: one Lua script compares each token with the camera's
token counter (``P:cluster:token:<camera>``, bumped by every lease acquisition) and writes only the
current ones, so a message a cut-off or frozen worker stamped before it fenced itself never reaches
the stream or ``P:open`` once another worker has taken the camera, however late its outbox delivers it.

Nothing else crosses between processes except files under the data directory.

The bus address is a plain URL for one machine (``redis://``, ``rediss://``, ``unix://``), or, for a
Redis primary with replicas watched by Redis Sentinel (docs/ha.md), a Sentinel URL::

    redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db][?sentinel_password=...]

listing the sentinels (not the data nodes); the client asks them for the current primary on every new
connection, so after a failover the next attempt reaches the new one.  :func:`connect` (workers,
archiver, CLI) and :func:`connect_async` (dashboard) are the only places that turn an address into a
client.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from pipeline.publish.status import CameraStatus

SCHEMA_VERSION = "sharpeye.event/1"


def token_key(prefix: str, camera: str) -> str:
    """The name of ``camera``'s fencing-token counter: the delivery here refuses a message stamped with a
    lower token than this counter, and :mod:`pipeline.cluster.leases` bumps the same key."""
    return f"{prefix}:cluster:token:{camera}"

STALE_S = 10.0
if TYPE_CHECKING:
    import redis.asyncio as aioredis

SENTINEL_SCHEME = "redis+sentinel"
# Sentinel mode is for many machines, where the primary can die, freeze or be cut off and Sentinel
# promotes a replica within a few seconds.  A client must then give up on the old primary quickly
# and ask the sentinels again, instead of waiting on a dead socket:
HA_SOCKET_TIMEOUT_S = 3.0  # a frozen or cut-off primary: a command fails after this (longer than any BLOCK we use)
HA_CONNECT_TIMEOUT_S = 1.0  # a host that does not answer SYN (link cut)
SENTINEL_TIMEOUT_S = 0.5  # asking one sentinel; a dead one is skipped for the next in the list
HA_RETRIES = 3  # reconnects per command (each asks the sentinels again), 0.1, 0.2, 0.4 s apart


@dataclass(frozen=True)
class SentinelAddress:
    """A parsed ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return url.strip().lower().startswith(SENTINEL_SCHEME + "://")


def parse_sentinel_url(url: str) -> SentinelAddress:
    """``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``; the password is the data
    nodes' (``requirepass``), ``?sentinel_password=`` the sentinels' when they have their own."""
    url = url.strip()
    if not is_sentinel_url(url):
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
    rest = url[len(SENTINEL_SCHEME) + 3:]
    netloc, _, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        userinfo, hosts = "", netloc
    user, sep, pw = userinfo.partition(":")
    username = unquote(user) if user else None
    password = unquote(pw) if sep and pw else None
    sentinels: list[tuple[str, int]] = []
    for item in hosts.split(","):
        item = item.strip()
        if not item:
            continue
        parts = urlsplit(f"redis://{item}")
        if not parts.hostname:
            raise ValueError(f"sentinel {item!r} has no host")
        sentinels.append((parts.hostname, parts.port or 26379))
    if not sentinels:
        raise ValueError("no sentinel host:port listed")
    segments = [x for x in path.split("/") if x]
    if not segments:
        raise ValueError("no service name: use redis+sentinel://host:port,.../service_name")
    if len(segments) > 2 or (len(segments) == 2 and not segments[1].isdigit()):
        raise ValueError(f"path {path!r}: use /service_name or /service_name/db")
    q = parse_qs(query)
    sentinel_pw = q.get("sentinel_password", [None])[0]
    return SentinelAddress(tuple(sentinels), unquote(segments[0]), int(segments[1]) if len(segments) == 2 else 0,
                           username, password, sentinel_pw)


def _ha_connection_class() -> type:
    """redis-py's sync ``SentinelManagedConnection.read_response`` defaults ``disconnect_on_error`` to False
    (the plain and the asyncio connections to True): after a socket timeout on a frozen or cut-off primary
    the connection went back to the pool still open to it, with the late reply pending, and every later
    command on it timed out again (measured: writes never resumed after a cut).  This one closes it, so
    the next command reconnects and asks the sentinels where the primary is now."""
    from redis.sentinel import SentinelManagedConnection

    class HAConnection(SentinelManagedConnection):
        def read_response(self, *args: Any, **kwargs: Any) -> Any:
            kwargs["disconnect_on_error"] = True
            return super().read_response(*args, **kwargs)

    return HAConnection


def _ha_retry() -> Retry:
    # only connection errors are retried (each reconnect asks the sentinels for the primary); a timeout
    # (frozen primary) is not, so it costs one HA_SOCKET_TIMEOUT_S, not four
    return Retry(ExponentialBackoff(cap=1.0, base=0.1), HA_RETRIES, supported_errors=(redis.ConnectionError,))


def _sentinel_kwargs(addr: SentinelAddress) -> dict[str, Any]:
    kw: dict[str, Any] = {"socket_timeout": SENTINEL_TIMEOUT_S, "socket_connect_timeout": SENTINEL_TIMEOUT_S}
    if addr.sentinel_password:
        kw["password"] = addr.sentinel_password
    return kw


def _node_kwargs(addr: SentinelAddress) -> dict[str, Any]:
    return {"db": addr.db, "username": addr.username, "password": addr.password,
            "socket_timeout": HA_SOCKET_TIMEOUT_S, "socket_connect_timeout": HA_CONNECT_TIMEOUT_S,
            "socket_keepalive": True, "health_check_interval": 5}


class PrefixedKey:
    """A key named under its owner's ``prefix``: ``events = PrefixedKey("events")`` on a keys class with
    ``prefix`` "P" reads "P:events" (one line per key, every key of a family under one prefix)."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, keys: Any, owner: type | None = None) -> str:
        return f"{keys.prefix}:{self.name}"


@dataclass(frozen=True)
class BusKeys:
    prefix: str = "sharpeye"

    events = PrefixedKey("events")
    cameras = PrefixedKey("cameras")
    open_alerts = PrefixedKey("open")

    def prefix_key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def fence_token(self, camera: str) -> str:
        """``camera``'s fencing-token counter (the cluster's lease acquisitions bump it)."""
        return token_key(self.prefix, camera)


def connect(url: str) -> redis.Redis[bytes]:
    """A client with short timeouts so a dead Redis is noticed, not waited on forever.

    A ``redis+sentinel://`` URL gives a client of the current primary (see the module docstring) with
    the shorter HA timeouts; any other URL a plain client, as it always was."""
    if is_sentinel_url(url):
        from redis.sentinel import Sentinel

        addr = parse_sentinel_url(url)
        sentinel = Sentinel(list(addr.sentinels), sentinel_kwargs=_sentinel_kwargs(addr))
        return sentinel.master_for(addr.service, retry=_ha_retry(), connection_class=_ha_connection_class(),
                                   **_node_kwargs(addr))
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)


def connect_async(url: str, timeout_s: float, retry: Any) -> aioredis.Redis:
    """The dashboard's client (redis.asyncio): plain URL as before (its own ``timeout_s`` and ``retry``), a
    Sentinel URL through ``redis.asyncio.sentinel`` with the HA timeouts capped by ``timeout_s``."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry as AsyncRetry

    if not is_sentinel_url(url):
        return aioredis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, retry=retry)
    from redis.asyncio.sentinel import Sentinel as AsyncSentinel

    addr = parse_sentinel_url(url)
    sentinel = AsyncSentinel(list(addr.sentinels), sentinel_kwargs=_sentinel_kwargs(addr))
    kw = _node_kwargs(addr)
    kw["socket_timeout"] = max(timeout_s, kw["socket_timeout"])  # above the dashboard's 1 s blocking reads
    kw["socket_connect_timeout"] = min(timeout_s, kw["socket_connect_timeout"])
    ha_retry = AsyncRetry(ExponentialBackoff(cap=1.0, base=0.1), HA_RETRIES, supported_errors=(redis.ConnectionError,))
    return sentinel.master_for(addr.service, retry=ha_retry, **kw)


def add_event(r: Any, keys: BusKeys, message: dict[str, Any], maxlen: int, index_open: bool = True) -> Any:
    """Queue one message on ``r`` (a client or a pipeline): XADD to the events stream, and keep
    ``P:open`` (alert id → last message of every open alert) in step with it.

    ``index_open=False`` for a message sent again after a newer one of its alert (the outbox after a
    failover): it goes on the stream (consumers de-duplicate) but must not reopen the alert in ``P:open``."""
    body, fields = _fields(message)
    sid = r.xadd(keys.events, fields, maxlen=maxlen, approximate=True)
    op = _open_op(message, index_open)
    if op == "del":
        r.hdel(keys.open_alerts, message["alert_id"])
    elif op == "set":
        r.hset(keys.open_alerts, message["alert_id"], body)
    return sid


def _fields(message: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The JSON body and the stream entry's fields; ``type`` then ``json`` first (:data:`FENCED_ADD` relies on it)."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    fields: dict[str, str] = {"type": message["type"], "json": body}
    if "id" in message:
        fields["id"] = message["id"]
    if "alert_id" in message:
        fields["alert_id"] = message["alert_id"]
    if "camera" in message:
        fields["camera"] = message["camera"]["id"]
    return body, fields


def _open_op(message: dict[str, Any], index_open: bool) -> str:
    """What the message does to ``P:open``: ``set`` (new/update), ``del`` (end) or nothing."""
    if message["type"] != "alert" or not index_open:
        return ""
    return "del" if message.get("phase") == "end" else "set"


def fence_of(message: dict[str, Any]) -> tuple[str, int] | None:
    """(camera, token) of a fenced message (cluster.enabled), None for an unfenced one (one machine)."""
    fence = message.get("fence")
    cam = message.get("camera")
    cam_id = cam.get("id") if isinstance(cam, dict) else None
    if not isinstance(fence, dict) or not isinstance(cam_id, str):
        return None
    try:
        return cam_id, int(fence["token"])
    except (KeyError, TypeError, ValueError):
        return None


# One call writes a batch in order, each fenced message only if its token is not below its camera's
# token counter: the check and the write are one atomic step, so no acquisition can slip in between.
# KEYS: events stream, P:open, then the token counters.  ARGV[1]: MAXLEN; then per message
# ``kidx token op alert_id nfields field value ...`` (kidx 0: unfenced; the second field pair is
# ``json``, the body P:open keeps).  Returns per message the stream id, or the current token (an
# integer) for a refused one.
FENCED_ADD = """
local events, open, maxlen = KEYS[1], KEYS[2], ARGV[1]
local current, out, i, n = {}, {}, 2, 0
while i <= #ARGV do
  local kidx, token, op, aid, nf = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3],
                                   tonumber(ARGV[i + 4])
  local first = i + 5
  i = first + nf
  n = n + 1
  local cur = 0
  if kidx > 0 then
    cur = current[kidx]
    if cur == nil then
      cur = tonumber(redis.call('GET', KEYS[2 + kidx]) or '0') or 0
      current[kidx] = cur
    end
  end
  if kidx > 0 and token < cur then
    out[n] = cur
  else
    out[n] = redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', unpack(ARGV, first, i - 1))
    if op == 'set' then
      redis.call('HSET', open, aid, ARGV[first + 3])
    elseif op == 'del' then
      redis.call('HDEL', open, aid)
    end
  end
end
return out
"""


def add_events_fenced(r: Any, keys: BusKeys, items: list[tuple[dict[str, Any], bool]], maxlen: int) -> Any:
    """Queue on ``r`` (a client or a pipeline) one atomic script that writes ``items`` ((message,
    index_open), in order) like :func:`add_event`, except a fenced message whose token is below its
    camera's current token: that one is refused (not on the stream, not in ``P:open``).  The reply reads
    with :func:`fenced_replies`.  EVAL with the script's text, not EVALSHA: a promoted replica or a
    restarted Redis has no script cache, and a NOSCRIPT inside MULTI would not undo the rest."""
    counters: dict[str, int] = {}
    args: list[Any] = [maxlen]
    for message, index_open in items:
        body, fields = _fields(message)
        fence = fence_of(message)
        kidx, token = 0, 0
        if fence is not None:
            kidx = counters.setdefault(fence[0], len(counters) + 1)
            token = fence[1]
        flat = [x for kv in fields.items() for x in kv]
        args += [kidx, token, _open_op(message, index_open), message.get("alert_id", ""), len(flat), *flat]
    script_keys = [keys.events, keys.open_alerts, *(keys.fence_token(c) for c in counters)]
    return r.eval(FENCED_ADD, len(script_keys), *script_keys, *args)


def fenced_replies(reply: Any) -> list[int | None]:
    """:func:`add_events_fenced`'s reply → per message None (written) or the camera's current token (refused)."""
    return [r if isinstance(r, int) else None for r in reply]


def publish_event(r: redis.Redis[bytes], keys: BusKeys, message: dict[str, Any], maxlen: int) -> str:
    """Append one message to the events stream (at once, atomically with ``P:open``); return its stream id."""
    pipe = r.pipeline(transaction=True)
    add_event(pipe, keys, message, maxlen)
    sid = pipe.execute()[0]
    return sid.decode() if isinstance(sid, bytes) else str(sid)


def open_alerts(r: redis.Redis[bytes], keys: BusKeys) -> dict[str, dict[str, Any]]:
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


def read_events(r: redis.Redis[bytes], keys: BusKeys, last_id: str = "0-0", count: int = 100,
                block_ms: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Messages after ``last_id`` (oldest first); with ``block_ms`` wait for new ones."""
    res = r.xread({keys.events: last_id}, count=count, block=block_ms)
    if not res:
        return []
    return decode_entries(res[0][1])


def latest_events(r: redis.Redis[bytes], keys: BusKeys, count: int) -> list[tuple[str, dict[str, Any]]]:
    """The newest ``count`` messages, oldest first."""
    return list(reversed(decode_entries(r.xrevrange(keys.events, count=count))))


def follow_events(r: redis.Redis[bytes], keys: BusKeys, last_id: str = "$",
                  block_ms: int = 2000) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield messages as they arrive, forever."""
    if last_id == "$":
        newest = r.xrevrange(keys.events, count=1)
        last_id = newest[0][0].decode() if newest else "0-0"
    while True:
        for sid, msg in read_events(r, keys, last_id, count=500, block_ms=block_ms):
            last_id = sid
            yield sid, msg


def set_camera_status(r: redis.Redis[bytes], keys: BusKeys, status: CameraStatus) -> None:
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


def camera_statuses(r: redis.Redis[bytes], keys: BusKeys, now: float | None = None) -> dict[str, CameraStatus]:
    """Every camera's last status; a stale one (worker gone) reads as offline."""
    return parse_statuses(r.hgetall(keys.cameras), now)
