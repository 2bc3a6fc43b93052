"""A worker host's link cut (tests/netlab.py): two hosts, each a network namespace with its own data folder
and no route out, on a bridge with the bus (redis-server over TCP) and the RTSP cameras (camsim).

Cutting w1's link: w1 cannot renew, fences itself (stops its cameras, records nothing more) before
its leases expire; w2 takes w1's cameras and decodes them within TTL + 3 s.  Healing the link: what
w1 had stamped before it fenced is still in its outbox and is delivered late, but Redis refuses it
(the outbox's write compares each token with the camera's token counter, ``bus.add_events_fenced``):
no message of a camera reaches the bus after a higher token of it was acquired, so none is stale on
the bus at all, whatever a consumer remembers; no message or segment was CREATED under a token after
a higher one was acquired either: at no time did two workers publish or record one camera with a
current token.  The consumers' FenceFilter stays as the second line (checked against the stream).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.publish.fencing import FenceFilter
from pipeline.tools.simulator import RtspSimulator, free_port
from tests.e2e.test_cluster_worker import CAMS, TTL_S, Lab, _events, acquisitions
from tests.support.assets import missing_asset, require_camsim
from tests.support.netlab import NetLab, netns_unavailable
from tests.support.waits import wait_for


@pytest.fixture()
def net() -> Iterator[NetLab]:
    if reason := netns_unavailable():
        missing_asset(f"network namespaces: {reason}")
    lab = NetLab().start()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture()
def tcp_redis(net: NetLab, tmp_path: Path) -> Iterator[str]:
    """A redis-server on the bridge address (the hosts reach it over their links), with a password."""
    port = free_port()
    password = os.urandom(16).hex()
    folder = tmp_path / "redis"
    folder.mkdir()
    conf = folder / "redis.conf"
    conf.write_text(f"bind {net.gateway}\nport {port}\nrequirepass {password}\nsave \"\"\nappendonly no\n"
                    f"dir {folder}\nprotected-mode no\n")
    conf.chmod(0o600)
    proc = subprocess.Popen(["redis-server", str(conf)], stdout=open(folder / "log", "wb"), stderr=subprocess.STDOUT)
    url = f"redis://:{password}@{net.gateway}:{port}/0"
    try:
        import redis
        wait_for(lambda: _pings(redis.Redis.from_url(url, socket_timeout=0.5)), 10, "redis-server on the bridge")
        yield url
    finally:
        proc.kill()
        proc.wait(10)


def _pings(r: object) -> bool:
    try:
        return bool(r.ping())  # type: ignore[attr-defined]
    except Exception:
        return False


def test_a_cut_off_workers_cameras_stream_elsewhere_and_nothing_is_created_under_a_stale_token(
        net: NetLab, tcp_redis: str, tmp_path: Path, person_clip: Path) -> None:
    require_camsim()
    sim = RtspSimulator({c: person_clip for c in CAMS})
    sim.host = net.gateway  # the hosts reach the cameras over the bridge
    for name in ("w1", "w2"):
        net.add_host(name)
    with sim:
        lab = Lab(tmp_path, tcp_redis, sim, wrap=net.command)
        try:
            lab.start("w1")
            lab.start("w2")
            wait_for(lambda: lab.all_streaming() and {h.owner for h in lab.holders().values() if h} == {"w1", "w2"},
                     120, lambda: f"both workers to own and stream cameras: {lab.holders()}")
            wait_for(lambda: any((m.get("fence") or {}).get("owner") == "w1" for _, m in _events(lab.r, lab.keys)),
                     60, "a message from w1")
            w1_cams = [c for c, h in lab.holders().items() if h and h.owner == "w1"]
            cut_at = time.time()
            net.cut("w1")
            times = []
            for cam in w1_cams:
                wait_for(lambda cam=cam: lab.streaming_on(cam, "w2", cut_at), 40,  # type: ignore[misc]
                         lambda: f"w2 to stream w1's cameras: {lab.holders()}", interval=0.1)
                times.append(lab.streaming_on(cam, "w2", cut_at) - cut_at)  # type: ignore[operator]
            wait_for(lambda: "not renewed" in lab.log("w1"), 15, lambda: f"w1 to fence itself: {lab.log('w1')}")
            time.sleep(2.0)
            net.heal("w1")
            healed_at = time.time()
            time.sleep(6.0)  # w1's outbox delivers what it held; w1 rejoins and may get cameras back (new tokens)
            assert lab.procs["w1"].poll() is None, f"w1 died: {lab.log('w1')}"
        finally:
            lab.stop_all()
    acquired = acquisitions(lab)

    def superseded(cam: str, token: int) -> float | None:
        newer = [t for tok, t in acquired.get(cam, []) if tok > token]
        return min(newer) if newer else None

    late = []
    created_stale = []
    filt = FenceFilter()
    highest: dict[str, int] = {}
    for sid, msg in _events(lab.r, lab.keys):
        fence, cam = msg["fence"], msg["camera"]["id"]
        at = superseded(cam, fence["token"])
        if at is not None and msg["time"] >= at:
            created_stale.append((sid, msg["type"], msg.get("phase"), cam, fence, msg["time"] - at))
        # the consumers' filter drops a message once a higher token of its camera was seen on the stream
        stale_seen = fence["token"] < highest.get(cam, 0)
        assert filt.accept(msg) is not stale_seen, f"the filter got message {sid} wrong"
        highest[cam] = max(highest.get(cam, 0), fence["token"])
        # arrived after a newer owner took the camera (both Redis's clock, ms: the same ms may be either side)
        if at is not None and int(sid.split("-")[0]) / 1000 > at:
            late.append((sid, msg["type"], msg.get("phase"), cam, fence, int(sid.split("-")[0]) / 1000 - at))
    assert not created_stale, f"messages created under a superseded token: {created_stale[:5]}"
    assert not late, f"{len(late)} messages reached the bus after a higher token was acquired: {late[:5]}"
    # w1's outbox logs its refused (stale) messages once per camera
    refused = (lab.tmp / "w1" / "worker.log").read_text(errors="replace").count("stamped under fence token")
    overlap = []
    n_segs = 0
    for idx in Path(tmp_path).glob("w*/data/recordings/*/*/index.jsonl"):
        for row in map(json.loads, filter(str.strip, idx.read_text().splitlines())):
            if row.get("type") != "segment":
                continue
            n_segs += 1
            fence = row.get("fence")
            assert fence, f"a segment without its fence in {idx}"
            at = superseded(idx.parts[-3], fence["token"])
            if at is not None and row["end"] > at + 0.5:
                overlap.append((idx.parts[-3], row["path"], fence, row["end"] - at))
    assert not overlap, f"segments recorded past a newer owner's acquisition: {overlap}"
    print(f"\nlink cut: w1's cameras {w1_cams} streaming on w2 after {', '.join(f'{t:.2f}' for t in times)} s "
          f"(TTL {TTL_S:g} s); healed after {healed_at - cut_at:.1f} s; no message on the bus after a higher "
          f"token of its camera was acquired (w1's outbox had stale messages of {refused} cameras refused by "
          f"Redis); {n_segs} fenced segments, none overlapping")
    assert max(times) <= TTL_S + 3.0
