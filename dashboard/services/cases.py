"""Cases, protected storage and the camera timeline: the exports page's look-ups besides the jobs.

A case belongs to who made it: it is its owner and its name, so a name another user has already taken
gives a new case of one's own (its own folder and signed manifest), answered as any new name is.  Scopes
as for the jobs besides: a case is listed only to users who may see every camera of its exports and the
cell of every alert linked to it (admins and ``*`` see every cell).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import select, update

from dashboard import exports_import
from dashboard.context import Dashboard
from dashboard.deps import refuse
from dashboard.services.export_jobs import camera_cells, loads_json, sees_all, zip_cache
from dashboard.users import User
from history.audit import record
from history.schema import alerts, cases, export_jobs, sightings
from pipeline.export import cases as export_cases
from pipeline.export import holds
from pipeline.export.paths import UnsafeName, exports_root
from pipeline.export.protect import alert_ranges
from pipeline.record.catalog import Recordings

CLI_OWNER = "cli:"  # the owner of a case made by `sharpeye export --case` (dashboard.exports_import.cli_user)


def own_row(conn: Any, user: User, name: str) -> Any:
    """The user's own case of that name, or None: a case is its owner and its name."""
    return conn.execute(select(cases).where(cases.c.name == name, cases.c.created_by == user.username)).first()


def case_folder(d: Dashboard, row: Any) -> Path:
    """The case's folder: ``<exports>/cases/<name>`` (command line, older cases) or its owner's (``folder``)."""
    return export_cases.case_folder(exports_root(d.data_dir), row.name, row.folder)


def case_doc(d: Dashboard, row: Any) -> dict[str, Any]:
    try:
        folder = case_folder(d, row)
    except UnsafeName:
        return {}
    return holds.read_json(folder / "case.json", {}) if folder.is_dir() else {}


def case_view(d: Dashboard, row: Any, user: User) -> dict[str, Any] | None:
    """A case for the list, or None when it is not the user's to see: another user's case (only admins see
    those; cases of the command line are everyone's who sees their cells), or one of its exports has a camera,
    or one of its linked alerts is of a cell the user may not see."""
    own = row.created_by == user.username
    if not (own or user.all_cells() or row.created_by.startswith(CLI_OWNER)):
        return None
    cfg = d.config()
    doc = case_doc(d, row)
    cams = sorted({c for e in doc.get("exports", []) for c in e.get("cameras", [])})
    linked = sorted({*loads_json(row.alerts, []), *doc.get("alerts", [])})
    seen = loads_json(row.sightings, [])  # sightings added from the search page
    cells = set(camera_cells(cfg, cams))
    if linked:
        with d.engine.connect() as conn:
            cells |= set(conn.execute(select(alerts.c.grid_cell_id).where(alerts.c.id.in_(linked[:500]))).scalars())
    if seen:
        with d.engine.connect() as conn:
            found = conn.execute(select(sightings.c.camera_id, sightings.c.grid_cell_id)
                                 .where(sightings.c.sighting_id.in_(seen[:500]))).all()
        cells |= {r.grid_cell_id or camera_cells(cfg, [r.camera_id])[0] for r in found}
    if not sees_all(user, sorted(cells)):
        return None
    # another's case (an admin's list, the command line's) names its owner: the name alone is the user's own
    link = f"/api/cases/{row.name}/download" + ("" if own else f"?owner={quote(row.created_by, safe='')}")
    return {"name": row.name, "description": row.description, "alerts": linked, "created_at": row.created_at,
            "created_by": row.created_by, "updated_at": row.updated_at, "cameras": cams,
            "exports": [e.get("id") for e in doc.get("exports", [])], "sightings": seen,
            "download": link if doc.get("exports") else None}


def list_cases(d: Dashboard, user: User) -> list[dict[str, Any]]:
    """The cases the user may see (their own, the command line's, and for admins everyone's), newest change
    first."""
    exports_import.sync(d)  # cases of `sharpeye export --case` (throttled)
    with d.engine.connect() as conn:
        rows = conn.execute(select(cases).order_by(cases.c.updated_at.desc())).all()
    return [c for c in (case_view(d, r, user) for r in rows) if c]


