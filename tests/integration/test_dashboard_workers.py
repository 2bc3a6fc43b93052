"""The command room over several workers, in-process against a real redis-server: two
simulated workers own the cameras through the real ``pipeline.cluster`` coordinator (leases, heartbeats,
the moves stream), the dashboard's API shows who owns what, and a worker that stops renewing loses its
cameras to the other, which the owners, the move history and /metrics show."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dashboard.app import create_app
from dashboard.users import add_user
from history import open_database
from pipeline.cluster.coordinator import Coordinator
from pipeline.config import Config, load_config
from pipeline.publish import bus
from tests.support.dashboard import open_with_users, write_dashboard_config
from tests.support.waits import wait_for

PW = "correct horse battery"
TOKEN = "scrape-token-0123456789"
CAMS = ["gate", "lobby", "square"]
# a short lease so a takeover is quick, with room for a round late by 2 s on a loaded machine (keep 4 s)
TTL_S = 6.0
CLUSTER = f"cluster: {{enabled: true, lease_ttl_s: {TTL_S}, renew_s: 1.0, safety_margin_s: 2.0}}"


def start_worker(cfg: Config, redis_url: str, wid: str, capacity: float = 1.0) -> Coordinator:
    """A worker as far as ownership goes: the real coordinator, on its own threads, no cameras run."""
    r = bus.connect(redis_url)
    ccfg = cfg.cluster.model_copy(update={"capacity": capacity})
    c = Coordinator(r, cfg.bus.prefix, ccfg, lambda: CAMS, worker_id=wid)
    c.start()
    return c


def held_by(workers: list[Coordinator]) -> dict[str, str]:
    return {cam: c.id for c in workers for cam in c.owned()}


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    prefix = f"wk{time.monotonic_ns()}"
    extra = f"bus: {{prefix: {prefix}}}\ndashboard: {{metrics_token: {TOKEN}}}\n" + CLUSTER
    cfg = load_config(write_dashboard_config(tmp_path, extra))
    engine = open_with_users(cfg, "eng engineer * Zhou Gong", "eng1 engineer G1 Sun Li", "op operator * Wang Wei")
    app = create_app(cfg, redis_url, engine)
    workers: list[Coordinator] = []
    try:
        yield {"cfg": cfg, "app": app, "redis": redis_url, "workers": workers}
    finally:
        for w in workers:
            w.stop(release=True)
        engine.dispose()


def login(env: dict[str, Any], name: str) -> TestClient:
    c = TestClient(env["app"], base_url="http://testserver", follow_redirects=False)
    assert c.post("/api/login", json={"username": name, "password": PW}).status_code == 200
    return c


def test_owners_workers_and_a_move_after_a_worker_stops_renewing(env: dict[str, Any]) -> None:
    cfg, ws = env["cfg"], env["workers"]
    # ids and capacities chosen so the hash splits the cameras: wa (capacity 2) gate and square, wb lobby
    w1 = start_worker(cfg, env["redis"], "wa", capacity=2.0)
    w2 = start_worker(cfg, env["redis"], "wb")
    ws += [w1, w2]
    want = {"gate": "wa", "square": "wa", "lobby": "wb"}
    wait_for(lambda: held_by(ws) == want, 15, lambda: f"the cameras owned as hashed, have {held_by(ws)}")
    c = login(env, "eng")

    # workers: both live, capacity as announced, held counts add up to the cameras, heartbeat recent
    data = c.get("/api/workers").json()
    assert data["enabled"] is True and data["ttl_s"] == TTL_S
    got = {w["id"]: w for w in data["workers"]}
    assert set(got) == {"wa", "wb"}
    assert got["wa"]["capacity"] == 2.0 and got["wb"]["capacity"] == 1.0
    owners_now = held_by(ws)
    for wid in ("wa", "wb"):
        w = got[wid]
        assert w["live"] is True and w["host"] and w["pid"]
        assert sorted(w["cameras"]) == sorted(cam for cam, o in owners_now.items() if o == wid)
        assert w["cameras_held"] == len(w["cameras"])
        assert w["load"] == pytest.approx(w["cameras_held"] / w["capacity"], abs=1e-3)
        assert data["now"] - TTL_S <= w["last_heartbeat"] <= data["now"] + 0.1, (w, data["now"])
    # each camera: its owner and token as the coordinators hold them
    cams = {x["id"]: x for x in data["cameras"]}
    tokens = {cam: tok for w in ws for cam, tok in w.owned().items()}
    for cam in CAMS:
        assert cams[cam]["owner"]["worker"] == owners_now[cam] and cams[cam]["owner"]["token"] == tokens[cam]
    # the health page's list carries the owner too
    health = {x["id"]: x for x in c.get("/api/health").json()}
    assert {cam: health[cam]["owner"]["worker"] for cam in CAMS} == owners_now
    assert c.get("/api/cameras/lobby").json()["owner"]["worker"] == owners_now["lobby"]
    first = c.get("/api/workers/moves").json()["moves"]
    assert {m["camera"] for m in first} == set(CAMS) and {m["reason"] for m in first} <= {"start", "handover"}

    # a scrape now: the one after the move counts only the entries added since (the tally of this process)
    before = c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert 'sharpeye_worker_moves_total{direction="in",worker="wa"}' in before

    # wa stops renewing (as if killed: its leases stay in Redis until they expire) -> wb takes its cameras
    lost = sorted(w1.owned())
    assert lost == ["gate", "square"]
    t0 = time.monotonic()
    w1.stop(release=False)
    ws.remove(w1)
    took = wait_for(lambda: all(x["owner"] and x["owner"]["worker"] == "wb"
                                for x in c.get("/api/workers").json()["cameras"]), TTL_S + 15,
                    lambda: f"wb to own every camera, page says {c.get('/api/workers').json()['cameras']}")
    print(f"\nwa's {len(lost)} cameras shown on wb {time.monotonic() - t0:.2f} s after wa stopped (ttl {TTL_S:g} s)")
    data = c.get("/api/workers").json()
    assert [w["id"] for w in data["workers"]] == ["wb"], "a dead worker is still listed as a member"
    assert data["workers"][0]["cameras_held"] == 3
    moves = c.get("/api/workers/moves").json()["moves"]
    newest = {m["camera"]: m for m in reversed(moves)}  # newest first in the answer: last write wins
    for cam in lost:
        m = newest[cam]
        assert (m["from"], m["to"], m["reason"]) == ("wa", "wb", "expired"), m
        assert m["token"] > tokens[cam], "the takeover's token did not rise"
        assert m["time"] >= data["now"] - took - 5
    # one camera's history, newest first, and the limit
    one = c.get(f"/api/workers/moves?camera={lost[0]}").json()["moves"]
    assert one[0]["reason"] == "expired" and one[-1]["reason"] == "start", one
    assert all(m["camera"] == lost[0] for m in one) and [m["token"] for m in one] == sorted(
        (m["token"] for m in one), reverse=True)
    assert len(c.get("/api/workers/moves?limit=1").json()["moves"]) == 1
    assert took >= TTL_S - 2.0 - 1.0, "cameras moved before the lease could expire"

    # /metrics: per-worker cameras held and moves (as the history says), for the scrape token
    text = c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert 'sharpeye_worker_cameras_held{host="' in text
    held_line = [ln for ln in text.splitlines() if ln.startswith("sharpeye_worker_cameras_held") and '"wb"' in ln]
    assert held_line and held_line[0].endswith(" 3.0"), held_line
    history = c.get("/api/workers/moves?limit=1000").json()["moves"]
    outs = sum(1 for m in history if m["from"] == "wa")
    ins = sum(1 for m in history if m["to"] == "wb")
    assert outs >= 2 and ins >= 3
    assert f'sharpeye_worker_moves_total{{direction="out",worker="wa"}} {float(outs)}' in text, text
    assert f'sharpeye_worker_moves_total{{direction="in",worker="wb"}} {float(ins)}' in text, text
    assert f"sharpeye_cluster_moves_total {float(len(history))}" in text, text  # Redis 7: entries-added


def test_scopes_only_engineers_and_only_their_cells(env: dict[str, Any]) -> None:
    ws = env["workers"]
    ws.append(start_worker(env["cfg"], env["redis"], "solo"))
    wait_for(lambda: len(held_by(ws)) == 3, 15, "solo to own every camera")
    op = login(env, "op")
    assert op.get("/api/workers").status_code == 403 and op.get("/workers").status_code == 403
    assert op.get("/api/workers/moves").status_code == 403
    assert "sharpeye_worker_" not in op.get("/metrics").text, "an operator's metrics show the workers"
    e1 = login(env, "eng1")  # G1: lobby, gate; not square (G2)
    data = e1.get("/api/workers").json()
    assert sorted(x["id"] for x in data["cameras"]) == ["gate", "lobby"]
    assert data["workers"][0]["cameras_held"] == 3 and sorted(data["workers"][0]["cameras"]) == ["gate", "lobby"]
    assert {m["camera"] for m in e1.get("/api/workers/moves").json()["moves"]} == {"gate", "lobby"}
    assert e1.get("/api/workers/moves?camera=square").json()["moves"] == []
    assert "sharpeye_worker_" not in e1.get("/metrics").text, "metrics of other cells' workers for a G1 engineer"
    assert e1.get("/workers").status_code == 200


def test_without_a_cluster_the_view_is_empty_and_metrics_unchanged(tmp_path: Path, redis_url: str) -> None:
    cfg = load_config(write_dashboard_config(tmp_path, f"bus: {{prefix: solo{time.monotonic_ns()}}}\n"
                                                       f"dashboard: {{metrics_token: {TOKEN}}}"))
    engine = open_database(cfg)
    add_user(engine, "eng", PW, "engineer", ["*"])
    env = {"app": create_app(cfg, redis_url, engine)}
    c = login(env, "eng")
    data = c.get("/api/workers").json()
    assert data["enabled"] is False and data["workers"] == [] and all(x["owner"] is None for x in data["cameras"])
    assert c.get("/api/workers/moves").json()["moves"] == []
    assert all(x["owner"] is None for x in c.get("/api/health").json())
    assert "sharpeye_worker_" not in c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    engine.dispose()
