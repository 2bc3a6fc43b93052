"""Several dashboard processes behind a load balancer, sharing one PostgreSQL and one Redis.

Two real dashboard processes (``python -m dashboard``) on one redis-server and one real PostgreSQL:

- an unacknowledged alert escalates once per level, not once per dashboard: only the process holding the
  escalation lease in Redis checks; killed with SIGKILL, the other takes the checks over within the
  lease's TTL, still once per level;
- the row guard alone (no lease: the bus down, every dashboard checking) escalates each alert once, with
  two checkers racing on PostgreSQL at the same instant;
- a session made on one process works on the other (no sticky sessions needed), and an action done through
  one reaches the live stream (the page) of the other through the actions stream.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select

from dashboard.escalation import TURN_TTL_S, escalate_due
from dashboard.users import add_user
from history import open_database
from history.archiver import store
from history.schema import actions
from pipeline.config import load_config
from pipeline.publish import bus
from pipeline.tools.simulator import free_port
from tests.support.dashboard import (
    alert_msg,
    fresh_pg_database,
    postgres_url,  # noqa: F401  (fixture)
    spawn,
    stop,
    wait_http,
    write_dashboard_config,
)
from tests.support.waits import wait_for

PW = "correct horse battery"
N_RACE = 200
pytestmark = [pytest.mark.e2e, pytest.mark.concurrent]


@pytest.fixture
def db(tmp_path: Path, postgres_url: str) -> Iterator[dict[str, Any]]:  # noqa: F811
    """A config on a fresh PostgreSQL database, migrated, with one operator."""
    prefix = f"multi{time.monotonic_ns()}"
    url = fresh_pg_database(postgres_url, f"mu{time.monotonic_ns() % 10**9}")
    cfg_path = write_dashboard_config(tmp_path, f"bus: {{prefix: {prefix}}}\ndashboard: {{database_url: '{url}', "
                                      "escalation: {acknowledge_s: {low: 600, medium: 600, high: 600, critical: 2}}}")
    cfg = load_config(cfg_path)
    engine = open_database(cfg)
    add_user(engine, "wang", PW, "operator", ["G1"], "Wang Wei")
    try:
        yield {"cfg": cfg, "cfg_path": cfg_path, "engine": engine, "prefix": prefix}
    finally:
        engine.dispose()


@pytest.fixture
def site(tmp_path: Path, redis_url: str, db: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Two dashboard processes on the database and one Redis, as behind a load balancer."""
    cfg_path = db["cfg_path"]
    procs: dict[str, Any] = {}
    try:
        for name in ("a", "b"):
            port = free_port()
            log = tmp_path / f"dashboard-{name}.log"
            procs[name] = {"proc": spawn("dashboard", "--config", str(cfg_path), "--redis", redis_url, "--port",
                                         str(port), log=log), "base": f"http://127.0.0.1:{port}", "log": log}
        for p in procs.values():
            wait_http(p["base"] + "/healthz", 60, p["proc"], p["log"])
        yield {**db, "procs": procs, "redis": bus.connect(redis_url)}
    finally:
        for p in procs.values():
            stop(p["proc"])


def _escalations(engine: Any) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(select(actions.c.alert_id, actions.c.data).where(actions.c.action == "escalate")).all()
    return sorted((a, json.loads(d)["level"]) for a, d in rows)


def _stream_escalations(site: dict[str, Any]) -> list[tuple[str, int]]:
    out = []
    for _sid, f in site["redis"].xrange(f"{site['prefix']}:actions"):
        m = json.loads(f[b"json"])
        if m["action"]["action"] == "escalate":
            out.append((m["alert"]["alert_id"], json.loads(m["action"]["data"])["level"]
                        if isinstance(m["action"]["data"], str) else m["action"]["data"]["level"]))
    return sorted(out)


def _holder_pid(site: dict[str, Any]) -> int | None:
    v = site["redis"].get(f"{site['prefix']}:escalation:lease")
    return int(v.decode().split(":")[1]) if v else None


def test_an_escalation_fires_once_across_two_dashboards_and_moves_when_the_holder_dies(
        site: dict[str, Any]) -> None:
    now = time.time()
    with site["engine"].begin() as conn:
        store(conn, None, alert_msg("e1", camera="lobby", severity="critical", t=now, start=now))
    wait_for(lambda: any(lv >= 2 for _, lv in _escalations(site["engine"])), 20,
             lambda: f"level 2, have {_escalations(site['engine'])}")
    pids = {n: p["proc"].pid for n, p in site["procs"].items()}
    holder = _holder_pid(site)
    assert holder in pids.values(), (holder, pids)
    esc = _escalations(site["engine"])
    assert len(esc) == len(set(esc)), f"an escalation fired twice: {esc}"
    # the lease holder dies without a word: the other takes the checks over within the lease's TTL
    dead = next(n for n, pid in pids.items() if pid == holder)
    other = next(n for n in pids if n != dead)
    site["procs"][dead]["proc"].send_signal(signal.SIGKILL)
    site["procs"][dead]["proc"].wait(10)
    t_kill = time.time()
    top = max(level for _, level in esc)
    # the level due 2 s after the newest one at the latest: escalates within TTL + one check + its period
    # (a check late by more than a period jumps levels: escalation climbs to the level due now)
    wait_for(lambda: max(lv for _, lv in _escalations(site["engine"])) >= top + 2, 2 + TURN_TTL_S + 2 * 2 + 5,
             lambda: f"escalations after {dead} died, have {_escalations(site['engine'])}")
    assert _holder_pid(site) == pids[other]
    esc = _escalations(site["engine"])
    assert len(esc) == len(set(esc)), f"a level escalated twice: {esc}"
    assert _stream_escalations(site) == esc, "the pages were told of an escalation other than once"
    print(f"\nescalation levels {[lv for _, lv in esc]} each once; lease holder killed, the other dashboard "
          f"escalated to level {esc[-1][1]} {time.time() - t_kill:.1f} s later")


