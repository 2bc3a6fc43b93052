"""Exports and cases made on the command line, taken into the history database when the page reads its lists.

``sharpeye export`` (a worker-side tool: it never imports the dashboard and has no database) writes
its exports, cases and holds only as files under ``<data_dir>/exports``.  The page's lists and its
audit log come from the database, so without this module a command-line export or case would never
show in the page, and a ``sharpeye export release`` would leave the page's row "done" (held) forever.

:func:`sync` closes that gap from the dashboard's side of the wall (the dashboard may read the
export files): each export the folder holds that the database lacks becomes an ``export_jobs`` row
(state done, ``runner`` ``"cli"``, ``username`` ``"cli:<OS user>"``), each case a ``cases`` row, each with
one audit row (``export_cli`` / ``case_cli``); a done row whose hold ``holds.json`` no longer has is
marked released (``export_release_cli``).  Page-made exports (``exported_by.via == "dashboard"``) are
never imported: their rows are the page's, and one still finishing has its files before its row
says so.  Every insert is its own transaction keyed by a unique column (``export_id``, the case
name), so a second read, a second thread or a second dashboard host adds nothing twice.

Why it is throttled, and on what: a scan lists the export folder and reads the database, so it
runs at most every ``SCAN_EVERY_S`` -- unless ``holds.json``, the cases index or the folder itself
changed since the last scan (a few ``stat`` calls per read), which is exactly what the command line
touches; an export made or released a moment ago therefore shows at the next read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from dashboard.context import Dashboard
from history.audit import record
from history.schema import cases, export_jobs
from pipeline.config import Config
from pipeline.export import cases as export_cases
from pipeline.export import holds
from pipeline.export.manifest import hash_path
from pipeline.export.paths import CASES_DIR, UnsafeName, check_case_name, exports_root

log = logging.getLogger("sharpeye.dashboard.exports_import")

SCAN_EVERY_S = 30.0
RUNNER = "cli"  # export_jobs.runner of an imported row: never a host:pid, so fail_orphans leaves it alone
EXPORT_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")  # pipeline.export.job: compact UTC time + 6 hex
PAGE_VIA = "dashboard"


@dataclass
class _Throttle:
    lock: threading.Lock = field(default_factory=threading.Lock)
    last: float = float("-inf")
    stamp: tuple[int, ...] = ()


_throttles: dict[tuple[str, str], _Throttle] = {}
_throttles_lock = threading.Lock()


@dataclass
class SyncResult:
    exports: int = 0
    cases: int = 0
    released: int = 0
    scanned: bool = False


@dataclass(frozen=True)
class _Found:
    export_id: str
    path: Path  # the export's folder, or its ZIP
    manifest: dict[str, Any]
    files: list[dict[str, Any]]
    manifest_sha256: str
    size: int


def cli_user(name: str) -> str:
    """How the page names an OS user of the command line (never mistaken for an account of the page)."""
    return f"cli:{name}"[:64]


def _stamp(root: Path) -> tuple[int, ...]:
    """Modification times of what the command line changes (0: absent)."""
    out = []
    for p in (root, holds.holds_path(root.parent), export_cases.index_path(root.parent), root / CASES_DIR):
        try:
            out.append(p.stat().st_mtime_ns)
        except OSError:
            out.append(0)
    return tuple(out)


def sync(d: Dashboard, force: bool = False) -> SyncResult:
    """Import what the export folder holds that the database lacks (throttled; see the module docstring)."""
    key = (str(d.data_dir), str(d.engine.url))
    with _throttles_lock:
        th = _throttles.setdefault(key, _Throttle())
    root = exports_root(d.data_dir)
    stamp = _stamp(root)
    if not force and stamp == th.stamp and time.monotonic() - th.last < SCAN_EVERY_S:
        return SyncResult()
    if not th.lock.acquire(blocking=False):
        return SyncResult()  # another request of this process is scanning right now
    try:
        th.last, th.stamp = time.monotonic(), stamp
        if not root.is_dir():
            return SyncResult(scanned=True)
        return _scan(d, root)
    finally:
        th.lock.release()


def _scan(d: Dashboard, root: Path) -> SyncResult:
    res = SyncResult(scanned=True)
    cfg = d.config()
    with d.engine.connect() as conn:
        known = {r.export_id: r for r in conn.execute(
            select(export_jobs.c.id, export_jobs.c.export_id, export_jobs.c.state, export_jobs.c.runner,
                   export_jobs.c.path).where(export_jobs.c.export_id.is_not(None)))}
        # a case folder <cases>/<name> is taken by the row without a folder of its own (one per name)
        known_cases = set(conn.execute(select(cases.c.name).where(cases.c.folder.is_(None))).scalars())
    found = {f.export_id: f for f in _exports(root, set(known))}
    for name, folder in _case_folders(root):
        if name not in known_cases and _import_case(d, name, folder):
            res.cases += 1
    for f in found.values():
        if _import_export(d, cfg, f):
            res.exports += 1
    _fix_moved(d, root, known)
    res.released = _mark_released(d)
    if res.exports or res.cases or res.released:
        log.info("command-line exports imported: %d exports, %d cases, %d released", res.exports, res.cases,
                 res.released)
    return res


# ------------------------------------------------------------------------------------------ finding them

def _exports(root: Path, known: set[str]) -> list[_Found]:
    """Every finished command-line export under ``root`` (top level, and inside case folders) not in ``known``."""
    candidates: dict[str, Path] = {}
    places = [root] + [folder for _, folder in _case_folders(root)]
    for place in places:
        try:
            entries = sorted(place.iterdir())
        except OSError:
            continue
        for p in entries:
            eid = p.name[:-4] if p.name.endswith(".zip") else p.name
            if not EXPORT_ID_RE.match(eid) or eid in known or p.is_symlink():
                continue
            if p.suffix == ".zip" and p.is_file():
                candidates[eid] = p  # the ZIP wins over a folder of the same id (the folder is removed after)
            elif p.is_dir() and (p / "manifest.sig").is_file():
                candidates.setdefault(eid, p)
    out = []
    for eid, p in candidates.items():
        try:
            f = _read(eid, p)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
            log.warning("export %s at %s not imported: %s", eid, p, e)
            continue
        if f is not None:
            out.append(f)
    return out


def _read(eid: str, path: Path) -> _Found | None:
    """The export at ``path`` with its files and hashes; None when it is the page's (or not this id's)."""
    extra: dict[str, dict[str, Any]] = {}
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            for name in ("manifest.json", "manifest.sig"):
                data = z.read(f"{eid}/{name}")
                extra[name] = {"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                if name == "manifest.json":
                    doc = json.loads(data)
        size = path.stat().st_size
    else:
        doc = json.loads((path / "manifest.json").read_bytes())
        extra = {n: {"name": n, **hash_path(path / n)} for n in ("manifest.json", "manifest.sig")}
        size = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    if not isinstance(doc, dict) or doc.get("id") != eid:
        raise ValueError("its manifest names another export")
    if (doc.get("exported_by") or {}).get("via") == PAGE_VIA:
        return None
    files = [{"name": n, "bytes": h["bytes"], "sha256": h["sha256"]} for n, h in doc["files"].items()]
    files += list(extra.values())
    files.sort(key=lambda f: (not str(f["name"]).endswith(".mp4"), str(f["name"])))
    return _Found(eid, path, doc, files, str(extra["manifest.json"]["sha256"]), size)


def _case_folders(root: Path) -> list[tuple[str, Path]]:
    """(name, folder) of every case folder with a case manifest, names checked as the page checks them."""
    try:
        entries = sorted((root / CASES_DIR).iterdir())
    except OSError:
        return []
    out = []
    for p in entries:
        try:
            name = check_case_name(p.name)
        except UnsafeName:
            continue
        if p.is_dir() and not p.is_symlink() and (p / "case.json").is_file():
            out.append((name, p))
    return out


# ------------------------------------------------------------------------------------------ importing them

def _epoch(block: Any, default: float) -> float:
    try:
        return float(block["epoch"])
    except (KeyError, TypeError, ValueError):
        return default


def _import_case(d: Dashboard, name: str, folder: Path) -> bool:
    """A case the command line made: its row, and ``case_cli`` in the audit log naming the OS user."""
    try:
        doc = holds.read_json(folder / "case.json", {})
    except (OSError, ValueError) as e:
        log.warning("case %s not imported: %s", folder, e)
        return False
    mine = sorted((e for e in doc.get("exports", []) if isinstance(e, dict)
                   and (e.get("exported_by") or {}).get("via") != PAGE_VIA),
                  key=lambda e: _epoch(e.get("created"), 0.0))
    if not mine:
        return False  # a case only the page filled: its row is the page's to make
    os_user = str((mine[0].get("exported_by") or {}).get("user") or "unknown")
    now = time.time()
    created = _epoch(doc.get("created"), now)
    alerts = sorted(str(a) for a in doc.get("alerts", []) if a)
    try:
        with d.engine.begin() as conn:
            conn.execute(cases.insert().values(
                name=name, description=str(doc.get("description") or ""), alerts=json.dumps(alerts),
                created_at=created, created_by=cli_user(os_user), updated_at=_epoch(doc.get("updated"), created)))
            record(conn, "case_cli", username=cli_user(os_user),
                   data={"case": name, "os_user": os_user, "alerts": alerts,
                         "exports": [e.get("id") for e in mine], "created": (doc.get("created") or {}).get("utc")})
    except IntegrityError:
        return False  # another request or dashboard host imported it meanwhile
    return True


def _import_export(d: Dashboard, cfg: Config, f: _Found) -> bool:
    """One command-line export: a done row (``runner`` "cli") and ``export_cli`` in the audit log."""
    m = f.manifest
    by = m.get("exported_by") or {}
    os_user = str(by.get("user") or "unknown")
    cams = [str(c["id"]) for c in m.get("cameras", [])]
    cells = sorted({str(c.get("grid_cell") or (cfg.cameras[c["id"]].grid_cell if c["id"] in cfg.cameras else ""))
                    for c in m.get("cameras", [])})
    req = m.get("requested") or {}
    created = _epoch(m.get("created"), time.time())
    try:
        finished = (f.path / "manifest.json").stat().st_mtime if f.path.is_dir() else f.path.stat().st_mtime
    except OSError:
        finished = created
    alert_id = (m.get("alert") or {}).get("alert_id")
    case = m.get("case")
    warnings = _warnings(m)
    try:
        with d.engine.begin() as conn:
            if case is not None and conn.execute(select(cases.c.name).where(
                    cases.c.name == case, cases.c.folder.is_(None))).first() is None:
                case = None  # its case folder is gone (or was refused as a name): the export stands alone
            conn.execute(export_jobs.insert().values(
                id=f"cli-{f.export_id}", export_id=f.export_id, user_id=None, username=cli_user(os_user),
                cameras=json.dumps(cams), grid_cells=json.dumps(cells),
                start=_epoch(req.get("start"), created), end=_epoch(req.get("end"), created),
                alert_id=str(alert_id)[:128] if alert_id else None, case_name=case, precise=bool(m.get("precise")),
                state="done", progress=1.0, path=str(f.path), files=json.dumps(f.files),
                manifest_sha256=f.manifest_sha256, size_bytes=f.size,
                warnings=json.dumps(warnings, ensure_ascii=False), runner=RUNNER, created_at=created,
                started_at=created, finished_at=finished))
            record(conn, "export_cli", username=cli_user(os_user), alert_id=None,
                   grid_cell_id=cells[0] if len(cells) == 1 and cells[0] else None,
                   data={"job": f"cli-{f.export_id}", "export_id": f.export_id, "os_user": os_user,
                         "host": by.get("host"), "via": by.get("via"), "cameras": cams, "case": case,
                         "alert_id": alert_id, "start": (req.get("start") or {}).get("utc"),
                         "end": (req.get("end") or {}).get("utc"), "created": (m.get("created") or {}).get("utc"),
                         "bytes": f.size, "manifest_sha256": f.manifest_sha256})
    except IntegrityError:
        return False
    return True


def _warnings(m: dict[str, Any]) -> list[str]:
    """The manifest's gaps and skipped segments as the page lists them."""
    out = []
    for cam in m.get("cameras", []):
        if not cam.get("files"):
            out.append(f"{cam['id']}: nothing recorded in the range: no file")
        for g in cam.get("gaps", []):
            out.append(f"{cam['id']}: gap {g['start']['local']} to {g['end']['local']} ({g['seconds']:.1f} s): "
                       f"{g['reason']}")
        for s in cam.get("skipped_segments", []):
            out.append(f"{cam['id']}: corrupt segment skipped: {s['path']}: {s['reason']}")
    return out


