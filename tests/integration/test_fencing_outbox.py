"""Fencing at the source: Redis itself refuses a message stamped under a camera's superseded token.

A worker cut off from Redis fences itself, but what it stamped before that sits in its outbox and
reaches Redis when the link heals.  The outbox's delivery compares each fenced message's token with
the camera's token counter (the key the lease acquisition bumps) in the same Lua script that writes
it, so such a message never reaches the stream or ``P:open``, whatever a consumer remembers.

Real redis-server (unix socket), real leases (``pipeline/cluster/leases.py``); the "link" of the cut-off
worker is a TCP relay in this test that can be frozen (bytes stop moving, sockets stay open) and resumed.
"""

from __future__ import annotations

import select
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pipeline.cluster.leases import Leases, token_key
from pipeline.publish import bus
from pipeline.publish.events import orphan_end_message
from pipeline.publish.fencing import FencedSink
from pipeline.publish.outbox import Outbox
from tests.support.waits import wait_for


def _keys() -> bus.BusKeys:
    return bus.BusKeys(f"fo-{uuid.uuid4().hex[:8]}")


def _msg(i: int, phase: str = "update", alert: str = "a1", cam: str = "c1", token: int | None = None,
         kind: str = "alert") -> dict[str, Any]:
    m: dict[str, Any] = {"schema": "sharpeye.event/1", "type": kind, "id": f"m{i:05d}-{uuid.uuid4().hex[:6]}",
                         "phase": phase, "time": time.time(), "camera": {"id": cam, "name": cam.upper()}}
    if kind == "alert":
        m["alert_id"] = alert
    if token is not None:
        m["fence"] = {"owner": "w", "token": token}
    return m


def _stream(r: Any, keys: bus.BusKeys) -> list[dict[str, Any]]:
    return [m for _, m in bus.decode_entries(r.xrange(keys.events))]


def _evals(r: Any) -> int:
    """How many EVAL calls this Redis has served (INFO commandstats)."""
    return int(r.info("commandstats").get("cmdstat_eval", {}).get("calls", 0))


def test_the_token_key_is_the_one_the_leases_bump(redis_url: str) -> None:
    keys = _keys()
    r = bus.connect(redis_url)
    got, _ = Leases(r, keys.prefix, "w1", ttl_s=5).acquire(["c1"])
    assert keys.fence_token("c1") == token_key(keys.prefix, "c1")
    assert int(r.get(keys.fence_token("c1"))) == got["c1"] == 1


def test_a_message_under_a_superseded_token_reaches_neither_the_stream_nor_p_open(redis_url: str) -> None:
    """Token N after the counter moved to N+1: refused, in the middle of a batch that keeps its order."""
    keys = _keys()
    r = bus.connect(redis_url)
    r.set(keys.fence_token("c1"), 8)
    items = [
        (_msg(0, "new", "old-a", token=7), True),  # stale: the counter is 8
        (_msg(1, "new", "cur-a", token=8), True),  # current
        (_msg(2, "update", "cur-a", token=8), True),
        (_msg(3, "new", "other", cam="c2", token=3), True),  # c2 has no counter yet (0): passes
        (_msg(4, "new", "plain", cam="c3"), True),  # unfenced: passes
        (_msg(5, "end", "cur-a", token=7), True),  # a stale end must not close the current owner's alert
        (_msg(6, kind="camera", phase="offline", token=7), True),
        (_msg(7, "update", "cur-a", token=9), True),  # above the counter (cannot happen, but is not stale)
    ]
    pipe = r.pipeline(transaction=True)
    bus.add_events_fenced(pipe, keys, items, maxlen=1000)
    replies = bus.fenced_replies(pipe.execute()[0])
    assert replies == [8, None, None, None, None, 8, 8, None]
    assert [m["id"] for m in _stream(r, keys)] == [items[i][0]["id"] for i in (1, 2, 3, 4, 7)]
    assert set(bus.open_alerts(r, keys)) == {"cur-a", "other", "plain"}
    assert bus.open_alerts(r, keys)["cur-a"]["id"] == items[7][0]["id"]  # P:open holds the JSON body
    # the stream entries are the same as add_event's (consumers read type, id, alert_id, camera, json)
    sid, fields = r.xrange(keys.events, count=1)[0]
    assert {k.decode() for k in fields} == {"type", "json", "id", "alert_id", "camera"}


