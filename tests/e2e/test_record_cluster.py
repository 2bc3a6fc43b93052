"""Recordings when cameras move between machines: catalogue, segment endpoint, export across machines.

- The segment endpoint (``pipeline/record/serve.py``) on real files: refused without a signature
  (401), with a wrong, expired or other file's signature (403), and for every name that is not a
  finished segment under the recordings folder (``..``, encoded slashes, ``.part``, a symbolic link
  out of the folder) even when correctly signed (404); a signed request gets the file's bytes.
- The fetcher refuses a copy whose size or sha256 differs from the catalogue and says so.
- End to end on real processes (real redis-server, real RTSP from scripts/camsim.py): worker ``wa``
  records a camera, worker ``wb`` joins and, as the camera's preferred owner, takes it over by a
  hand-over while ``wa`` keeps running; each worker has its own data directory (as on its own
  machine); the archiver of a third "dashboard host" stores both workers' announcements; ``sharpeye
  export`` run on that host (no recording of its own) fetches every segment from the two workers
  and cuts a range spanning the move.  The file's frame count is exactly the sum of the segments'
  packets (the writers' ``index.jsonl``), the manifest lists the move's hole, and each segment's
  holder.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from sqlalchemy import select

from dashboard.clips import cut_clip
from history.catalogue import CatalogArchiver, lookup
from history.catalogue import fetcher as catalog_fetcher
from history.db import open_database
from history.schema import segment_catalog
from pipeline.cluster.leases import Lease, LeaseKeys
from pipeline.cluster.rendezvous import Member, assign
from pipeline.config import load_config
from pipeline.export.fetch import RemoteSegment, SegmentFetcher
from pipeline.record.announce import SegmentAnnouncer, announcement
from pipeline.record.layout import SegmentInfo, iter_index
from pipeline.record.serve import (
    SIGN_TTL_S,
    SegmentServer,
    advertised_host,
    bind_address,
    catalogue_signature,
    key_path,
    signed_path,
)
from pipeline.tools.simulator import RtspSimulator
from tests.support.assets import require_camsim
from tests.support.config import config_text, new_site_key, write_private
from tests.support.dashboard import stop_all
from tests.support.record import fake_segments
from tests.support.waits import wait_for

T0 = 1_764_000_000.0


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[SegmentServer, Path, bytes]]:
    rec = tmp_path / "data" / "recordings"
    paths = fake_segments(rec, "gate", [T0, T0 + 10], size=5000)
    paths[0].write_bytes(os.urandom(5000))
    srv = SegmentServer(rec, tmp_path / "site.key", listen="127.0.0.1:0")
    srv.start()
    try:
        yield srv, paths[0], srv.key
    finally:
        srv.stop()


def test_segment_endpoint_serves_a_signed_request_and_refuses_without_or_with_a_wrong_signature(
        served: tuple[SegmentServer, Path, bytes]) -> None:
    srv, path, key = served
    name = path.name
    status, body = _get(srv.address + signed_path(key, "gate", name))
    assert status == 200 and body == path.read_bytes()
    assert _get(f"{srv.address}/segment/gate/{name}")[0] == 401
    assert _get(f"{srv.address}/segment/gate/{name}?exp=9999999999&sig=")[0] == 401
    assert _get(srv.address + signed_path(b"another site's key " * 2, "gate", name))[0] == 403
    assert _get(srv.address + signed_path(key, "gate", name, now=time.time() - SIGN_TTL_S - 5))[0] == 403
    # a signature is for one file: another name with it is refused
    other = signed_path(key, "gate", name).replace(name, f"{T0 + 10:.3f}-10.000.mp4")
    assert _get(srv.address + other)[0] == 403
    assert srv.served == 1 and srv.refused == 5


def test_segment_endpoint_refuses_every_name_outside_the_recordings_even_when_signed(
        served: tuple[SegmentServer, Path, bytes], tmp_path: Path) -> None:
    srv, path, key = served
    secret = tmp_path / "data" / "history.sqlite"
    secret.write_bytes(b"not a segment")
    (tmp_path / "outside").mkdir()
    outside = tmp_path / "outside" / f"{T0 + 20:.3f}-10.000.mp4"
    outside.write_bytes(b"outside the recordings")
    link = path.parent / outside.name
    link.symlink_to(outside)  # a link inside the folder pointing out of it
    part = path.parent / f"{T0 + 30:.3f}.mp4.part"
    part.write_bytes(b"being written")
    attempts = [
        ("gate", "../../../../history.sqlite"),
        ("..", path.name),
        ("gate", "..%2F..%2F..%2F..%2Fhistory.sqlite"),
        ("gate/../..", path.name),
        ("gate", f"{T0 + 30:.3f}.mp4.part"),
        ("gate", outside.name),
        ("gate", path.name + "\n"),
        ("gate", "/etc/passwd"),
        ("gate\n", path.name),
    ]
    for camera, name in attempts:
        status, body = _get(srv.address + signed_path(key, camera, name))
        assert status == 404, (camera, name, status, body)
        assert b"outside" not in body and b"not a segment" not in body and b"being written" not in body
    # raw paths a client might send without quoting
    for raw in ("/segment/gate/../../history.sqlite", "/segment/../data/history.sqlite", "/segment/gate",
                "/etc/passwd", "/segment/gate/x/y"):
        status, body = _get(srv.address + raw + "?exp=1&sig=00")
        assert status in (403, 404), (raw, status)
        assert b"not a segment" not in body


def test_the_site_key_and_the_listen_address_come_from_the_cluster_section(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    cfg_path = tmp_path / "site" / "streams.yaml"
    cfg_path.write_text(config_text({"gate": {"source": "rtsp://127.0.0.1:9/gate"}}, data_dir="data"))
    assert key_path(load_config(cfg_path)) == tmp_path / "site" / "data" / "cluster" / "segment.key"
    cfg_path.write_text(config_text({"gate": {"source": "rtsp://127.0.0.1:9/gate"}}, data_dir="data",
                                    cluster={"segment_key_file": "keys/site.key", "segment_listen": "0.0.0.0:8091",
                                             "advertise_host": "10.0.0.11"}))
    cfg = load_config(cfg_path)
    assert key_path(cfg) == tmp_path / "site" / "keys" / "site.key"  # relative to the config's folder
    assert bind_address(cfg.cluster.segment_listen, 0) == ("0.0.0.0", 8091)
    assert bind_address(cfg.cluster.segment_listen, 2) == ("0.0.0.0", 8093)  # worker process 2 of the machine
    assert bind_address("127.0.0.1:0", 3) == ("127.0.0.1", 0)
    assert advertised_host("0.0.0.0", cfg.cluster.advertise_host) == "10.0.0.11"
    assert advertised_host("127.0.0.1", None) == "127.0.0.1"
    for bad in ("8091", "host", "::1:8091", "a:70000"):
        cfg_path.write_text(config_text({"gate": {"source": "rtsp://127.0.0.1:9/gate"}}, data_dir="data",
                                        cluster={"segment_listen": bad}))
        with pytest.raises(Exception, match="segment_listen"):
            load_config(cfg_path)
    # the worker's --advertise-host overrides the shared config's, checked by the same schema
    cfg_path.write_text(config_text({"gate": {"source": "rtsp://127.0.0.1:9/gate"}}, data_dir="data",
                                    cluster={"enabled": True}))
    res = subprocess.run([sys.executable, "-m", "pipeline.runtime.worker", "--config", str(cfg_path), "--redis",
                          "redis://127.0.0.1:9", "--advertise-host", "bad host!"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and "--advertise-host" in res.stderr, res.stderr[-2000:]


def _signed(row: RemoteSegment, key: bytes, **change: Any) -> RemoteSegment:
    r = dataclasses.replace(row, **change)
    return dataclasses.replace(r, sig=catalogue_signature(key, r.camera, r.start, r.end, r.bytes, r.name,
                                                          r.sha256 or "", r.worker, r.token, r.address))


def _only(row: RemoteSegment, camera: str, start: float, end: float) -> list[RemoteSegment]:
    return [row]


def test_fetcher_refuses_a_copy_whose_size_or_hash_differs_and_a_row_not_signed_with_the_site_key(
        served: tuple[SegmentServer, Path, bytes], tmp_path: Path) -> None:
    srv, path, key = served
    start, dur = (float(x) for x in path.name[:-4].split("-"))
    good = _signed(RemoteSegment("gate", start, start + dur, path.name, 5000, "wa", srv.address, None, 3), key)
    forged = [_signed(good, b"a bus writer's own key", address="http://127.0.0.1:9"),
              dataclasses.replace(good, sig=None), dataclasses.replace(good, worker="wz")]
    for bad, why in [(_signed(good, key, bytes=4999), "got 5000 bytes"),
                     (_signed(good, key, sha256="0" * 64), "sha256"),
                     *((f, "not signed with this site's key") for f in forged)]:
        fetcher = SegmentFetcher(tmp_path / "dash", functools.partial(_only, bad), key=key)
        assert fetcher.complete("gate", start, start + dur, []) == []
        assert why in fetcher.notes["gate"][0] and bad.worker in fetcher.notes["gate"][0]
        assert not list((tmp_path / "dash").rglob("*.mp4"))
    f = SegmentFetcher(tmp_path / "dash", lambda c, s, e: [good], key=key)
    (seg,) = f.complete("gate", start, start + dur, [])
    assert seg.path.read_bytes() == path.read_bytes() and f.fetched == 1
    assert f.origin[seg.path].worker == "wa"


# ------------------------------------------------------------------------------------------ end to end


def _camera_preferring(worker: str, others: list[str]) -> str:
    """A camera id whose preferred owner among these workers is ``worker`` (rendezvous hash, no caps)."""
    members = [Member(w) for w in [worker, *others]]
    for i in range(1000):
        cam = f"mv{i}"
        if assign([cam], members).owner[cam] == worker:
            return cam
    raise AssertionError("no camera id found")


class Site:
    """Workers and an archiver, each with its own data directory, on one bus prefix and one site key."""

    def __init__(self, tmp: Path, redis_url: str, sim: RtspSimulator, camera: str):
        self.tmp = tmp
        self.prefix = f"rc{time.monotonic_ns()}"
        self.camera = camera
        self.sim = sim
        self.url_file = write_private(tmp / "redis.url", redis_url)
        self.env = dict(os.environ)
        self.key_file = new_site_key(tmp / "site.key")  # every host's config names it (cluster.segment_key_file)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def config(self, name: str) -> Path:
        host = self.tmp / name
        host.mkdir(exist_ok=True)
        cfg = host / "streams.yaml"
        cams = {self.camera: {"source": self.sim.url(self.camera), "detect_fps": 1, "timeout_s": 5}}
        cfg.write_text(config_text(cams, data_dir=str(host / "data"), bus={"prefix": self.prefix},
                                   model={"threads": 1}, recordings={"segment_s": 2.0, "pre_event_s": 0},
                                   cluster={"enabled": True, "lease_ttl_s": 5.0, "renew_s": 0.5,
                                            "moves_per_s": 2.0, "segment_key_file": str(self.key_file)}))
        return cfg

    def spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.tmp / f"{name}.log", "wb")
        self.procs[name] = subprocess.Popen([sys.executable, "-m", *argv], stdout=log, stderr=subprocess.STDOUT,
                                            env=self.env, start_new_session=True)

    def worker(self, name: str) -> None:
        self.spawn(name, ["pipeline.runtime.worker", "--config", str(self.config(name)),
                          "--redis-url-file", str(self.url_file), "--worker-id", name])

    def archiver(self) -> Path:
        cfg = self.config("dash")
        self.spawn("archiver", ["history.archiver", "--config", str(cfg), "--redis-url-file", str(self.url_file)])
        return cfg

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        stop_all(self.procs.values())


@pytest.fixture()
def site(tmp_path: Path, redis_url: str, person_clip: Path) -> Iterator[Site]:
    require_camsim()
    cam = _camera_preferring("wb", ["wa"])
    with RtspSimulator({cam: person_clip}) as sim:
        s = Site(tmp_path, redis_url, sim, cam)
        try:
            yield s
        finally:
            s.stop()


def _rows(engine: Any, camera: str) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(select(segment_catalog).where(segment_catalog.c.camera_id == camera)
                            .order_by(segment_catalog.c.start)).all()


def _packets(data: Path, camera: str) -> dict[str, int]:
    """Segment name → packets written, from a worker's own index."""
    out = {}
    for r in iter_index(data / "recordings", camera, T0, time.time() + 60):
        if r.get("type") == "segment":
            out[Path(r["path"]).name] = int(r["packets"])
    return out


