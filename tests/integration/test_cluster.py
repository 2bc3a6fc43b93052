"""Camera leases and the coordinator on a real redis-server, with in-process workers (no cameras).

The process-level tests (real workers, real RTSP, kill -9, SIGSTOP) are in test_cluster_worker.py.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from pipeline.cluster.coordinator import Coordinator
from pipeline.cluster.leases import Lease, Leases, read_moves
from pipeline.cluster.membership import Membership, WorkerInfo
from pipeline.config.schema import ClusterConfig
from pipeline.publish import bus
from tests.support.waits import wait_for

_prefixes = itertools.count()


@pytest.fixture()
def r(redis_url: str) -> Iterator[redis.Redis[bytes]]:
    client = bus.connect(redis_url)
    yield client
    client.close()


@pytest.fixture()
def prefix() -> str:
    return f"cl{next(_prefixes)}-{time.time_ns()}"


def test_a_lease_is_taken_once_renewed_by_its_owner_only_and_released_by_compare_and_delete(r, prefix) -> None:
    a = Leases(r, prefix, "a", ttl_s=5)
    b = Leases(r, prefix, "b", ttl_s=5)
    got, held = a.acquire(["c1", "c2"])
    assert got == {"c1": 1, "c2": 1} and held == {}
    got_b, held_b = b.acquire(["c1", "c3"])
    assert got_b == {"c3": 1} and held_b == {"c1": Lease("a", 1)}
    assert a.renew({"c1": 1, "c2": 1}) == {"c1": True, "c2": True}
    assert b.renew({"c1": 1}) == {"c1": False}, "another worker renewed a's lease"
    assert a.renew({"c1": 7}) == {"c1": False}, "a stale token renewed a lease"
    assert b.release({"c1": 1}) == {"c1": False}, "another worker deleted a's lease"
    assert a.release({"c1": 1}) == {"c1": True}
    got_b, _ = b.acquire(["c1"])
    assert got_b == {"c1": 2}, "the token did not rise on the second acquisition"
    assert a.holders(["c1", "c2", "c9"]) == {"c1": Lease("b", 2), "c2": Lease("a", 1), "c9": None}
    moves = read_moves(r, prefix)
    assert [(m["camera"], m["from"], m["to"], m["token"], m["reason"]) for m in moves] == [
        ("c1", None, "a", 1, "start"), ("c2", None, "a", 1, "start"), ("c3", None, "b", 1, "start"),
        ("c1", "a", "b", 2, "handover")]


def test_an_expired_lease_is_taken_with_a_higher_token_and_recorded_as_expired(r, prefix) -> None:
    a = Leases(r, prefix, "a", ttl_s=0.3)
    b = Leases(r, prefix, "b", ttl_s=5)
    assert a.acquire(["c1"])[0] == {"c1": 1}
    wait_for(lambda: b.acquire(["c1"])[0] == {"c1": 2}, 5, "the expired lease to be taken")
    assert a.renew({"c1": 1}) == {"c1": False}
    assert read_moves(r, prefix, camera="c1")[-1]["reason"] == "expired"


def test_membership_expires_silent_workers_and_a_leaving_one_at_once(r, prefix) -> None:
    m = Membership(r, prefix, ttl_s=0.5)
    m.heartbeat(WorkerInfo("a", 2.0, 10))
    live = m.heartbeat(WorkerInfo("b"))
    assert {w.id: (w.capacity, w.max_cameras) for w in live} == {"a": (2.0, 10), "b": (1.0, None)}
    m.leave("b")
    assert [w.id for w in m.live()] == ["a"]
    wait_for(lambda: m.live() == [], 5, "a's heartbeat to expire")


# ------------------------------------------------------------------------------------ coordinators


class Sim:
    """In-process workers stepping their coordinators by hand: each keeps the cameras it was told it has."""

    def __init__(self, r: redis.Redis[bytes], prefix: str, cams: list[str], **cfg: float):
        self.r, self.prefix, self.cams = r, prefix, cams
        self.cfg = ClusterConfig(enabled=True, **cfg)
        self.workers: dict[str, Coordinator] = {}
        self.running: dict[str, set[str]] = {}
        self.events: list[tuple[str, str, str, object]] = []

    def add(self, wid: str, capacity: float = 1.0) -> Coordinator:
        running = self.running.setdefault(wid, set())

        def acq(cam: str, token: int) -> None:
            running.add(cam)
            self.events.append(("acquire", wid, cam, token))

        def rel(cam: str, reason: str) -> None:
            running.discard(cam)
            self.events.append(("release", wid, cam, reason))

        cfg = self.cfg.model_copy(update={"capacity": capacity})
        c = Coordinator(self.r, self.prefix, cfg, lambda: self.cams, acq, rel, worker_id=wid)
        self.workers[wid] = c
        return c

    def step(self, rounds: int = 1) -> None:
        for _ in range(rounds):
            for c in list(self.workers.values()):
                c.round()
                c.drain()

    def owners(self) -> dict[str, str]:
        return {cam: wid for wid, cams in self.running.items() for cam in cams}

    def settle(self, timeout: float = 30) -> dict[str, str]:
        """Step until every camera runs on its preferred owner and nothing moved in the last round."""
        quiet = [0]

        def done() -> bool:
            before = len(self.events)
            self.step()
            plans = [c.assignment.owner if c.assignment else None for c in self.workers.values()]
            settled = (len(self.events) == before and all(p == plans[0] for p in plans) and plans[0] is not None
                       and self.owners() == {c: w for c, w in plans[0].items() if w is not None})
            quiet[0] = quiet[0] + 1 if settled else 0
            return quiet[0] >= 2
        wait_for(done, timeout, lambda: f"settling: {len(self.owners())} of {len(self.cams)} cameras owned")
        return self.owners()


def test_a_joining_worker_moves_about_one_nth_of_the_cameras_once_and_a_leaving_one_only_its_own(r, prefix) -> None:
    cams = [f"cam{i:03d}" for i in range(300)]
    sim = Sim(r, prefix, cams, moves_per_s=1000.0)
    for w in ("w1", "w2", "w3"):
        sim.add(w)
    before = sim.settle()
    assert len(before) == 300 and sum(len(s) for s in sim.running.values()) == 300, "a camera runs twice"
    n_moves = len(read_moves(r, prefix, count=10_000))
    assert n_moves == 300, "the first owners were not each recorded once"

    sim.add("w4")
    after = sim.settle()
    changed = {c for c in cams if before[c] != after[c]}
    assert all(after[c] == "w4" for c in changed), "a join moved cameras between old workers"
    share = len(changed) / 300
    print(f"\njoin: {len(changed)} of 300 cameras moved ({share:.1%}, expected about 25%)")
    assert 0.15 <= share <= 0.35
    moves = read_moves(r, prefix, count=10_000)[n_moves:]
    per_cam = collections.Counter(m["camera"] for m in moves)
    assert set(per_cam) == changed and set(per_cam.values()) == {1}, "a camera moved more than once"
    assert {m["reason"] for m in moves} == {"handover"}

    leaver = sim.workers.pop("w2")
    leaver.stop(release=True)
    sim.running.pop("w2")
    final = sim.settle()
    changed2 = {c for c in cams if after[c] != final.get(c)}
    assert changed2 == {c for c in cams if after[c] == "w2"}, "a leave moved cameras that were not the leaver's"
    print(f"leave: {len(changed2)} cameras moved, all the leaver's")


def test_hand_over_is_limited_to_moves_per_s(r, prefix) -> None:
    cams = [f"cam{i:03d}" for i in range(60)]
    sim = Sim(r, prefix, cams, moves_per_s=4.0)
    sim.add("w1")
    sim.settle()
    sim.add("w2")
    t0 = time.monotonic()
    sim.settle(timeout=60)
    took = time.monotonic() - t0
    moved = sum(1 for e in sim.events if e[0] == "release")
    # a bucket of 4 to start with, then 4 a second
    assert moved >= 15 and took >= (moved - 4) / 4.0 * 0.9, (moved, took)
    print(f"\n{moved} hand-overs at moves_per_s 4 took {took:.1f} s")


def test_tokens_only_rise_and_a_frozen_owner_fences_itself_before_another_takes_over(r, prefix) -> None:
    """A stops renewing (as if frozen); it must stop stamping before B can hold the camera, and B's token is higher.

    A checker thread samples both workers' fences all along: never two valid stamps for one camera."""
    cams = [f"cam{i}" for i in range(20)]
    sim = Sim(r, prefix, cams, lease_ttl_s=2.0, renew_s=0.2, safety_margin_s=0.6, moves_per_s=1000.0)
    a, b = sim.add("a"), sim.add("b")
    sim.settle()
    a_cams = sorted(sim.running["a"])
    tokens_before = {c: a.fence(c)["token"] for c in a_cams}  # type: ignore[index]
    both: list[str] = []
    stop = threading.Event()

    def check() -> None:
        while not stop.is_set():
            for c in cams:
                if a.fence(c) is not None and b.fence(c) is not None:
                    both.append(c)
            time.sleep(0.005)

    checker = threading.Thread(target=check)
    checker.start()
    frozen_at = time.monotonic()
    try:
        # only b runs rounds now: a is "frozen" (no round, no renewal)
        def b_has_all() -> bool:
            b.round()
            b.drain()
            return set(b.owned()) == set(cams)
        took = wait_for(b_has_all, 15, lambda: f"b to take a's cameras (b has {len(b.owned())})", interval=0.2)
    finally:
        stop.set()
        checker.join()
    assert not both, f"two valid stamps at once for {sorted(set(both))}"
    assert all(a.fence(c) is None for c in cams), "a still stamps after its deadline"
    assert time.monotonic() - frozen_at >= a.keep_s
    for c in a_cams:
        assert b.owned()[c] > tokens_before[c], "a takeover did not raise the token"
    # a resumes: its first round finds its leases gone; it does not get them back with its old token
    a.round()
    a.drain()
    assert all(a.fence(c) is None or a.fence(c)["token"] > tokens_before[c] for c in a_cams)  # type: ignore[index]
    print(f"\nb took a's {len(a_cams)} cameras {took:.2f} s after a stopped renewing (TTL 2 s)")
    tokens = collections.defaultdict(list)
    for m in read_moves(r, prefix, count=10_000):
        tokens[m["camera"]].append(m["token"])
    assert all(t == sorted(t) and len(set(t)) == len(t) for t in tokens.values()), "a token went down or repeated"