def test_the_outbox_drops_stale_rows_as_fenced_and_delivers_current_ones(tmp_path: Path, redis_url: str) -> None:
    """Through the outbox, with real leases: w1's token-1 rows delivered after w2 acquired (token 2) are
    dropped from the outbox (not retried), counted, and never on the stream; w2's are delivered."""
    keys = _keys()
    r = bus.connect(redis_url)
    w1 = Leases(r, keys.prefix, "w1", ttl_s=0.3)
    t1 = w1.acquire(["c1"])[0]["c1"]
    ob = Outbox(tmp_path / "o.db", r, keys, maxlen=1000)  # not started: the rows wait, as behind a cut link
    sink = FencedSink(ob, lambda cam: {"owner": "w1", "token": t1})
    stale = [_msg(0, "new"), _msg(1, "update"), _msg(2, "end"), _msg(3, "new", "a2")]
    for m in stale:
        sink.send(m)
    time.sleep(0.4)  # w1's lease expires
    t2 = Leases(r, keys.prefix, "w2", ttl_s=5).acquire(["c1"])[0]["c1"]
    assert t2 == t1 + 1
    current = _msg(4, "new", "a3")
    FencedSink(ob, lambda cam: {"owner": "w2", "token": t2}).send(current)  # (one outbox file here: order)
    ob.start()
    try:
        assert ob.flush(5)
        assert ob.stats.fenced == 4 and ob.stats.delivered == 1
        assert [(m["id"], m["fence"]) for m in _stream(r, keys)] == [(current["id"], {"owner": "w2", "token": t2})]
        assert set(bus.open_alerts(r, keys)) == {"a3"}
        time.sleep(0.3)  # more rounds: nothing is retried
        assert len(_stream(r, keys)) == 1 and ob.stats.fenced == 4
        assert ob.unconfirmed() == 1  # w2's new, kept CONFIRM_S; the refused alarm rows are gone from the file
    finally:
        ob.stop()
    # and across a restart of the worker: rows left on disk under a superseded token are refused too
    ob = Outbox(tmp_path / "o2.db", r, keys, maxlen=1000)
    FencedSink(ob, lambda cam: {"owner": "w1", "token": t1}).send(_msg(5, "new", "a4"))
    ob.stop(0)
    ob = Outbox(tmp_path / "o2.db", r, keys, maxlen=1000)
    assert ob.depth() == 1
    ob.start()
    try:
        assert ob.flush(5)
        assert ob.stats.fenced == 1 and len(_stream(r, keys)) == 1 and "a4" not in bus.open_alerts(r, keys)
    finally:
        ob.stop()


def test_without_fences_the_outbox_sends_plain_commands_as_before(tmp_path: Path, redis_url: str) -> None:
    """cluster.enabled false: no message has a fence, no script runs (the path and its cost of before)."""
    keys = _keys()
    r = bus.connect(redis_url)
    ob = Outbox(tmp_path / "o.db", r, keys, maxlen=1000)
    ob.start()
    try:
        before = _evals(r)
        ob.send(_msg(0, "new"))
        for i in range(1, 50):
            ob.send(_msg(i, "update"))
        ob.send(_msg(50, "end"))
        ob.send(_msg(51, kind="camera", phase="offline"))
        assert ob.flush(5)
        assert _evals(r) == before, "an unfenced batch went through the script"
        assert len(_stream(r, keys)) == 52 and bus.open_alerts(r, keys) == {}
        assert ob.stats.fenced == 0 and ob.stats.delivered == 52
        ob.send(_msg(52, "new", "a2", token=1))  # the same outbox with a fenced message: the script
        assert ob.flush(5)
        assert _evals(r) > before
        assert set(bus.open_alerts(r, keys)) == {"a2"}
    finally:
        ob.stop()


# --------------------------------------------------------------------------- a link cut