def save_case(d: Dashboard, user: User, name: str, description: str, linked_alerts: list[str],
              remote: str | None) -> dict[str, Any]:
    """Create the user's case, or change its description and linked alerts (alerts of the user's cells only;
    the caller has stored from the bus those the archiver has not stored yet).

    A case is its owner and its name: a name another user already has gives this user a case of their own,
    with its own folder, answered exactly as a new name is, so a name cannot be probed and nobody's case is
    reached through its name."""
    now = time.time()
    with d.engine.begin() as conn:
        for aid in linked_alerts:
            row = conn.execute(select(alerts.c.grid_cell_id).where(alerts.c.id == aid)).first()
            if row is None or not user.sees_cell(row.grid_cell_id):
                raise refuse(404, "not_found", alert_id=aid[:128])
        old = own_row(conn, user, name)
        linked = sorted(set(linked_alerts))
        if old is None:
            conn.execute(cases.insert().values(name=name, description=description, alerts=json.dumps(linked),
                                               created_at=now, created_by=user.username, updated_at=now,
                                               folder=export_cases.owned_dir(user.username, name)))
        else:
            conn.execute(update(cases).where(cases.c.name == name, cases.c.created_by == user.username).values(
                description=description, alerts=json.dumps(linked), updated_at=now))
        record(conn, "case_create" if old is None else "case_update", user_id=user.id, username=user.username,
               remote=remote, data={"case": name, "alerts": linked})
        row = own_row(conn, user, name)
    view = case_view(d, row, user)
    if view is None:  # the user's own case holding a camera or alert they may no longer see
        raise refuse(404, "not_found")
    return view


def add_sighting(d: Dashboard, user: User, name: str, sighting_id: str, description: str | None,
                 remote: str | None) -> dict[str, Any]:
    """Link a sighting (already checked to be of the user's cells) to the user's own case of that name, made
    when they have none; audited.  The case's signed manifest lists exports and alerts only: a sighting is a
    pointer into the history (its clip is exported as any range is)."""
    now = time.time()
    with d.engine.begin() as conn:
        old = own_row(conn, user, name)
        if old is None:
            conn.execute(cases.insert().values(name=name, description=description or "", alerts="[]",
                                               sightings=json.dumps([sighting_id]), created_at=now,
                                               created_by=user.username, updated_at=now,
                                               folder=export_cases.owned_dir(user.username, name)))
        else:
            seen = loads_json(old.sightings, [])
            values: dict[str, Any] = {"sightings": json.dumps(sorted({*seen, sighting_id})), "updated_at": now}
            if description is not None:
                values["description"] = description
            conn.execute(update(cases).where(cases.c.name == name, cases.c.created_by == user.username)
                         .values(**values))
        record(conn, "case_add_sighting", user_id=user.id, username=user.username, remote=remote,
               data={"case": name, "sighting": sighting_id, "created": old is None})
        row = own_row(conn, user, name)
    view = case_view(d, row, user)
    if view is None:  # the user's own case holding a camera or alert they may no longer see
        raise refuse(404, "not_found")
    return view


def case_zip(d: Dashboard, row: Any) -> Path:
    """The whole case as one ZIP (every export with its manifest, and the signed case manifest), made when
    the case changed since the last one."""
    folder = case_folder(d, row)
    stamp = (folder / "case.json").stat().st_mtime_ns
    tag = holds.read_json(folder / "case.json", {}).get("updated", {}).get("epoch", 0)
    cache = zip_cache(d)
    prefix = "case-" + hashlib.sha256(f"{row.created_by}\0{row.name}".encode()).hexdigest()[:20]
    dest = cache / f"{prefix}-{stamp}-{round(float(tag) * 1000)}.zip"
    if not dest.is_file():
        export_cases.zip_folder(folder, dest)
        for old in cache.glob(f"{prefix}-*.zip"):
            if old != dest:
                old.unlink(missing_ok=True)
    return dest


