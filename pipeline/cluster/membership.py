"""Which workers are alive: each announces itself every round with its capacity; silence for a TTL is death.

Keys (``P`` is ``bus.prefix``):

- ``P:cluster:workers``  sorted set, worker id → expiry (Redis clock, ms): the live set is every id
  whose expiry is in the future; expired ids are removed by the next heartbeat of anyone;
- ``P:cluster:info``     hash, worker id → JSON ``{capacity, max_cameras, host, pid, started}``.

Expiry is computed on the Redis clock (``TIME`` inside the script), so machines with skewed clocks
agree on who is alive.  One heartbeat is one script call that also returns the live set, so a
coordinator round needs no second round trip to learn its peers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pipeline.cluster.rendezvous import Member

HEARTBEAT = """
local zset, info = KEYS[1], KEYS[2]
local id, body, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
if id ~= '' then
  redis.call('ZADD', zset, ms + ttl, id)
  redis.call('HSET', info, id, body)
end
local dead = redis.call('ZRANGEBYSCORE', zset, '-inf', ms)
for _, d in ipairs(dead) do
  redis.call('ZREM', zset, d)
  redis.call('HDEL', info, d)
end
local live = redis.call('ZRANGEBYSCORE', zset, '(' .. ms, '+inf')
local out = {}
for _, l in ipairs(live) do
  out[#out + 1] = l
  out[#out + 1] = redis.call('HGET', info, l) or '{}'
end
return out
"""


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker says about itself in its heartbeat."""

    id: str
    capacity: float = 1.0
    max_cameras: int | None = None
    host: str = ""
    pid: int = 0
    started: float = 0.0

    def member(self) -> Member:
        return Member(self.id, self.capacity, self.max_cameras)

    def to_json(self) -> str:
        return json.dumps({"capacity": self.capacity, "max_cameras": self.max_cameras, "host": self.host,
                           "pid": self.pid, "started": self.started}, separators=(",", ":"))

    @staticmethod
    def from_json(worker_id: str, raw: str) -> WorkerInfo:
        try:
            d = json.loads(raw)
        except ValueError:
            d = {}
        return WorkerInfo(worker_id, float(d.get("capacity") or 1.0), d.get("max_cameras"), str(d.get("host", "")),
                          int(d.get("pid") or 0), float(d.get("started") or 0.0))


class Membership:
    """Heartbeats of one worker, and the live set as of the last one."""

    def __init__(self, redis: Any, prefix: str, ttl_s: float):
        self.redis = redis
        self.zset = f"{prefix}:cluster:workers"
        self.info = f"{prefix}:cluster:info"
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self._beat = redis.register_script(HEARTBEAT)

    def heartbeat(self, me: WorkerInfo | None, client: Any = None) -> Any:
        """Announce ``me`` (None: only read) and return the live workers; with a pipeline ``client``
        the answer comes from ``execute``: read it with :meth:`parse`."""
        res = self._beat(keys=[self.zset, self.info],
                         args=[me.id if me else "", me.to_json() if me else "{}", self.ttl_ms], client=client)
        return res if client is not None else self.parse(res)

    @staticmethod
    def parse(res: Any) -> list[WorkerInfo]:
        items = [x.decode() if isinstance(x, bytes) else str(x) for x in (res or [])]
        return [WorkerInfo.from_json(items[i], items[i + 1]) for i in range(0, len(items) - 1, 2)]

    def live(self) -> list[WorkerInfo]:
        return self.heartbeat(None)

    def leave(self, worker_id: str) -> None:
        """A worker stopping on purpose leaves at once, so its cameras need not wait for its TTL."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrem(self.zset, worker_id)
        pipe.hdel(self.info, worker_id)
        pipe.execute()
