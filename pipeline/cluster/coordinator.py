"""The loop each worker runs to own cameras: heartbeat, renew, take, hand over, and fence itself.

One round every ``cluster.renew_s`` (default 1 s), in ONE round trip to Redis (a pipeline of three
scripts/commands): the heartbeat (which returns the live workers), the renewal of every held lease
(compare-and-extend), and a read of every camera's holder.  Then, from the rendezvous hash over the
live workers (``rendezvous.assign``):

- a free camera whose preferred owner is this worker is acquired at once (a dead worker's cameras move
  within its lease TTL plus one round), from the second round on: the first only announces the worker,
  so workers started together do not all start on the first one.  A camera nobody takes (its preferred owner lacks it in
  its config, or is full) is taken by its second choice after two rounds, its third after four ...;
- a held camera whose preferred owner is another LIVE worker is handed over, sticky: this worker
  stops it, releases the lease (compare-and-delete), and the preferred owner acquires it in its next
  round.  At most ``moves_per_s`` hand-overs a second (a token bucket), so a worker joining or coming
  back does not restart many streams at once;
- self-fencing: a lease renewed by a round SENT at monotonic time ``t`` lives in Redis until at least
  ``t + lease_ttl_s``; this worker keeps the camera only until ``t + lease_ttl_s - safety margin``.
  Past that deadline (Redis unreachable, this process frozen by SIGSTOP, its machine cut off, a round
  that failed) the camera is dropped locally, before the lease can expire and another worker take it.
  :meth:`Coordinator.fence` checks the deadline on every call, so nothing is stamped after it even
  if the loop itself is late (it was frozen too).

The worker learns of changes through two callbacks, run in order on the coordinator's own apply
thread (starting or stopping a camera's pipeline may take a while; renewals never wait for it):
``on_acquire(camera, token)`` and ``on_release(camera, reason)``.  A camera is removed from the
fence before ``on_release`` runs and before its lease is released in Redis, so the old owner is
quiet before the new one can start.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.cluster.leases import Lease, Leases
from pipeline.cluster.membership import Membership, WorkerInfo
from pipeline.cluster.rendezvous import Assignment, assign
from pipeline.config.schema import ClusterConfig

log = logging.getLogger(__name__)


def default_worker_id() -> str:
    """``<hostname>-<pid>``: a restarted worker is a new owner (its predecessor's tokens are not its own)."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class RoundStats:
    """What one round did, for logs, status and the bench."""

    ok: bool = False
    round_trip_s: float = 0.0  # the one pipelined round trip (heartbeat, renewals, holders)
    total_s: float = 0.0  # the whole round, acquisitions included
    renewed: int = 0
    lost: list[str] = field(default_factory=list)
    acquired: list[str] = field(default_factory=list)
    handed_over: list[str] = field(default_factory=list)
    live: int = 0
    error: str = ""


class TokenBucket:
    """At most ``rate`` events a second, bursts of up to ``max(1, rate)``."""

    def __init__(self, rate: float, clock: Callable[[], float]):
        self.rate = rate
        self.size = max(1.0, rate)
        self.level = self.size
        self.clock = clock
        self.t = clock()

    def take(self) -> bool:
        now = self.clock()
        self.level = min(self.size, self.level + (now - self.t) * self.rate)
        self.t = now
        if self.level >= 1.0:
            self.level -= 1.0
            return True
        return False


class Coordinator:
    """Camera ownership of one worker.  ``cameras()`` lists the cameras this worker may run (its config)."""

    def __init__(self, redis: Any, prefix: str, cfg: ClusterConfig, cameras: Callable[[], Sequence[str]],
                 on_acquire: Callable[[str, int], None] | None = None,
                 on_release: Callable[[str, str], None] | None = None,
                 worker_id: str | None = None, clock: Callable[[], float] = time.monotonic):
        self.redis = redis
        self.cfg = cfg
        self.id = worker_id or cfg.worker_id or default_worker_id()
        self.cameras = cameras
        self.on_acquire = on_acquire
        self.on_release = on_release
        self.clock = clock
        self.ttl_s = cfg.lease_ttl_s
        self.keep_s = cfg.lease_ttl_s - cfg.margin_s()  # how long after a renewal's send we may keep a camera
        self.leases = Leases(redis, prefix, self.id, cfg.lease_ttl_s, cfg.history_maxlen)
        self.membership = Membership(redis, prefix, cfg.lease_ttl_s)
        self.info = WorkerInfo(self.id, cfg.capacity, cfg.max_cameras, socket.gethostname(), os.getpid(), time.time())
        self.bucket = TokenBucket(cfg.moves_per_s, clock)
        self._lock = threading.Lock()  # held, deadline: read by fence() on any thread
        self.held: dict[str, int] = {}  # camera → token of the lease this worker holds
        self.deadline: dict[str, float] = {}  # camera → monotonic time past which it is dropped
        self._stale: dict[str, int] = {}  # dropped locally, maybe still ours in Redis: released next round
        self._free_since: dict[str, float] = {}
        self.last: RoundStats = RoundStats()
        self.live: list[WorkerInfo] = []
        self.assignment: Assignment | None = None
        self.rounds = 0
        self.fenced = 0  # cameras dropped by the deadline (not by a failed renewal or a hand-over)
        self._stop = threading.Event()
        self._changes: collections.deque[tuple[str, str, Any]] = collections.deque()
        self._changed = threading.Condition()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ what the worker asks
    def fence(self, camera: str) -> dict[str, Any] | None:
        """The stamp for a message or segment of ``camera`` now (``{"owner", "token"}``), or None when
        this worker must not publish or record it (not held, or past its self-fencing deadline)."""
        with self._lock:
            token = self.held.get(camera)
            if token is None:
                return None
            if self.clock() >= self.deadline.get(camera, 0.0):
                return None
            return {"owner": self.id, "token": token}

    def owned(self) -> dict[str, int]:
        with self._lock:
            return dict(self.held)

    # ------------------------------------------------------------------ one round
    def round(self) -> RoundStats:
        """Heartbeat, renew, read holders (one round trip), then acquire and hand over."""
        st = RoundStats()
        t0 = self.clock()
        self.check_deadlines()
        with self._lock:
            held = dict(self.held)
        cams = sorted(set(self.cameras()))
        try:
            pipe = self.redis.pipeline(transaction=False)
            self.membership.heartbeat(self.info, client=pipe)
            if held:
                keys, args = self.leases.renew_script_args(held)
                self.leases._renew(keys=keys, args=args, client=pipe)
            self.leases.holders(cams, client=pipe)
            sent = self.clock()
            res = pipe.execute()
        except Exception as e:
            st.error = f"{type(e).__name__}: {e}"
            st.total_s = self.clock() - t0
            was_ok, self.last = self.last.ok, st
            if self.rounds == 0 or was_ok:  # once per outage
                log.warning("cluster %s: round failed (cameras are dropped %.1f s after their last renewal): %s",
                            self.id, self.keep_s, st.error)
            self.rounds += 1
            return st
        st.round_trip_s = self.clock() - sent
        live = Membership.parse(res[0])
        renewed = Leases.renewed(held, res[1]) if held else {}
        holders = Leases.parse_holders(cams, res[-1]) if cams else {}
        self.live = live
        st.live = len(live)
        # renewals: extend the deadline from the SEND time; a lease that is no longer ours is dropped
        lost = []
        with self._lock:
            for cam, ok in renewed.items():
                if self.held.get(cam) != held[cam]:
                    continue  # dropped meanwhile (deadline)
                if ok:
                    self.deadline[cam] = sent + self.keep_s
                    st.renewed += 1
                else:
                    self.held.pop(cam, None)
                    self.deadline.pop(cam, None)
                    lost.append(cam)
        for cam in lost:
            log.warning("cluster %s: lease of camera %s was lost (expired and taken, or deleted)", self.id, cam)
            self._emit("release", cam, "lost")
        st.lost = lost
        self._plan(cams, live, holders, st)
        st.ok = True
        st.total_s = self.clock() - t0
        self.last = st
        self.rounds += 1
        return st

    def _plan(self, cams: list[str], live: list[WorkerInfo], holders: dict[str, Lease | None],
              st: RoundStats) -> None:
        members = [w.member() for w in live]
        if self.id not in {m.id for m in members}:  # our own heartbeat is in the same round trip
            members.append(self.info.member())
        a = assign(cams, members)
        self.assignment = a
        now = self.clock()
        with self._lock:
            held = dict(self.held)
        alive = {m.id for m in members}
        # leases that are ours in Redis but not held here (fenced, a predecessor with our id): release
        for cam, lease in holders.items():
            if lease is not None and lease.owner == self.id and cam not in held:
                self._stale[cam] = lease.token
        # hand over: a held camera whose preferred owner is another live worker (sticky, rate-limited)
        give: dict[str, int] = {}
        for cam, token in held.items():
            pref = a.owner.get(cam)
            gone = cam not in a.owner  # no longer in this worker's config
            if gone or (pref is not None and pref != self.id and pref in alive):
                if not gone and not self.bucket.take():
                    continue
                give[cam] = token
        if give:
            with self._lock:
                for cam in give:
                    self.held.pop(cam, None)
                    self.deadline.pop(cam, None)
            for cam in give:
                self._emit("release", cam, "handover" if cam in a.owner else "removed")
            self._stale.update(give)
            st.handed_over = sorted(give)
        if self._stale:
            try:
                self.leases.release(self._stale)
                self._stale.clear()
            except Exception as e:
                log.warning("cluster %s: releasing %d leases failed (they expire): %s", self.id, len(self._stale), e)
        # acquire: free cameras we are preferred for (or, after a while, next in line for).  Not in the first
        # round: workers started together first see each other, instead of the first one taking everything
        if self.rounds == 0:
            return
        room = (self.cfg.max_cameras - len(self.held)) if self.cfg.max_cameras is not None else len(cams)
        want: list[str] = []
        for cam in cams:
            if holders.get(cam) is not None or cam in held:
                self._free_since.pop(cam, None)
                continue
            since = self._free_since.setdefault(cam, now)
            if cam in give:
                continue
            pref = a.owner.get(cam)
            if pref == self.id:
                want.append(cam)
                continue
            rank = a.rank(cam, self.id)
            if rank is not None and rank > 0 and now - since >= rank * 2 * self.cfg.renew_s:
                want.append(cam)  # its preferred owner is not taking it: next in line
        want = want[:max(0, room)]
        if not want:
            return
        sent = self.clock()
        got, _ = self.leases.acquire(want)
        with self._lock:
            for cam, token in got.items():
                self.held[cam] = token
                self.deadline[cam] = sent + self.keep_s
        for cam, token in got.items():
            self._free_since.pop(cam, None)
            log.info("cluster %s: acquired camera %s (token %d)", self.id, cam, token)
            self._emit("acquire", cam, token)
        st.acquired = sorted(got)

    def check_deadlines(self) -> list[str]:
        """Drop every camera past its self-fencing deadline; returns them."""
        now = self.clock()
        with self._lock:
            late = [c for c, d in self.deadline.items() if now >= d]
            for c in late:
                self._stale[c] = self.held.pop(c)
                self.deadline.pop(c, None)
        for c in late:
            self.fenced += 1
            log.warning("cluster %s: camera %s not renewed in %.1f s: stopped before its lease can expire",
                        self.id, c, self.keep_s)
            self._emit("release", c, "fenced")
        return late

    # ------------------------------------------------------------------ callbacks on the apply thread
    def _emit(self, kind: str, camera: str, arg: Any) -> None:
        with self._changed:
            self._changes.append((kind, camera, arg))
            self._changed.notify()

    def _apply_loop(self) -> None:
        while True:
            with self._changed:
                while not self._changes and not self._stop.is_set():
                    self._changed.wait(0.5)
                if not self._changes and self._stop.is_set():
                    return
                kind, cam, arg = self._changes.popleft()
            self._apply(kind, cam, arg)

    def _apply(self, kind: str, cam: str, arg: Any) -> None:
        try:
            if kind == "acquire" and self.on_acquire is not None:
                if self.fence(cam) is not None:  # not dropped again meanwhile
                    self.on_acquire(cam, arg)
            elif kind == "release" and self.on_release is not None:
                self.on_release(cam, arg)
        except Exception:
            log.exception("cluster %s: %s of camera %s failed", self.id, kind, cam)

    def drain(self) -> None:
        """Run pending callbacks on the caller's thread (tests and ``stop``)."""
        while True:
            with self._changed:
                if not self._changes:
                    return
                kind, cam, arg = self._changes.popleft()
            self._apply(kind, cam, arg)

    # ------------------------------------------------------------------ lifecycle
    def _loop(self) -> None:
        period = self.cfg.renew_s
        next_round = self.clock()
        while not self._stop.is_set():
            now = self.clock()
            if now >= next_round:
                try:
                    self.round()
                except Exception:
                    log.exception("cluster %s: round failed", self.id)
                next_round = max(next_round + period, self.clock())  # a late round is not followed by a burst
            self.check_deadlines()
            with self._lock:
                soonest = min(self.deadline.values(), default=next_round)
            self._stop.wait(max(0.0, min(next_round, soonest) - self.clock()))

    def _fence_loop(self) -> None:
        """Drop cameras at their deadlines even while a round hangs on a cut-off Redis (socket timeouts are
        longer than the margin): their pipelines stop, so they record nothing more either."""
        while not self._stop.is_set():
            self.check_deadlines()
            with self._lock:
                soonest = min(self.deadline.values(), default=self.clock() + 0.5)
            self._stop.wait(min(0.5, max(0.01, soonest - self.clock())))

    def start(self) -> None:
        for target, name in ((self._loop, "cluster"), (self._apply_loop, "cluster-apply"),
                             (self._fence_loop, "cluster-fence")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, release: bool = True) -> None:
        """Stop the loop; with ``release`` stop every camera and give up its lease and membership at once."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        for t in self._threads:
            t.join(10)
        with self._lock:
            held = dict(self.held)
            self.held.clear()
            self.deadline.clear()
        for cam in held:
            self._emit("release", cam, "stopping")
        self.drain()
        if release:
            try:
                self.leases.release({**self._stale, **held})
                self.membership.leave(self.id)
            except Exception as e:
                log.warning("cluster %s: leases not released on stop (they expire): %s", self.id, e)