def _fix_moved(d: Dashboard, root: Path, known: dict[str, Any]) -> None:
    """An imported folder that ``--zip`` then replaced by its ZIP (imported in between): the row follows it."""
    for eid, row in known.items():
        if row.runner != RUNNER or not row.path or Path(row.path).exists():
            continue
        z = root / f"{eid}.zip"
        if z.is_file():
            with d.engine.begin() as conn:
                conn.execute(update(export_jobs).where(export_jobs.c.id == row.id).values(
                    path=str(z), size_bytes=z.stat().st_size))


def _mark_released(d: Dashboard) -> int:
    """Done rows whose hold is gone from holds.json (``sharpeye export release``): released, and audited.

    Only when holds.json exists and reads: a missing or unreadable file says nothing about releases."""
    path = holds.holds_path(d.data_dir)
    try:
        if not path.is_file():
            return 0
        held = set(holds.all_holds(d.data_dir))
    except (OSError, ValueError) as e:
        log.warning("%s not read, releases not checked: %s", path, e)
        return 0
    root = exports_root(d.data_dir).resolve()
    with d.engine.connect() as conn:
        rows = conn.execute(select(export_jobs.c.id, export_jobs.c.export_id, export_jobs.c.alert_id,
                                   export_jobs.c.path)
                            .where(export_jobs.c.state == "done", export_jobs.c.export_id.is_not(None))).all()
    # only exports of this data directory: a host with another one has its own holds.json
    gone = [r for r in rows if r.export_id not in held and r.path and Path(r.path).resolve().is_relative_to(root)]
    released = 0
    for r in gone:
        with d.engine.begin() as conn:
            released += _release_row(conn, r)
    return released


def _release_row(conn: Connection, r: Any) -> int:
    now = time.time()
    n = conn.execute(update(export_jobs).where(export_jobs.c.id == r.id, export_jobs.c.state == "done").values(
        state="released", released_at=now, released_by=RUNNER)).rowcount
    if n:  # this process changed it (not another host, nor the page's own release meanwhile)
        record(conn, "export_release_cli", username=RUNNER, alert_id=r.alert_id,
               data={"job": r.id, "export_id": r.export_id,
                     "why": "its hold is no longer in holds.json (sharpeye export release)"})
    return 1 if n else 0