class FreezableLink:
    """A TCP relay to a unix-socket Redis: ``freeze`` stops moving bytes both ways (sockets stay open, like
    a cut link that drops packets), ``resume`` moves them again, bytes queued meanwhile included."""

    def __init__(self, upstream_path: str):
        self.upstream_path = upstream_path
        self.frozen = threading.Event()
        self.closed = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.socks: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        self.server.settimeout(0.1)
        while not self.closed.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            up.connect(self.upstream_path)
            self.socks += [client, up]
            t = threading.Thread(target=self._pump, args=(client, up), daemon=True)
            t.start()
            self.threads.append(t)

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        try:
            while not self.closed.is_set():
                if self.frozen.is_set():
                    time.sleep(0.02)
                    continue
                ready, _, _ = select.select([a, b], [], [], 0.05)
                if self.frozen.is_set():  # frozen while waiting: what arrived stays queued
                    continue
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    peer[s].sendall(data)
        except OSError:
            return
        finally:
            for s in (a, b):
                s.close()

    def close(self) -> None:
        self.closed.set()
        self.server.close()
        for t in self.threads:
            t.join(2)


def test_an_outbox_cut_off_from_redis_delivers_nothing_stale_after_another_owner_took_the_camera(
        tmp_path: Path, redis_url: str) -> None:
    """w1 publishes under token 1, its link freezes, it stamps more (before it would fence itself), w2
    takes the camera (token 2) and ends w1's open alert; the link heals and w1's outbox drains: none of
    what w1 stamped after the cut is on the stream, its late ``new`` opens nothing in ``P:open``."""
    keys = _keys()
    direct = bus.connect(redis_url)
    kw = direct.connection_pool.connection_kwargs
    link = FreezableLink(kw["path"])
    via_link = redis.Redis(host="127.0.0.1", port=link.port, password=kw.get("password"), db=kw.get("db", 0),
                           socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    w1 = Leases(direct, keys.prefix, "w1", ttl_s=1.0)
    t1 = w1.acquire(["c1"])[0]["c1"]
    ob1 = Outbox(tmp_path / "w1.db", via_link, keys, maxlen=10_000)
    sink1 = FencedSink(ob1, lambda cam: {"owner": "w1", "token": t1})
    ob2 = Outbox(tmp_path / "w2.db", direct, keys, maxlen=10_000)
    ob1.start()
    ob2.start()
    try:
        before = [_msg(0, "new", "a1"), _msg(1, "update", "a1")]
        for m in before:
            sink1.send(m)
        assert ob1.flush(5)
        link.frozen.set()
        cut_at = time.monotonic()
        late = [_msg(2, "update", "a1"), _msg(3, "new", "a2"), _msg(4, "update", "a2"),
                _msg(5, kind="camera", phase="offline")]
        late += [_msg(6 + i, "update", "a2") for i in range(200)]  # more than one delivery batch
        for m in late:
            sink1.send(m)
        wait_for(lambda: ob1.stats.delivery_errors > 0, 10, "w1's delivery to fail on the frozen link")
        assert ob1.depth() == len(late)
        # w1's lease runs out; w2 takes the camera and, as the worker does, ends what the old owner left open
        wait_for(lambda: Leases(direct, keys.prefix, "w2", ttl_s=30).acquire(["c1"])[0].get("c1"), 5,
                 "w2 to acquire c1", interval=0.05)
        t2 = int(direct.get(keys.fence_token("c1")))
        assert t2 == t1 + 1
        sink2 = FencedSink(ob2, lambda cam: {"owner": "w2", "token": t2})
        for last in bus.open_alerts(direct, keys).values():
            sink2.send(orphan_end_message(last, "camera moved"))
        sink2.send(_msg(1000, "new", "b1"))
        assert ob2.flush(5)
        assert set(bus.open_alerts(direct, keys)) == {"b1"}
        link.frozen.clear()  # the link heals
        healed_at = time.monotonic()
        assert ob1.flush(20), f"w1's outbox did not drain: {ob1.stats}"
        drained_s = time.monotonic() - healed_at
        time.sleep(0.5)  # a resend or a late batch would show by now
        assert ob1.depth() == 0
    finally:
        ob1.stop(0)
        ob2.stop(0)
        link.close()
    stream = _stream(direct, keys)
    late_ids = {m["id"] for m in late}
    on_bus = [m for m in stream if m["id"] in late_ids]
    assert not on_bus, f"{len(on_bus)} stale messages reached the stream: {[m['id'] for m in on_bus[:5]]}"
    assert [m["id"] for m in stream if m["fence"]["owner"] == "w1"] == [m["id"] for m in before]
    assert [(m["alert_id"], m["phase"]) for m in stream if m["fence"]["owner"] == "w2"] == [("a1", "end"),
                                                                                          ("b1", "new")]
    assert set(bus.open_alerts(direct, keys)) == {"b1"}, "a late message reopened or opened an alert"
    assert ob1.stats.fenced == len(late)
    print(f"\nlink cut: {len(late)} messages stamped under token {t1} after the cut "
          f"(frozen {healed_at - cut_at:.1f} s, w2 took token {t2}): all {ob1.stats.fenced} refused by Redis and "
          f"dropped from w1's outbox in {drained_s:.2f} s, none on the stream or in P:open; "
          f"{ob1.stats.delivery_errors} delivery attempts failed during the cut")


def test_publish_throughput_fenced_and_unfenced(tmp_path: Path, redis_url: str) -> None:
    """The cost of the check: messages per second through the outbox, plain and fenced (printed)."""
    n = 5000
    rates = {}
    for label, token in (("unfenced", None), ("fenced", 1)):
        keys = _keys()
        r = bus.connect(redis_url)
        ob = Outbox(tmp_path / f"{label}.db", r, keys, maxlen=100_000)
        msgs = [_msg(i, "new" if i % 10 == 0 else "update", f"a{i // 10}", cam=f"c{i % 8}", token=token)
                for i in range(n)]
        for m in msgs:  # on disk first, so the figure is Redis delivery alone
            ob.send(m)
        t0 = time.perf_counter()
        ob.start()
        try:
            assert ob.flush(60)
            rates[label] = n / (time.perf_counter() - t0)
            assert r.xlen(keys.events) == n and ob.stats.fenced == 0
        finally:
            ob.stop()
    print(f"\noutbox delivery of {n} messages (8 cameras): unfenced {rates['unfenced']:,.0f} msg/s, "
          f"fenced (checked in Redis) {rates['fenced']:,.0f} msg/s")


# --------------------------------------------------------------------------- with Sentinel and WAIT


def test_fenced_delivery_with_wait_and_a_failover(tmp_path: Path) -> None:
    """Primary + replica + 3 sentinels (loopback): fenced alarms are confirmed on the replica by WAIT as
    before (the script's writes replicate), and after the primary is killed the promoted replica, which
    has the token counter by replication, refuses a stale message the old owner's outbox sends it."""
    from tests.support.redis_lab import RedisLab

    lab = RedisLab(tmp_path / "lab", replicas=1, min_replicas_to_write=0)
    lab.start()
    keys = _keys()
    r = bus.connect(lab.url)
    ob = Outbox(tmp_path / "w1.db", r, keys, maxlen=10_000, wait_replicas=1, wait_timeout_ms=500)
    try:
        t1 = Leases(r, keys.prefix, "w1", ttl_s=0.3).acquire(["c1"])[0]["c1"]
        sink = FencedSink(ob, lambda cam: {"owner": "w1", "token": t1})
        ob.start()
        first = [_msg(0, "new"), _msg(1, kind="camera", phase="offline")]
        for m in first:
            sink.send(m)
        wait_for(lambda: ob.stats.replica_confirmed >= 2, 10, lambda: f"WAIT to confirm the fenced alarms {ob.stats}")
        assert ob.unconfirmed() == 0
        replica = lab.nodes[1]
        assert {m["id"] for m in _stream(replica.client(), keys)} == {m["id"] for m in first}
        time.sleep(0.4)
        t2 = Leases(r, keys.prefix, "w2", ttl_s=30).acquire(["c1"])[0]["c1"]
        wait_for(lambda: replica.client().get(keys.fence_token("c1")) == str(t2).encode(), 5,
                 "the token counter replicated")
        lab.kill(lab.primary())
        t_kill = time.monotonic()
        wait_for(lambda: lab.role(replica) == "master", 30, "the replica promoted")
        stale = _msg(2, "new", "a2")
        sink.send(stale)  # w1 stamped it before it fenced itself; its outbox reaches the new primary
        wait_for(lambda: ob.stats.fenced == 1, 20, lambda: f"the new primary to refuse the stale message {ob.stats}")
        took = time.monotonic() - t_kill
        assert stale["id"] not in {m["id"] for m in _stream(replica.client(), keys)}
        assert "a2" not in bus.open_alerts(replica.client(), keys)
        print(f"\nSentinel: fenced alarms confirmed on the replica ({ob.stats.replica_confirmed}); after the primary's "
              f"kill the promoted replica refused the stale message {took:.1f} s after the kill")
    finally:
        ob.stop(0)
        lab.close()
