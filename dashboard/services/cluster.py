"""Workers (工作节点): which worker of the cluster runs which camera now, and each camera's moves.

The look-ups behind the workers page, the owner column of the health page and ``/metrics``.

Read from the bus only, in the key formats of docs/events.md ("Cluster keys"), which the workers'
``pipeline/cluster`` writes: the membership sorted set and its info hash (live workers, capacity),
each camera's lease (owner and fencing token now), the last-owner hash and the capped stream of
moves.  Key names and the lease value come from ``pipeline.cluster.leases`` (``LeaseKeys``,
``Lease.parse``), pure helpers that import no process code; the membership keys and their JSON are
parsed here, as documented.

Why a dashboard must not learn this from the workers themselves: a dead worker cannot say that
it is dead, and a worker cut off from Redis cannot say what it no longer owns.  Redis holds the
truth the workers act on (a worker runs a camera only while it holds its lease), so the page shows
exactly that, on the Redis clock (``TIME``), so a dashboard host with a skewed clock still shows
the right ages.

A worker's last heartbeat is not stored as such: the sorted set holds its expiry (heartbeat time
plus ``cluster.lease_ttl_s`` of the worker's config), so the page shows expiry minus this
dashboard's ``cluster.lease_ttl_s``; with one shared config the two are the same.

Visibility: the view is an engineer's (like the health page).  A user sees the cameras, owners and
moves of their own grid cells only; a camera the config does not know (a worker with a newer
config) only by users of every cell.  A worker's ``cameras_held`` counts all of its cameras, since
its load is what the view is for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from redis.exceptions import ResponseError

from dashboard.context import Dashboard
from dashboard.users import User
from pipeline.cluster.leases import Lease, LeaseKeys
from pipeline.config import Config
from pipeline.publish.bus import PrefixedKey

SCAN_PAGE = 1000  # stream entries read per round trip when looking for one camera's moves


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass(frozen=True)
class ClusterKeys:
    """The cluster's keys under ``bus.prefix`` (docs/events.md); the lease keys are ``LeaseKeys``'."""

    prefix: str

    workers = PrefixedKey("cluster:workers")
    info = PrefixedKey("cluster:info")

    @property
    def leases(self) -> LeaseKeys:
        return LeaseKeys(self.prefix)


def parse_info(raw: Any) -> dict[str, Any]:
    """A worker's info JSON (``{capacity, max_cameras, host, pid, started}``); a bad one reads as defaults."""
    try:
        d = json.loads(_text(raw))
    except ValueError:
        d = {}
    if not isinstance(d, dict):
        d = {}
    cap = d.get("capacity")
    return {"capacity": float(cap) if isinstance(cap, (int, float)) and cap > 0 else 1.0,
            "max_cameras": d.get("max_cameras") if isinstance(d.get("max_cameras"), int) else None,
            "host": str(d.get("host") or ""), "pid": d.get("pid") if isinstance(d.get("pid"), int) else None,
            "started": d.get("started") if isinstance(d.get("started"), (int, float)) else None}


def parse_last(raw: Any) -> tuple[str, int, str] | None:
    """A last-owner entry ``<owner>|<token>|<held|released>``."""
    text = _text(raw)
    head, _, state = text.rpartition("|")
    owner, _, token = head.rpartition("|")
    if not owner or not token.isdigit() or state not in ("held", "released"):
        return None
    return owner, int(token), state


def parse_move(sid: Any, fields: dict[Any, Any]) -> dict[str, Any]:
    f = {_text(k): _text(v) for k, v in fields.items()}
    try:
        token = int(f.get("token", "0"))
        t = int(f.get("time", "0")) / 1000.0
    except ValueError:
        token, t = 0, 0.0
    return {"id": _text(sid), "camera": f.get("camera", ""), "from": f.get("from") or None, "to": f.get("to") or None,
            "token": token, "time": t, "reason": f.get("reason") or None}


def camera_visible(cfg: Config, user: User, camera: str) -> bool:
    cam = cfg.cameras.get(camera)
    return user.sees_cell(cam.grid_cell) if cam is not None else user.all_cells()


