"""Live video across machines: the dashboard reaches each camera's owner through Redis, signed.

- The seam's signed requests (``pipeline/live/protocol.py``, ``server.py``) on a real loopback
  server: a request signed with the site key for this worker is served once; a replay, another
  key, another worker's or another op's signature, an expired one, and a signed request to a worker
  without the key (one machine) are refused with ``bad_token``; the local token still works.
- End to end on real processes (real redis-server, real RTSP from scripts/camsim.py): two workers
  (``wa``, ``wb``) with cluster.enabled, each in its own data directory (as on its own machine), and
  the dashboard (``python -m dashboard``) in a third data directory that has no endpoint file of
  any worker.  Each camera's live stream arrives through the dashboard's WebSocket from the worker
  owning it (the worker named in the accept); a request signed with another key is refused; the
  ``finish`` op of an open alert's clip reaches the owner the same way; after the owner of a camera
  is killed (``kill -9``), the camera plays again through the dashboard from its new owner.
  Figures printed (``-s``): time to the first fragment, and from the kill to the first fragment
  from the new owner.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.cluster.leases import Lease, LeaseKeys
from pipeline.cluster.rendezvous import Member, assign
from pipeline.live import protocol
from pipeline.live.server import LiveService
from pipeline.tools.simulator import RtspSimulator, free_port
from tests.support.assets import require_camsim
from tests.support.config import config_text, new_site_key, write_private
from tests.support.dashboard import stop_all
from tests.support.waits import wait_for

PW = "correct horse battery"
TTL_S = 5.0


def _ask(ep: protocol.Endpoint, line: bytes) -> tuple[bytes, dict[str, Any]]:
    with socket.create_connection((ep.host, ep.port), timeout=5) as s:
        s.sendall(line)
        kind, payload = protocol.read_message(s)
    return kind, json.loads(payload)


def _signed_line(key: bytes, worker: str, op: str, camera: str = "", now: float | None = None,
                 **req: Any) -> bytes:
    auth = protocol.sign_request(key, worker, op, camera, now)
    return json.dumps({"auth": auth, "op": op, **({"camera": camera} if camera else {}), **req}).encode() + b"\n"


def test_signed_requests_are_taken_once_for_this_worker_and_refused_otherwise(tmp_path: Path) -> None:
    key = os.urandom(32)
    svc = LiveService(tmp_path / "a", 0, key=key, worker_id="wa")
    svc.start()
    try:
        assert svc.address is not None
        ep = protocol.Endpoint(svc.address[0], svc.address[1], "", 0, 0, key=key, worker="wa")
        line = protocol.request_line(ep, op="stats")
        kind, body = _ask(ep, line)
        assert kind == protocol.STATS and body["cameras"] == {}
        assert _ask(ep, line) == (protocol.ERROR, {"code": "bad_token", "detail": ""})  # replayed
        refused = [
            _signed_line(os.urandom(32), "wa", "stats"),  # another site's key
            _signed_line(key, "wb", "stats"),  # made for another worker
            _signed_line(key, "wa", "stats", now=time.time() - protocol.AUTH_TTL_S - 5),  # expired
            _signed_line(key, "wa", "stats", now=time.time() + 3600),  # too far ahead
            # signed for a stream of one camera, sent as a finish of it
            json.dumps({"auth": protocol.sign_request(key, "wa", "stream", "c1"), "op": "finish",
                        "camera": "c1"}).encode() + b"\n",
            json.dumps({"auth": {"exp": "x"}, "op": "stats"}).encode() + b"\n",
            json.dumps({"token": "guess", "op": "stats"}).encode() + b"\n",
        ]
        for bad in refused:
            assert _ask(ep, bad)[0] == protocol.ERROR and _ask(ep, bad)[1]["code"] == "bad_token", bad
        # the local file's token still opens it (a dashboard of the same machine)
        (local,) = protocol.endpoints(tmp_path / "a")
        assert local.host == "127.0.0.1" and _ask(local, protocol.request_line(local, op="stats"))[0] == protocol.STATS
    finally:
        svc.stop()
    one = LiveService(tmp_path / "b", 0)  # one machine, no site key: a signed request is no way in
    one.start()
    try:
        assert one.address is not None
        ep = protocol.Endpoint(one.address[0], one.address[1], "", 0, 0, key=key, worker="")
        assert _ask(ep, protocol.request_line(ep, op="stats"))[1]["code"] == "bad_token"
    finally:
        one.stop()


# ------------------------------------------------------------------------------------------ end to end


def _camera_preferring(worker: str, others: list[str], taken: set[str]) -> str:
    members = [Member(w) for w in [worker, *others]]
    for i in range(1000):
        cam = f"lv{i}"
        if cam not in taken and assign([cam], members).owner[cam] == worker:
            return cam
    raise AssertionError("no camera id found")


class Site:
    """Two workers and a dashboard, each with its own data directory, one bus prefix and one site key."""

    def __init__(self, tmp: Path, redis_url: str, sim: RtspSimulator, cams: list[str]):
        self.tmp = tmp
        self.redis_url = redis_url
        self.prefix = f"lc{time.monotonic_ns()}"
        self.sim = sim
        self.cams = cams
        self.url_file = write_private(tmp / "redis.url", redis_url)
        self.key_file = new_site_key(tmp / "site.key")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        import redis

        self.r = redis.Redis.from_url(redis_url)

    def config(self, name: str, **cluster: Any) -> Path:
        host = self.tmp / name
        host.mkdir(exist_ok=True)
        cfg = host / "streams.yaml"
        cams = {c: {"source": self.sim.url(c), "detect_fps": 1, "timeout_s": 5} for c in self.cams}
        cfg.write_text(config_text(cams, data_dir=str(host / "data"), bus={"prefix": self.prefix},
                                   model={"threads": 1}, recordings={"segment_s": 2.0, "pre_event_s": 0},
                                   cluster={"enabled": True, "lease_ttl_s": TTL_S, "renew_s": 0.5,
                                            "moves_per_s": 2.0, "segment_key_file": str(self.key_file),
                                            **cluster}))
        return cfg

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "wb")
        p = subprocess.Popen([sys.executable, "-m", *argv], stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True, cwd=Path(__file__).resolve().parents[2])
        self.procs[name] = p
        return p

    def worker(self, name: str, *extra: str, **cluster: Any) -> None:
        self.spawn(name, ["pipeline.runtime.worker", "--config", str(self.config(name, **cluster)),
                          "--redis-url-file", str(self.url_file), "--worker-id", name, *extra])

    def dashboard(self) -> str:
        from dashboard.users import add_user
        from history.db import open_database
        from pipeline.config import load_config

        cfg = self.config("dash")
        engine = open_database(load_config(cfg))
        add_user(engine, "chen", PW, "admin", ["*"], "Chief Chen")
        engine.dispose()
        port = free_port()
        p = self.spawn("dash", ["dashboard", "--config", str(cfg), "--redis", self.redis_url, "--port", str(port)])
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if p.poll() is not None:
                raise AssertionError(f"dashboard exited: {self.log('dash')}")
            try:
                return httpx.get(base + "/healthz", timeout=2).status_code < 500
            except httpx.HTTPError:
                return False
        wait_for(up, 60, lambda: self.log("dash"))
        return base

    def owner(self, cam: str) -> str | None:
        lease = Lease.parse(self.r.get(LeaseKeys(self.prefix).lease(cam)))
        return lease.owner if lease else None

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        stop_all(self.procs.values())
        self.r.close()


@pytest.fixture()
def site(tmp_path: Path, redis_url: str, person_clip: Path) -> Iterator[Site]:
    require_camsim()
    a = _camera_preferring("wa", ["wb"], set())
    b = _camera_preferring("wb", ["wa"], {a})
    with RtspSimulator({a: person_clip, b: person_clip}) as sim:
        s = Site(tmp_path, redis_url, sim, [a, b])
        try:
            yield s
        finally:
            s.stop()


def _login(base: str) -> str:
    with httpx.Client(base_url=base, timeout=60) as c:  # argon2 on a loaded machine
        r = c.post("/api/login", json={"username": "chen", "password": PW})
        assert r.status_code == 200, r.text
        return "; ".join(f"{k}={v}" for k, v in c.cookies.items())


def _watch(base: str, cookie: str, cam: str, timeout: float = 10.0) -> tuple[dict[str, Any], float]:
    """Open a tile's WebSocket: (the worker's accept, seconds to the first fragment); raises on an error."""
    import websockets.sync.client as wsc

    t0 = time.monotonic()
    with wsc.connect(f"{base.replace('http', 'ws')}/api/live/{cam}", additional_headers={"Cookie": cookie},
                     open_timeout=10) as ws:
        accepted: dict[str, Any] = {}
        kinds: list[str] = []
        while time.monotonic() - t0 < timeout:
            m = ws.recv(timeout=timeout)
            if isinstance(m, str):
                msg = json.loads(m)
                if msg["type"] == "error":
                    raise RuntimeError(f"camera {cam}: {msg}")
                if msg["type"] == "accepted":
                    accepted = msg
                kinds.append(msg["type"])
            else:
                kinds.append(chr(m[0]))
                if m[:1] == b"F":
                    assert kinds[:3] == ["accepted", "hello", "I"], kinds
                    return accepted, time.monotonic() - t0
    raise TimeoutError(f"camera {cam}: no fragment in {timeout} s ({kinds})")


def test_live_video_of_each_camera_comes_from_its_owner_through_the_dashboard_and_moves_with_it(
        site: Site) -> None:
    a, b = site.cams
    # wa listens on every interface and says which address to dial (as a host of a site would)
    site.worker("wa", "--advertise-host", "127.0.0.1", live_listen="0.0.0.0:0")
    site.worker("wb")
    site.spawn("archiver", ["history.archiver", "--config", str(site.config("dash")), "--redis-url-file",
                            str(site.url_file)])  # the catalogue of the dashboard host
    wait_for(lambda: site.owner(a) == "wa" and site.owner(b) == "wb", 90,
             lambda: f"owners {site.owner(a)}, {site.owner(b)}: {site.log('wa')} {site.log('wb')}")
    base = site.dashboard()
    dash_data = site.tmp / "dash" / "data"
    assert not protocol.endpoints(dash_data), "the dashboard's own data directory holds no worker's seam"
    announced = {k.decode(): json.loads(v) for k, v in site.r.hgetall(protocol.cluster_key(site.prefix)).items()}
    assert set(announced) == {"wa", "wb"} and all(v["host"] == "127.0.0.1" for v in announced.values()), announced
    cookie = _login(base)

    firsts, colds = {}, {}
    for cam, owner in ((a, "wa"), (b, "wb")):
        deadline = time.monotonic() + 30  # the camera may still be connecting (first keyframe)
        while True:
            try:
                accepted, colds[cam] = _watch(base, cookie, cam)  # nobody watched: the tap starts muxing
                break
            except (RuntimeError, TimeoutError) as e:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{e}: {site.log(owner)}") from None
                time.sleep(0.5)
        assert accepted["worker"] == owner and accepted["camera"] == cam, accepted
        accepted, first = _watch(base, cookie, cam)  # again, while the tap lingers
        assert accepted["worker"] == owner and first < 5.0, (accepted, first)
        firsts[cam] = first

    # a request to an owner's seam signed with another key is refused (and one with the site's key served)
    key = base64.b64decode(site.key_file.read_text())
    for wrong in (os.urandom(32), None):
        ep = protocol.announced("wa", json.dumps(announced["wa"]), wrong if wrong is not None else key)
        assert ep is not None
        kind, body = _ask(ep, protocol.request_line(ep, op="stream", camera=a, stream="sub", format="fmp4"))
        assert (kind, body.get("code")) == ((protocol.ERROR, "bad_token") if wrong else (protocol.ACCEPTED, None))
    # the file token of one machine is no way in from another: a guessed token is refused
    assert ep is not None
    assert _ask(ep, json.dumps({"token": "x" * 43, "op": "stats"}).encode() + b"\n")[1]["code"] == "bad_token"

    # the zone editor's picture comes from the owner too
    with httpx.Client(base_url=base, timeout=30, headers={"Cookie": cookie}) as c:
        frame = c.get(f"/api/zones/{a}/frame")
    assert frame.status_code == 200 and frame.json()["source"] == "live", frame.text[:300]
    assert base64.b64decode(frame.json()["image"].split(",", 1)[1])[:2] == b"\xff\xd8"  # a JPEG

    # an open alert's clip: the dashboard asks the owner (found through Redis) to finish its open segment
    from dashboard.clips import cut_clip
    from dashboard.context import Dashboard
    from dashboard.services import live as live_service
    from history.catalogue import dashboard_fetcher, lookup
    from history.db import open_database
    from pipeline.config import load_config

    cfg = load_config(site.tmp / "dash" / "streams.yaml")
    engine = open_database(cfg)
    d = Dashboard(cfg, engine, site.redis_url)
    t0 = time.time()
    recorded_to = asyncio.run(live_service.finish_open_segment(d, b))
    finish_s = time.time() - t0
    assert recorded_to is not None and t0 - 3.0 < recorded_to <= time.time() + 0.5, (recorded_to, t0)
    # ... and the clip cut on the dashboard host reaches it: the segment is fetched once it is catalogued
    rec_dir = dash_data / "recordings"
    present = any(r.end >= recorded_to - 0.05 for r in lookup(engine, b, recorded_to - 1, recorded_to))
    assert live_service._wait_catalogued(d, rec_dir, b, recorded_to), site.log("archiver")
    catalogued_s = time.time() - t0 - finish_s
    clip = cut_clip(rec_dir, dash_data / "cache" / "clips", b, "open-alert", recorded_to - 3.0, recorded_to,
                    True, dashboard_fetcher(d))
    engine.dispose()
    assert recorded_to - 0.3 < clip.end <= recorded_to + 0.05 and clip.duration >= 1.0, (clip, recorded_to)

    # the owner of camera a dies: the camera plays again, through the same dashboard, from wb
    site.procs["wa"].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    while True:
        try:
            accepted, first = _watch(base, cookie, a)
            if accepted["worker"] == "wb":
                break
        except (RuntimeError, TimeoutError, OSError):
            pass
        assert time.monotonic() - killed < TTL_S + 30, f"{a} not back: owner {site.owner(a)}: {site.log('wb')}"
        time.sleep(0.2)
    back = time.monotonic() - killed
    assert site.owner(a) == "wb"
    print(f"\nLIVE across machines: first fragment through the dashboard {colds[a]:.2f} s ({a} on wa) and "
          f"{colds[b]:.2f} s ({b} on wb) for the first viewer, "
          f"{firsts[a]:.2f} / {firsts[b]:.2f} s for the next; finish op on the owner {finish_s:.2f} s, "
          f"its segment catalogued {'already' if present else f'{catalogued_s:.2f} s later'}, "
          f"clip to {clip.end - recorded_to:+.2f} s of it; "
          f"after kill -9 of wa, "
          f"{a} plays from wb {back:.1f} s later (lease TTL {TTL_S:g} s; first fragment {first:.2f} s)")
    assert back < TTL_S + 15