def case_download(d: Dashboard, user: User, name: str, owner: str | None = None) -> Path | None:
    """The whole case as one ZIP: the user's own case of that name, or (``owner``) a case of the command line
    or, for admins, anyone's, when the user may see every camera of every export in it; None otherwise."""
    with d.engine.connect() as conn:
        row = own_row(conn, user, name) if owner is None else conn.execute(
            select(cases).where(cases.c.name == name, cases.c.created_by == owner)).first()
    view = case_view(d, row, user) if row is not None else None
    if view is None or not view["download"]:
        return None
    return case_zip(d, row)


# ------------------------------------------------------------------------------------------ protected storage

def protected_storage(d: Dashboard, user: User, open_alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """Bytes of recordings retention must keep (held by exports, by open alerts, both together) for the
    user's cameras, and the bytes of export files on disk."""
    cfg = d.config()
    rec = Recordings(d.data_dir / cfg.recordings.dir)
    now = time.time()
    held = holds.all_holds(d.data_dir)

    def visible(cam: str) -> bool:
        c = cfg.cameras.get(cam)
        return user.all_cells() if c is None else user.sees_cell(c.grid_cell)

    def segments(ranges: dict[str, list[tuple[float, float]]]) -> dict[Path, int]:
        out: dict[Path, int] = {}
        for cam, rs in ranges.items():
            if not visible(cam):
                continue
            for s, e in rs:
                for seg in rec.segments(cam, s, min(e, now)):
                    out[seg.path] = seg.bytes
        return out
    # only the holds whose every camera the user sees: counts of other cells' evidence are not theirs to know
    held = {k: h for k, h in held.items()
            if all(visible(str(r.get("camera"))) for r in h.get("ranges", []))}
    by_exports = segments(holds.ranges_of(held))
    by_alerts = segments(alert_ranges(open_alerts))
    files = 0
    with d.engine.connect() as conn:
        for r in conn.execute(select(export_jobs.c.grid_cells, export_jobs.c.size_bytes)
                              .where(export_jobs.c.state.in_(("done", "released")))):
            if r.size_bytes and sees_all(user, loads_json(r.grid_cells, [""])):
                files += r.size_bytes
    return {"exports_bytes": sum(by_exports.values()), "alerts_bytes": sum(by_alerts.values()),
            "total_bytes": sum({**by_exports, **by_alerts}.values()), "segments": len({*by_exports, *by_alerts}),
            "holds": len(held), "open_alerts": len(open_alerts), "export_files_bytes": files}



# ------------------------------------------------------------------------------------------ timeline

def timeline(d: Dashboard, user: User, cams: list[str], t0: float, t1: float) -> dict[str, Any]:
    """Recorded ranges, gaps (with reasons), held ranges and alerts of ``cams`` (already checked) in [t0, t1]."""
    cfg = d.config()
    rec_dir = d.data_dir / cfg.recordings.dir
    rec = Recordings(rec_dir)
    held = holds.ranges_of(holds.all_holds(d.data_dir))
    out = []
    for c in cams:
        cam = cfg.cameras.get(c)
        out.append({"id": c, "name": cam.name if cam else c,
                    "ranges": [[round(s, 3), round(e, 3)] for s, e in rec.recorded_ranges(c, t0, t1)],
                    "gaps": [{"start": round(g.start, 3), "end": round(g.end, 3), "reason": g.reason}
                             for g in rec.gaps(c, t0, t1)],
                    "held": [[max(s, t0), min(e, t1)] for s, e in held.get(c, []) if s < t1 and e > t0]})
    with d.engine.connect() as conn:
        rows = conn.execute(select(alerts.c.id, alerts.c.camera_id, alerts.c.start_time, alerts.c.end_time,
                                   alerts.c.kind, alerts.c.severity, alerts.c.state)
                            .where(alerts.c.camera_id.in_(cams), alerts.c.start_time < t1,
                                   alerts.c.start_time >= t0 - 86400)
                            .order_by(alerts.c.start_time).limit(2000)).all()
    marks = [{"alert_id": r.id, "camera": r.camera_id, "start_time": r.start_time, "end_time": r.end_time,
              "kind": r.kind, "severity": r.severity, "state": r.state}
             for r in rows if r.end_time is None or r.end_time >= t0]
    return {"start": t0, "end": t1, "now": time.time(), "cameras": out, "alerts": marks}