def test_the_row_guard_alone_escalates_once_with_two_checkers_racing_on_postgresql(db: dict[str, Any]) -> None:
    site = db
    now = time.time()
    with site["engine"].begin() as conn:  # low severity: the running dashboards escalate these after 600 s
        for i in range(N_RACE):
            store(conn, None, alert_msg(f"race{i}", camera="gate", severity="low", t=now, start=now))
    # two checkers that escalate low alerts after 2 s, at the same instant in two threads, as two dashboards
    # with the bus down would (each checks then)
    cfg = site["cfg"]
    esc_cfg = cfg.dashboard.escalation
    fast = cfg.model_copy(update={"dashboard": cfg.dashboard.model_copy(update={"escalation": esc_cfg.model_copy(
        update={"acknowledge_s": esc_cfg.acknowledge_s.model_copy(update={"low": 2.0})})})})
    at = now + 3.0  # one period past due: level 1 for every alert
    barrier = threading.Barrier(2)
    results: dict[str, int] = {}
    tried: dict[str, int] = {}  # guarded UPDATEs each checker sent: both must have seen the alerts as due

    @event.listens_for(site["engine"], "after_cursor_execute")
    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE ALERTS"):
            name = threading.current_thread().name
            tried[name] = tried.get(name, 0) + 1

    def check() -> None:
        barrier.wait()
        results[threading.current_thread().name] = len(escalate_due(site["engine"], fast, at))

    threads = [threading.Thread(target=check, name=f"checker{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    event.remove(site["engine"], "after_cursor_execute", count)
    race = [e for e in _escalations(site["engine"]) if e[0].startswith("race")]
    assert sum(results.values()) == N_RACE, f"the two checkers escalated {results} times for {N_RACE} alerts"
    assert race == sorted((f"race{i}", 1) for i in range(N_RACE)), "an alert escalated twice or not at all"
    assert len(tried) == 2 and min(tried.values()) > 0, f"the checkers did not overlap: {tried}"
    print(f"\ntwo racing checkers sent {tried} guarded updates and escalated {results} of {N_RACE} alerts: "
          f"each once")


def test_a_session_and_an_action_cross_from_one_dashboard_to_the_others_page(site: dict[str, Any]) -> None:
    a, b = site["procs"]["a"]["base"], site["procs"]["b"]["base"]
    now = time.time()
    with site["engine"].begin() as conn:
        store(conn, None, alert_msg("x1", camera="lobby", severity="high", t=now))
    ca = httpx.Client(base_url=a, timeout=30)  # argon2 log-in on a loaded machine
    r = ca.post("/api/login", json={"username": "wang", "password": PW})
    assert r.status_code == 200
    csrf = r.json()["csrf"]
    cb = httpx.Client(base_url=b, timeout=30, cookies=ca.cookies)  # the load balancer sent the next request to b
    assert cb.get("/api/me").json()["user"]["username"] == "wang"
    events: list[tuple[str, Any]] = []
    ready = threading.Event()
    done = threading.Event()

    def listen() -> None:  # b's live stream, as wang's page on b reads it
        with cb.stream("GET", "/api/stream", timeout=httpx.Timeout(10, read=20)) as resp:
            name = None
            for line in resp.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: ") and name:
                    events.append((name, json.loads(line[6:])))
                    if name == "heartbeat":
                        ready.set()
                    if name == "action" and events[-1][1]["alert"]["alert_id"] == "x1":
                        done.set()
                        return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert ready.wait(15), f"b's stream did not start: {events}"
    t0 = time.monotonic()
    r = ca.post("/api/alerts/x1/actions", json={"action": "acknowledge"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert done.wait(10), f"the action done on a never reached b's page: {[e[0] for e in events]}"
    delay = time.monotonic() - t0
    act = [e[1] for e in events if e[0] == "action"][-1]
    assert act["action"]["action"] == "acknowledge" and act["alert"]["state"] == "acknowledged"
    assert cb.get("/api/alerts/x1").json()["alert"]["state"] == "acknowledged"
    print(f"\nacknowledge on dashboard a reached the page on dashboard b in {delay * 1000:.0f} ms")
    t.join(5)
    ca.close()
    cb.close()