async def read_cluster(d: Dashboard, cameras: list[str] | None = None) -> dict[str, Any]:
    """Everything the view needs, in two round trips: the live workers, every known camera's lease.

    ``cameras``: the cameras to read leases of; default the config's plus every camera the last-owner
    hash knows (a worker may run one this dashboard's config lacks)."""
    cfg = d.config()
    keys = ClusterKeys(cfg.bus.prefix)
    r = d.redis()
    async with r.pipeline(transaction=False) as p:
        p.time()
        p.zrange(keys.workers, 0, -1, withscores=True)
        p.hgetall(keys.info)
        p.hgetall(keys.leases.last)
        now_raw, members, infos, lasts = await p.execute()
    now = int(now_raw[0]) + int(now_raw[1]) / 1e6
    last = {_text(k): parse_last(v) for k, v in (lasts or {}).items()}
    cams = list(cameras) if cameras is not None else sorted(set(cfg.cameras) | set(last))
    raw = await r.mget([keys.leases.lease(c) for c in cams]) if cams else []
    leases = {c: Lease.parse(v) for c, v in zip(cams, raw)}
    info = {_text(k): parse_info(v) for k, v in (infos or {}).items()}
    ttl = cfg.cluster.lease_ttl_s
    workers: dict[str, dict[str, Any]] = {}
    for wid, score in members or []:
        wid = _text(wid)
        expires = float(score) / 1000.0
        workers[wid] = {"id": wid, **info.get(wid, parse_info("{}")), "last_heartbeat": expires - ttl,
                        "expires": expires, "live": expires > now, "cameras_held": 0, "cameras": []}
    for cam, lease in leases.items():
        if lease is None:
            continue
        w = workers.get(lease.owner)
        if w is None:  # holds a lease but is no member (left, or expired and removed): shown, not live
            w = workers[lease.owner] = {"id": lease.owner, **parse_info("{}"), "last_heartbeat": None,
                                        "expires": None, "live": False, "cameras_held": 0, "cameras": []}
        w["cameras_held"] += 1
        w["cameras"].append(cam)
    for w in workers.values():
        # load: cameras per unit of capacity (equal across workers when the hash balances them);
        # fill: the share of its cap (max_cameras) in use, when it has one
        w["load"] = round(w["cameras_held"] / w["capacity"], 3)
        w["fill"] = round(w["cameras_held"] / w["max_cameras"], 3) if w["max_cameras"] else None
    return {"now": now, "ttl_s": ttl, "enabled": cfg.cluster.enabled, "workers": workers, "leases": leases,
            "last": last}


def owner_of(view: dict[str, Any], camera: str) -> dict[str, Any] | None:
    """``{worker, token, live}`` of the camera's lease now, or None when nobody holds it."""
    lease = view["leases"].get(camera)
    if lease is None:
        return None
    w = view["workers"].get(lease.owner)
    return {"worker": lease.owner, "token": lease.token, "live": bool(w and w["live"]),
            "host": w["host"] if w else ""}


