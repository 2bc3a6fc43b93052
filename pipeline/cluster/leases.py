"""Camera leases in Redis, with fencing tokens.

Keys (``P`` is ``bus.prefix``):

- ``P:cluster:lease:<camera>``  string ``<owner>|<token>`` with a TTL: who may run the camera now;
- ``P:cluster:token:<camera>``  counter, bumped by every acquisition: the fencing token.  It only
  rises, so a consumer that has seen token 7 of a camera knows a message stamped 6 comes from an
  owner that has lost the camera (paused, cut off) and drops it;
- ``P:cluster:last``            hash, camera → ``<owner>|<token>|held|released``: the last owner,
  so an acquisition knows whether it is a hand-over (released) or a takeover (the lease expired);
- ``P:cluster:moves``           stream (capped), one entry per acquisition: ``camera``, ``from``,
  ``to``, ``token``, ``time`` (Redis clock, ms), ``reason`` (``start``, ``handover``, ``expired``):
  the owner history the dashboard shows.

Every operation takes many cameras in one script call, so a worker renews all of its cameras in one
round trip (2,000 cameras: see ``pipeline/tools/bench/cluster.py``).  Scripts run atomically: the
lease, its token, the last owner and the history entry change together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.publish.bus import PrefixedKey, token_key

ACQUIRE = """
local owner, ttl, maxlen = ARGV[1], ARGV[2], tonumber(ARGV[3])
local n = (#KEYS - 2) / 2
local last, moves = KEYS[#KEYS - 1], KEYS[#KEYS]
local now = redis.call('TIME')
local ms = tostring(now[1] * 1000 + math.floor(now[2] / 1000))
local out = {}
for i = 1, n do
  local lease, counter, cam = KEYS[2 * i - 1], KEYS[2 * i], ARGV[3 + i]
  if redis.call('SET', lease, owner, 'NX', 'PX', ttl) then
    local token = redis.call('INCR', counter)
    redis.call('SET', lease, owner .. '|' .. token, 'PX', ttl)
    local prev = redis.call('HGET', last, cam)
    local from, reason = '', 'start'
    if prev then
      local p_owner, p_token, p_state = string.match(prev, '^(.*)|(%d+)|(%a+)$')
      from = p_owner or ''
      if p_state == 'released' then reason = 'handover' else reason = 'expired' end
    end
    redis.call('HSET', last, cam, owner .. '|' .. token .. '|held')
    redis.call('XADD', moves, 'MAXLEN', '~', maxlen, '*', 'camera', cam, 'from', from, 'to', owner,
               'token', token, 'time', ms, 'reason', reason)
    out[i] = token
  else
    out[i] = redis.call('GET', lease) or ''
  end
end
return out
"""

RENEW = """
local out = {}
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i + 1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""

RELEASE = """
local n = #KEYS - 1
local last = KEYS[#KEYS]
local out = {}
for i = 1, n do
  if redis.call('GET', KEYS[i]) == ARGV[i] then
    redis.call('DEL', KEYS[i])
    redis.call('HSET', last, ARGV[n + i], ARGV[i] .. '|released')
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""


@dataclass(frozen=True)
class Lease:
    """A lease as stored: who holds a camera and under which token."""

    owner: str
    token: int

    @property
    def value(self) -> str:
        return f"{self.owner}|{self.token}"

    @staticmethod
    def parse(raw: bytes | str | None) -> Lease | None:
        if raw is None or raw in (b"", ""):
            return None
        text = raw.decode() if isinstance(raw, bytes) else raw
        owner, _, token = text.rpartition("|")
        try:
            return Lease(owner, int(token))
        except ValueError:
            return None


@dataclass(frozen=True)
class LeaseKeys:
    prefix: str = "sharpeye"

    def lease(self, camera: str) -> str:
        return f"{self.prefix}:cluster:lease:{camera}"

    def token(self, camera: str) -> str:
        return token_key(self.prefix, camera)

    last = PrefixedKey("cluster:last")
    moves = PrefixedKey("cluster:moves")


class Leases:
    """The lease operations of one worker (``owner``) on one Redis; every call is one round trip."""

    def __init__(self, redis: Any, prefix: str, owner: str, ttl_s: float, history_maxlen: int = 10_000):
        if "|" in owner:
            raise ValueError(f"worker id {owner!r} must not contain '|'")
        self.redis = redis
        self.keys = LeaseKeys(prefix)
        self.owner = owner
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.history_maxlen = history_maxlen
        self._acquire = redis.register_script(ACQUIRE)
        self._renew = redis.register_script(RENEW)
        self._release = redis.register_script(RELEASE)

    def acquire(self, cameras: Sequence[str]) -> tuple[dict[str, int], dict[str, Lease | None]]:
        """Take the free ones of ``cameras``: (camera → new token, camera → current holder of the rest)."""
        if not cameras:
            return {}, {}
        keys = [k for c in cameras for k in (self.keys.lease(c), self.keys.token(c))]
        keys += [self.keys.last, self.keys.moves]
        res = self._acquire(keys=keys, args=[self.owner, self.ttl_ms, self.history_maxlen, *cameras])
        got: dict[str, int] = {}
        held: dict[str, Lease | None] = {}
        for cam, r in zip(cameras, res):
            if isinstance(r, int):
                got[cam] = r
            else:
                held[cam] = Lease.parse(r)
        return got, held

    def renew_script_args(self, held: dict[str, int]) -> tuple[list[str], list[Any]]:
        cams = list(held)
        return [self.keys.lease(c) for c in cams], [self.ttl_ms, *(f"{self.owner}|{held[c]}" for c in cams)]

    def renew(self, held: dict[str, int], client: Any = None) -> dict[str, bool]:
        """Extend every lease in ``held`` (camera → token) that is still ours: camera → renewed.

        ``client`` may be a pipeline (the coordinator sends the heartbeat in the same round trip);
        then the result comes from the pipeline's ``execute`` and :meth:`renewed` reads it."""
        if not held:
            return {}
        keys, args = self.renew_script_args(held)
        res = self._renew(keys=keys, args=args, client=client)
        return self.renewed(held, res)

    @staticmethod
    def renewed(held: dict[str, int], res: Any) -> dict[str, bool]:
        return {c: bool(r) for c, r in zip(held, res)} if isinstance(res, list) else {}

    def release(self, held: dict[str, int]) -> dict[str, bool]:
        """Give up the leases in ``held`` that are still ours (compare-and-delete): camera → released."""
        if not held:
            return {}
        cams = list(held)
        keys = [self.keys.lease(c) for c in cams] + [self.keys.last]
        res = self._release(keys=keys, args=[*(f"{self.owner}|{held[c]}" for c in cams), *cams])
        return {c: bool(r) for c, r in zip(cams, res)}

    def holders(self, cameras: Sequence[str], client: Any = None) -> Any:
        """camera → current lease (None when free); with a pipeline ``client``, parse with :meth:`parse_holders`."""
        if not cameras:
            return {}
        r = (client or self.redis).mget([self.keys.lease(c) for c in cameras])
        return r if client is not None else self.parse_holders(cameras, r)

    @staticmethod
    def parse_holders(cameras: Sequence[str], raw: Any) -> dict[str, Lease | None]:
        return {c: Lease.parse(v) for c, v in zip(cameras, raw or [])}


def read_moves(redis: Any, prefix: str, count: int = 1000, camera: str | None = None) -> list[dict[str, Any]]:
    """The newest ``count`` owner moves, oldest first (optionally of one camera): the dashboard's owner history."""
    out = []
    for sid, fields in reversed(redis.xrevrange(LeaseKeys(prefix).moves, count=count)):
        f = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
             for k, v in fields.items()}
        if camera is not None and f.get("camera") != camera:
            continue
        out.append({"id": sid.decode() if isinstance(sid, bytes) else sid, "camera": f.get("camera"),
                    "from": f.get("from") or None, "to": f.get("to"), "token": int(f.get("token", 0)),
                    "time": int(f.get("time", 0)) / 1000.0, "reason": f.get("reason")})
    return out