def _page_export(cfg_path: Path, redis_url: str, engine: Any, camera: str, start: float, end: float) -> Any:
    from fastapi.testclient import TestClient

    from dashboard.app import create_app
    from dashboard.users import add_user
    from pipeline.config import load_config

    add_user(engine, "chen", "correct horse battery", "admin", ["*"], "Chief Chen")
    client = TestClient(create_app(load_config(cfg_path), redis_url, engine))
    r = client.post("/api/login", json={"username": "chen", "password": "correct horse battery"})
    assert r.status_code == 200, r.text
    r = client.post("/api/exports", json={"cameras": [camera], "start": start, "end": end},
                    headers={"X-CSRF-Token": r.json()["csrf"]})
    assert r.status_code == 202, r.text
    url = f"/api/exports/{r.json()['id']}"
    wait_for(lambda: client.get(url).json()["state"] in ("done", "failed"), 60, lambda: f"{client.get(url).json()}")
    return client.get(url).json()


def test_an_export_spanning_a_camera_move_fetches_the_old_owners_segments_and_is_complete(site: Site) -> None:
    import redis

    cam = site.camera
    dash_cfg = site.archiver()
    engine = open_database(url=f"sqlite:///{site.tmp / 'dash' / 'data' / 'history.sqlite'}")
    r = redis.Redis.from_url(site.url_file.read_text().strip())
    lease_key = LeaseKeys(site.prefix).lease(cam)

    site.worker("wa")
    wait_for(lambda: sum(row.worker == "wa" for row in _rows(engine, cam)) >= 4, 120,
             lambda: f"4 segments of {cam} from wa in the catalogue: {site.log('wa')} {site.log('archiver')}")
    site.worker("wb")  # the camera's preferred owner: wa hands it over and keeps running
    wait_for(lambda: (Lease.parse(r.get(lease_key)) or Lease("", 0)).owner == "wb", 90,
             lambda: f"{cam} handed over to wb: {site.log('wb')}")
    wait_for(lambda: sum(row.worker == "wb" for row in _rows(engine, cam)) >= 4, 90,
             lambda: f"4 segments of {cam} from wb in the catalogue: {site.log('wb')}")
    assert site.procs["wa"].poll() is None

    rows = _rows(engine, cam)
    a_rows = [x for x in rows if x.worker == "wa"]
    b_rows = [x for x in rows if x.worker == "wb"]
    assert a_rows[-1].end <= b_rows[0].start + 0.05, "the two owners recorded the same time"
    assert a_rows[-1].token < b_rows[0].token, "the new owner's token is higher"
    assert all(x.sha256 and len(x.sha256) == 64 and x.sig and len(x.sig) == 64 for x in rows)
    assert len({x.address for x in a_rows}) == 1 and a_rows[0].address != b_rows[0].address
    # whole segments from wa's second to wb's last: the file must hold every packet of them
    start, end = a_rows[1].start, b_rows[-1].end
    used = [x for x in rows if x.start >= start - 1e-3 and x.end <= end + 1e-3]
    packets = {**_packets(site.tmp / "wa" / "data", cam), **_packets(site.tmp / "wb" / "data", cam)}
    expected = sum(packets[x.name] for x in used)

    out = site.tmp / "exports"
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "cli.main", "export", "-c", str(dash_cfg), "--camera", cam,
                          "--start", f"{start:.3f}", "--end", f"{end:.3f}", "-o", str(out), "--json"],
                         capture_output=True, text=True, env=site.env, timeout=120)
    took = time.monotonic() - t0
    assert res.returncode == 0, res.stderr + res.stdout
    doc = json.loads(res.stdout)
    m = doc["manifest"]
    (c,) = m["cameras"]
    assert [s["held_by"] for s in c["segments"]] == [x.worker for x in used]
    assert [s["path"].rsplit("/", 1)[-1] for s in c["segments"]] == [x.name for x in used]
    (f,) = c["files"]
    assert f["frames"] == expected, f"frames {f['frames']} != packets of the segments {expected}"
    with av.open(str(Path(doc["path"]) / f["name"])) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded == expected
    hole = a_rows[-1].end, b_rows[0].start
    # the one hole of the range is the move's, listed with its reason however short it is
    if hole[1] - hole[0] > 0.05:
        (gap,) = c["gaps"]
        assert abs(gap["seconds"] - (hole[1] - hole[0])) < 0.002
        assert "moved from worker wa to worker wb" in gap["reason"]
    else:  # back to back (the cutter joins them without a jump)
        assert c["gaps"] == []
    assert abs(f["duration_s"] - (end - start)) < 0.1, "the file's clock jumps by the hole: its length is the range"
    assert any("the camera moved" in n and "worker wa" in n and "worker wb" in n for n in c["notes"]), c["notes"]
    cache = site.tmp / "dash" / "data" / "cache" / "segments" / cam
    assert sorted(p.name for p in cache.rglob("*.mp4")) == sorted(x.name for x in used)
    print(f"\nexport across the move: {len(used)} segments ({sum(x.bytes for x in used)} bytes) fetched from "
          f"wa ({sum(x.worker == 'wa' for x in used)}) and wb ({sum(x.worker == 'wb' for x in used)}), "
          f"{expected} frames, hole at the move {hole[1] - hole[0]:.3f} s, export {took:.2f} s")

    # a page export on the dashboard host (no recording of its own: accepted through the catalogue)
    dash_data = site.tmp / "dash" / "data"
    shutil.rmtree(dash_data / "cache" / "segments")  # fetched again, by the page's job
    page = _page_export(dash_cfg, site.url_file.read_text().strip(), engine, cam, start, end)
    assert page["state"] == "done", page
    assert any("camera moved from worker wa to worker wb" in w for w in page["warnings"]) or hole[1] - hole[0] <= 0.05
    assert len(list((dash_data / "cache" / "segments").rglob("*.mp4"))) == len(used)

    # the alert clip of the dashboard host spans the move the same way (its own cache of segments)
    clip = cut_clip(dash_data / "recordings", dash_data / "cache" / "clips", cam, "alert-1", start, end,
                    fetcher=catalog_fetcher(dash_data, engine, key_path(load_config(dash_cfg))))
    assert abs(clip.duration - (end - start)) < 0.1 and abs(clip.start - start) < 0.01
    with av.open(str(clip.path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == expected
    assert [g["reason"] for g in clip.gaps] == (["camera moved from worker wa to worker wb: not recorded meanwhile"]
                                                if hole[1] - hole[0] > 0.05 else [])

    # the live worker's endpoint refuses an unsigned request and a traversal
    addr = a_rows[0].address
    assert _get(f"{addr}/segment/{cam}/{a_rows[0].name}")[0] == 401
    key = base64.b64decode((site.tmp / "site.key").read_text())
    assert _get(addr + signed_path(key, cam, "../../streams.yaml"))[0] == 404
    assert _get(addr + signed_path(key, cam, a_rows[0].name))[0] == 200
    r.close()
    engine.dispose()


# ------------------------------------------------------------------------------------------ the catalogue


def test_announcements_wait_for_the_bus_and_arrive_in_order_with_hash_and_signature(tmp_path: Path) -> None:
    rec = tmp_path / "recordings"
    paths = fake_segments(rec, "gate", [T0 + 10 * i for i in range(5)], size=3000)
    sent: list[dict[str, str]] = []
    down = {"calls": 0}

    def send(fields: dict[str, str]) -> None:
        if down["calls"] < 3:
            down["calls"] += 1
            raise ConnectionError("bus down")
        sent.append(fields)

    key = os.urandom(32)
    ann = SegmentAnnouncer(send, "wa", "http://10.0.0.11:8091", key)
    ann.start()
    try:
        for p in paths:
            s, d = (float(x) for x in p.name[:-4].split("-"))
            ann.announce(SegmentInfo("gate", s, s + d, p, 3000), {"fence": {"owner": "wa", "token": 7}})
        wait_for(lambda: len(sent) == 5, 15, lambda: f"5 announcements sent: {sent}")
    finally:
        ann.stop()
    assert [f["name"] for f in sent] == [p.name for p in paths] and ann.failures == 3
    row = RemoteSegment("gate", float(sent[0]["start"]), float(sent[0]["end"]), sent[0]["name"], 3000, "wa",
                        sent[0]["address"], sent[0]["sha256"], int(sent[0]["token"]), sent[0]["sig"])
    assert row.sha256 == hashlib.sha256(b"\0" * 3000).hexdigest() and row.token == 7
    assert row.signed_by(key) and not row.signed_by(os.urandom(32))


def test_the_archiver_stores_announcements_once_claims_a_dead_consumers_and_leaves_the_events_alone(
        tmp_path: Path, redis_url: str) -> None:
    from pipeline.publish import bus

    prefix = f"rcat{time.monotonic_ns()}"
    r = bus.connect(redis_url)
    stream = f"{prefix}:segments"
    engine = open_database(url=f"sqlite:///{tmp_path / 'history.sqlite'}")
    try:
        arch = CatalogArchiver(engine, r, prefix, consumer="live", claim_idle_ms=0)
        arch.ensure_group()
        key = os.urandom(32)
        entries = [announcement(SegmentInfo("gate", T0 + 2 * i, T0 + 2 * i + 2, Path(f"{T0 + 2 * i:.3f}-2.000.mp4"),
                                            1000 + i), "wa", "http://a:1", {"fence": {"token": 3}}, "ab" * 32, key)
                   for i in range(4)]
        for f in entries + [entries[1]]:  # one sent twice (a resend after a failover)
            r.xadd(stream, f)
        # a consumer that read two and died before acknowledging them
        r.xreadgroup("archiver", "dead", {stream: ">"}, count=2)
        assert arch.claim() == 2
        assert arch.step(block_ms=100) == 0  # its own pending entries first: none
        while arch.step(block_ms=100):
            pass
        rows = _rows(engine, "gate")
        assert [x.name for x in rows] == [f["name"] for f in entries] and arch.duplicates == 1
        assert r.xpending(stream, "archiver")["pending"] == 0
        assert not r.exists(bus.BusKeys(prefix).events), "announcements never touch the alert stream"
        got = lookup(engine, "gate", T0 + 3, T0 + 5)  # overlapping: the second and the third
        assert [g.name for g in got] == [entries[1]["name"], entries[2]["name"]]
        assert all(g.signed_by(key) and g.token == 3 for g in got)
    finally:
        engine.dispose()
        r.close()