async def attach_owners(d: Dashboard, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``owner`` (see :func:`owner_of`) to each camera of a camera list (the health page)."""
    view = await read_cluster(d, [c["id"] for c in items])
    for c in items:
        c["owner"] = owner_of(view, c["id"])
    return items


async def read_moves(d: Dashboard, limit: int, camera: str | None = None,
                     visible: Any = None) -> list[dict[str, Any]]:
    """The newest ``limit`` moves, newest first: of one camera, or of every camera ``visible`` accepts."""
    key = LeaseKeys(d.config().bus.prefix).moves
    r = d.redis()
    out: list[dict[str, Any]] = []
    end = "+"
    while len(out) < limit:
        batch = await r.xrevrange(key, max=end, count=SCAN_PAGE if camera or visible else limit)
        for sid, fields in batch:
            m = parse_move(sid, fields)
            if camera is not None and m["camera"] != camera:
                continue
            if visible is not None and not visible(m["camera"]):
                continue
            out.append(m)
            if len(out) >= limit:
                break
        if len(batch) < (SCAN_PAGE if camera or visible else limit):
            break
        end = "(" + _text(batch[-1][0])
    return out


async def workers_view(d: Dashboard, user: User) -> dict[str, Any]:
    """Live workers (capacity, load, last heartbeat, cameras held) and each visible camera's owner."""
    cfg = d.config()
    view = await read_cluster(d)
    ws = []
    for w in sorted(view["workers"].values(), key=lambda w: w["id"]):
        ws.append({**w, "cameras": sorted(c for c in w["cameras"] if camera_visible(cfg, user, c))})
    cams = []
    for cid in sorted(set(cfg.cameras) | set(view["leases"])):
        if not camera_visible(cfg, user, cid):
            continue
        cam = cfg.cameras.get(cid)
        last = view["last"].get(cid)
        cams.append({"id": cid, "name": cam.name if cam else cid, "configured": cam is not None,
                     "owner": owner_of(view, cid),
                     "last": {"worker": last[0], "token": last[1], "state": last[2]} if last else None})
    return {"enabled": view["enabled"], "now": view["now"], "ttl_s": view["ttl_s"], "workers": ws, "cameras": cams}


async def moves_view(d: Dashboard, user: User, camera: str | None, limit: int) -> dict[str, Any]:
    """The newest moves the user may see, newest first; of one camera when ``camera`` is given."""
    cfg = d.config()
    if camera is not None and not camera_visible(cfg, user, camera):
        return {"camera": camera, "moves": []}  # as for a camera never moved: its existence is not told
    found = await read_moves(d, limit, camera, None if camera else (lambda c: camera_visible(cfg, user, c)))
    return {"camera": camera, "moves": found}


# ------------------------------------------------------------------------------------------ metrics

class _Collector:
    def __init__(self, view: dict[str, Any], moves: dict[tuple[str, str], int], total: int | None):
        self.view, self.moves, self.total = view, moves, total

    def collect(self) -> Any:
        held = GaugeMetricFamily("sharpeye_worker_cameras_held", "Cameras whose lease the worker holds now",
                                 labels=["worker", "host"])
        cap = GaugeMetricFamily("sharpeye_worker_capacity", "The worker's weight in the rendezvous hash",
                                labels=["worker", "host"])
        live = GaugeMetricFamily("sharpeye_worker_live", "1 while the worker's heartbeat is current",
                                 labels=["worker", "host"])
        for w in self.view["workers"].values():
            held.add_metric([w["id"], w["host"]], w["cameras_held"])
            cap.add_metric([w["id"], w["host"]], w["capacity"])
            live.add_metric([w["id"], w["host"]], 1.0 if w["live"] else 0.0)
        yield held
        yield cap
        yield live
        mv = CounterMetricFamily("sharpeye_worker_moves", "Camera moves to (in) and from (out) the worker that "
                                 "this dashboard process has seen in the moves stream (since it started, "
                                 "including the history retained then)", labels=["worker", "direction"])
        for (wid, direction), n in sorted(self.moves.items()):
            mv.add_metric([wid, direction], n)
        yield mv
        if self.total is not None:
            t = CounterMetricFamily("sharpeye_cluster_moves", "Camera lease acquisitions ever (all workers)")
            t.add_metric([], self.total)
            yield t


@dataclass
class _Tally:
    """Moves per (worker, direction) counted by this dashboard process, from the stream's start as retained
    when it first looked, then entry by entry: a scrape reads only the entries added since the last one."""

    last_id: str = "-"
    counts: dict[tuple[str, str], int] | None = None

    def add(self, moves: list[dict[str, Any]]) -> None:
        counts = self.counts if self.counts is not None else {}
        for m in moves:
            for wid, direction in ((m["to"], "in"), (m["from"], "out")):
                if wid:
                    counts[(wid, direction)] = counts.get((wid, direction), 0) + 1
            self.last_id = m["id"]
        self.counts = counts


_TALLIES: dict[tuple[str, str], _Tally] = {}  # (bus URL, moves key) -> tally of this process


async def metrics_text(d: Dashboard) -> bytes:
    """Per-worker cameras held, capacity, liveness and moves, for ``/metrics`` (empty without a cluster)."""
    view = await read_cluster(d)
    if not view["workers"] and not view["last"]:
        return b""
    key = LeaseKeys(d.config().bus.prefix).moves
    r = d.redis()
    tally = _TALLIES.setdefault((d.redis_url, key), _Tally())
    while True:  # only what was added since the last scrape (the whole retained stream on the first)
        lo = "-" if tally.last_id == "-" else "(" + tally.last_id
        batch = await r.xrange(key, min=lo, max="+", count=SCAN_PAGE)
        tally.add([parse_move(sid, f) for sid, f in batch])
        if len(batch) < SCAN_PAGE:
            break
    total = None
    try:
        xinfo = await r.xinfo_stream(key)
        added = xinfo.get("entries-added") or xinfo.get(b"entries-added")
        total = int(added) if added is not None else None
    except ResponseError:  # no stream yet
        total = None
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(view, dict(tally.counts or {}), total))  # type: ignore[arg-type]
    return generate_latest(reg)