def test_a_round_failing_drops_the_cameras_by_the_deadline_even_without_another_round(r, prefix,
                                                                                   redis_url: str) -> None:
    """Redis unreachable: the fence closes at last-renewal-send + TTL - margin, whatever the loop does."""
    cfg = ClusterConfig(enabled=True, lease_ttl_s=2.0, renew_s=0.3, safety_margin_s=0.5)
    c = Coordinator(r, prefix, cfg, lambda: ["x"], worker_id="solo")
    c.round()  # the first round only announces the worker
    c.round()
    assert c.fence("x") is not None
    sent = time.monotonic()
    closed: list[tuple[float, int]] = []

    def watch() -> None:  # samples the fence while the failing round below hangs in redis-py's retries
        while c.fence("x") is not None and time.monotonic() - sent < 5:
            time.sleep(0.01)
        closed.append((time.monotonic(), r.pttl(c.leases.keys.lease("x"))))

    watcher = threading.Thread(target=watch)
    watcher.start()
    c.redis = redis.Redis(unix_socket_path="/nonexistent.sock", socket_timeout=0.2)
    st = c.round()
    assert not st.ok and st.error
    watcher.join()
    at, pttl = closed[0]
    assert at - sent <= cfg.lease_ttl_s - cfg.margin_s() + 0.3, "the fence stayed open past its deadline"
    assert pttl > 0, "the fence closed only after the lease expired"


# ------------------------------------------------------------------------------------ consumers


def test_fenced_sink_stamps_and_refuses_and_the_filter_drops_lower_tokens() -> None:
    from pipeline.publish.fencing import Fenced, FencedSink, FenceFilter
    from pipeline.publish.publisher import ListSink

    fences = {"a": {"owner": "w1", "token": 3}}
    out = ListSink()
    sink = FencedSink(out, fences.get)
    sink.send({"type": "camera", "camera": {"id": "a"}, "id": "m1"})
    assert out.messages[0]["fence"] == {"owner": "w1", "token": 3}
    with pytest.raises(Fenced):
        sink.send({"type": "camera", "camera": {"id": "b"}, "id": "m2"})
    assert sink.refused == 1 and len(out.messages) == 1
    f = FenceFilter()
    msg = lambda cam, tok: {"camera": {"id": cam}, "fence": {"owner": "x", "token": tok}}  # noqa: E731
    assert [f.accept(m) for m in (msg("a", 3), msg("a", 4), msg("a", 3), msg("a", 4), msg("b", 1),
                                  {"camera": {"id": "a"}})] == [True, True, False, True, True, True]
    assert f.dropped == 1


def test_the_archiver_drops_a_former_owners_late_message(tmp_path, redis_url: str) -> None:
    from sqlalchemy import select

    from history import open_database
    from history.archiver import Archiver
    from history.schema import alerts
    from tests.support.dashboard import alert_msg

    r = bus.connect(redis_url)
    keys = bus.BusKeys(f"fence{time.monotonic_ns()}")
    t0 = time.time()
    new_owner = dict(alert_msg("b1", "new", t0), fence={"owner": "w2", "token": 5})
    late_old = dict(alert_msg("a1", "new", t0 - 1), fence={"owner": "w1", "token": 4})
    for m in (new_owner, late_old):
        bus.publish_event(r, keys, m, 1000)
    engine = open_database(url=f"sqlite:///{tmp_path / 'h.sqlite'}")
    arch = Archiver(engine, r, keys, consumer="t")
    arch.ensure_group()
    arch.step()
    while arch.step(block_ms=10):
        pass
    with engine.connect() as conn:
        assert [row.id for row in conn.execute(select(alerts))] == ["b1"]
    assert arch.fences.dropped == 1
    assert r.xpending(keys.events, "archiver")["pending"] == 0, "the stale message was not acknowledged"
    engine.dispose()


def test_coordination_of_2000_cameras_takes_under_250_ms_a_round(redis_url: str) -> None:
    """The bound a district needs (2,000 cameras, a round under 250 ms), and the Redis CPU it costs
    (pipeline/tools/bench/cluster.py; docs figures)."""
    from pipeline.tools.bench.cluster import measure

    r = bus.connect(redis_url)
    try:
        for n in (500, 2000):
            res = measure(r, n, workers=4, rounds=8)
            print(f"\n{n} cameras over 4 workers: every worker's round {res['all_workers_round_ms']['p50']:.1f} ms "
                  f"(max {res['all_workers_round_ms']['max']:.1f}), Redis CPU {res['redis_cpu_ms_per_period']:.1f} ms "
                  f"a period ({res['redis_cpu_percent']:.2f} % of a core at 1 round/s), worker CPU "
                  f"{res['worker_cpu_ms_per_round']:.1f} ms a round")
            assert sum(res["held_per_worker"]) == n
            assert res["all_workers_round_ms"]["p50"] < 250, res
    finally:
        r.close()
