"""The zone editor's service: the camera's geometry as in the file, the save, the picture and the preview.

The text editing is ``pipeline.config.edit``'s (text in, text out); here the file is read, the
version compared, the edit validated with ``pipeline.analyse.models.validate_config`` (the function
``sharpeye check`` and ``sharpeye run`` use), the old file copied to ``<name>.bak`` and the new one
moved over it (``os.replace``: readers see the old file or the new one, never half of one).  The
workers watch the config's mtime, so a saved zone applies within a couple of seconds.

The picture under the drawing is one JPEG from the worker's live seam (docs/live.md, the ``jpeg``
format: the camera is never dialled a second time), else the camera's newest alert snapshot, else
none.  The preview's detections come from the seam's overlay channel.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from starlette.concurrency import run_in_threadpool

from dashboard.context import Dashboard
from dashboard.services.live import live_seams  # the camera's worker, on this machine or (cluster) its owner
from dashboard.users import User
from history.audit import record
from pipeline.analyse.models import validate_config
from pipeline.config import edit
from pipeline.config.edit import GeometryEdit, geometry
from pipeline.config.schema import CameraConfig
from pipeline.live import protocol
from pipeline.live.protocol import LiveError

log = logging.getLogger("sharpeye.dashboard.zones")
FRAME_TIMEOUT_S = 5.0
PREVIEW_AUDIT_S = 60.0
DETECTIONS_TIMEOUT_S = 3.0  # an overlay comes with every analysed frame (detect_fps); idle cameras send none
MAX_DIFF_CHARS = 20_000  # the audit row keeps the diff; a whole-file rewrite is cut here
_save_lock = threading.Lock()  # one save at a time in this process; the version check covers other writers


class Refused(Exception):
    """A request the editor turns down: the route answers ``status`` with ``code`` and ``extra``."""

    def __init__(self, status: int, code: str, **extra: Any):
        super().__init__(code)
        self.status, self.code, self.extra = status, code, extra


# ------------------------------------------------------------------------------------------ reading the file

def config_path(d: Dashboard) -> Path:
    path = d.config().path
    if path is None:
        raise Refused(409, "no_config_file")
    return Path(path).resolve()  # the file itself: replacing a symlink to it would cut the link


def read(path: Path) -> tuple[bytes, dict[str, Any]]:
    """The file's bytes and its data (plain YAML: the page shows what is on disk, valid or not)."""
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise Refused(422, "config_unreadable", problems=[f"{path}: {' '.join(str(e).split())}"]) from None
    return raw, data if isinstance(data, dict) else {}


def camera_entry(data: dict[str, Any], camera_id: str, user: User) -> dict[str, Any]:
    cams = data.get("cameras")
    cam = cams.get(camera_id) if isinstance(cams, dict) else None
    if not isinstance(cam, dict) or not user.sees_cell(str(cam.get("grid_cell"))):
        raise Refused(404, "not_found")
    return cam


def rules(cam: dict[str, Any]) -> list[dict[str, Any]]:
    rules = cam.get("rules")
    return [{"id": str(rid), "kind": r.get("kind"), "zone": r.get("zone"), "line": r.get("line"),
             "labels": r.get("labels")} for rid, r in (rules.items() if isinstance(rules, dict) else [])
            if isinstance(r, dict)]


# ------------------------------------------------------------------------------------------ validate, then replace

def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)



@dataclass
class Saved:
    changed: bool
    version: str
    before: dict[str, Any]
    after: dict[str, Any]
    diff: str
    backup: str | None
    grid_cell: str


def save_geometry(path: Path, camera_id: str, geo: GeometryEdit, expected: str, user: User) -> Saved:
    """Edit, validate, back up, replace; raises :class:`Refused` (409 changed, 422 invalid, 404 not theirs)."""
    with _save_lock:
        raw, data = read(path)
        if edit.version(raw) != expected:
            raise Refused(409, "config_changed", version=edit.version(raw))
        cam = camera_entry(data, camera_id, user)
        before, cell = geometry(cam), str(cam.get("grid_cell"))
        text = raw.decode("utf-8")
        try:
            new_text = edit.edit_camera(text, camera_id, geo)
        except ValueError as e:
            raise Refused(422, "config_unreadable", problems=[f"{path}: {e}"]) from None
        if new_text == text:
            return Saved(False, edit.version(raw), before, before, "", None, cell)
        problems = edit.check_text(path, new_text, validate_config)
        if problems:
            raise Refused(422, "config_invalid", problems=problems, excerpt=edit.excerpt(path, new_text, problems))
        mode = path.stat().st_mode & 0o7777
        backup = path.with_name(path.name + ".bak")
        _write_atomic(backup, raw, mode)
        new_raw = new_text.encode("utf-8")
        _write_atomic(path, new_raw, mode)
        after = geometry(camera_entry(yaml.safe_load(new_text), camera_id, user))
        return Saved(True, edit.version(new_raw), before, after, edit.diff(path, text, new_text), str(backup), cell)


async def save(d: Dashboard, user: User, camera_id: str, geo: GeometryEdit, expected: str,
               remote: str | None) -> Saved:
    """Save the camera's geometry into the config file (see :func:`save_geometry`); a change is audited."""
    path = config_path(d)
    saved = await run_in_threadpool(save_geometry, path, camera_id, geo, expected, user)
    if saved.changed:
        def _audit() -> None:
            with d.engine.begin() as conn:
                record(conn, "edit_zones", user_id=user.id, username=user.username, grid_cell_id=saved.grid_cell,
                       data={"camera": camera_id, "file": str(path), "before": saved.before, "after": saved.after,
                             "diff": saved.diff[:MAX_DIFF_CHARS]}, remote=remote)
        await run_in_threadpool(_audit)
        log.info("%s edited the zones of camera %s in %s", user.username, camera_id, path)
    return saved


# ------------------------------------------------------------------------------------------ the picture

async def _first_frame(d: Dashboard, camera_id: str, fmt: str, kind: bytes, timeout: float) -> bytes | None:
    """The first ``kind`` frame of the camera's live stream in ``fmt`` from the worker that runs it, or None when
    no worker answers within ``timeout``."""
    try:
        stream = await protocol.open_stream(await live_seams(d, camera_id), camera_id, "sub", fmt)
    except LiveError:
        return None
    try:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            got, payload = await asyncio.wait_for(stream.read(), left)
            if got == kind:
                return payload
        return None
    except (TimeoutError, LiveError, OSError):
        return None
    finally:
        await stream.close()


async def live_jpeg(d: Dashboard, camera_id: str) -> bytes | None:
    """One JPEG from the worker that runs the camera (its own packets, decoded for JPEG viewers only)."""
    return await _first_frame(d, camera_id, "jpeg", protocol.JPEG, FRAME_TIMEOUT_S)


def newest_snapshot(d: Dashboard, camera_id: str) -> Path | None:
    """The camera's newest alert snapshot: newest day folder first, newest file in it."""
    root = d.data_dir / "snapshots" / camera_id
    try:
        days = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True)
    except OSError:
        return None
    for day in days:
        files = [p for p in day.glob("*.jpg") if p.is_file()]
        if files:
            return max(files, key=lambda p: p.stat().st_mtime)
    return None


async def live_overlay(d: Dashboard, camera_id: str, timeout: float) -> dict[str, Any] | None:
    """The next detection overlay of the worker that runs the camera (objects with relative boxes), or None.

    The overlay channel of the live seam carries the tracked objects of every analysed frame while
    somebody watches; subscribing here makes the worker mux the stream for a moment (a few ms of a
    core), the video bytes are dropped.
    """
    try:
        payload = await _first_frame(d, camera_id, "fmp4", protocol.OVERLAY, timeout)
        return None if payload is None else dict(json.loads(payload))
    except ValueError:  # a malformed frame or overlay
        return None


def rule_params(cam: CameraConfig) -> list[dict[str, Any]]:
    """The rules that run on the camera, with every default resolved: what the page's preview tests.

    Only the per-object tests of ``pipeline.analyse.rules`` (labels, score, box size, zone by
    the anchor, the side of a line); timing (inertia, dwell, for_s) and schedules are not judged
    from one frame, the page says so.
    """
    out = []
    for rid, r in cam.effective_rules().items():
        d = r.model_dump()
        out.append({"id": rid, "kind": d["kind"], "labels": list(d["labels"]),
                    "min_score": d["min_score"] if d["min_score"] is not None else cam.min_score,
                    "min_box": list(d["min_box"]), "zone": d.get("zone"), "line": d.get("line"),
                    "max_count": d.get("max_count"), "debounce": d.get("debounce"), "scheduled": bool(d["schedule"])})
    return out



_audited: dict[tuple[int, str], float] = {}


def audit_due(user_id: int, camera_id: str) -> bool:
    """One audit row a minute per engineer and camera while the preview polls (not one every 1.5 s)."""
    now = time.monotonic()
    if now - _audited.get((user_id, camera_id), -PREVIEW_AUDIT_S) < PREVIEW_AUDIT_S:
        return False
    _audited[(user_id, camera_id)] = now
    if len(_audited) > 10_000:
        _audited.clear()
    return True



# ------------------------------------------------------------------------------------------ what the routes call

def _cell(cfg: Any, cell_id: Any) -> dict[str, Any]:
    cell = cfg.grid_cells.get(str(cell_id))
    return {"id": cell_id, "name": cell.name if cell else cell_id}


async def editable_cameras(d: Dashboard, user: User) -> dict[str, Any]:
    """The cameras this engineer may edit (from the file on disk: disabled ones too)."""
    path = config_path(d)
    _raw, data = await run_in_threadpool(read, path)
    cfg = d.config()
    cams: dict[Any, Any] = data["cameras"] if isinstance(data.get("cameras"), dict) else {}
    out = [{"id": str(cid), "name": str(cam.get("name", cid)), "grid_cell": _cell(cfg, cam.get("grid_cell"))}
           for cid, cam in cams.items() if isinstance(cam, dict) and user.sees_cell(str(cam.get("grid_cell")))]
    return {"file": path.name, "cameras": out}


async def camera_geometry(d: Dashboard, user: User, camera_id: str) -> dict[str, Any]:
    """The camera's zones, lines and masks as in the file now, its rules and the file's version."""
    path = config_path(d)
    raw, data = await run_in_threadpool(read, path)
    cam = camera_entry(data, camera_id, user)
    return {"camera": {"id": camera_id, "name": str(cam.get("name", camera_id)), "grid_cell": cam.get("grid_cell")},
            "file": path.name, "version": edit.version(raw), **geometry(cam), "rules": rules(cam)}


def _audit_view(d: Dashboard, user: User, action: str, cell: str, data: dict[str, Any], remote: str | None) -> None:
    with d.engine.begin() as conn:  # footage seen is logged, as on the wall
        record(conn, action, user_id=user.id, username=user.username, grid_cell_id=cell, data=data, remote=remote)


async def frame(d: Dashboard, user: User, camera_id: str, remote: str | None) -> dict[str, Any]:
    """A picture to draw on: live (the worker's seam), else the newest alert snapshot, else none."""
    _raw, data = await run_in_threadpool(read, config_path(d))
    cam = camera_entry(data, camera_id, user)
    jpeg = await live_jpeg(d, camera_id)
    source, taken = "live", time.time()
    if jpeg is None:
        snap = await run_in_threadpool(newest_snapshot, d, camera_id)
        if snap is None:
            return {"source": "none", "image": None, "time": None}
        jpeg, source, taken = await run_in_threadpool(snap.read_bytes), "snapshot", snap.stat().st_mtime
    await run_in_threadpool(_audit_view, d, user, "view_live" if source == "live" else "view_snapshot",
                            str(cam.get("grid_cell")), {"camera": camera_id, "format": "jpeg",
                                                        "purpose": "zone_editor"}, remote)
    return {"source": source, "time": taken, "image": "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()}


async def detections(d: Dashboard, user: User, camera_id: str, picture: bool, remote: str | None) -> dict[str, Any]:
    """The worker's newest detections on the camera and its rules with defaults resolved (the preview);
    with ``picture`` a live JPEG of the same moment too."""
    _raw, data = await run_in_threadpool(read, config_path(d))
    entry = camera_entry(data, camera_id, user)  # 404 outside the engineer's cells
    cam = d.config().cameras.get(camera_id)
    overlay = jpeg = None
    if cam is not None and cam.enabled:
        if picture:
            overlay, jpeg = await asyncio.gather(live_overlay(d, camera_id, DETECTIONS_TIMEOUT_S),
                                                 live_jpeg(d, camera_id))
        else:
            overlay = await live_overlay(d, camera_id, DETECTIONS_TIMEOUT_S)
    if jpeg is not None and audit_due(user.id, camera_id):  # once a minute per camera while the preview runs
        await run_in_threadpool(_audit_view, d, user, "view_live", str(entry.get("grid_cell")),
                                {"camera": camera_id, "format": "jpeg", "purpose": "zone_preview"}, remote)
    objects = [{"id": o.get("id"), "label": o.get("label"), "score": o.get("score"), "box": o.get("box")}
               for o in (overlay or {}).get("objects", []) if isinstance(o, dict)]
    return {"source": "live" if overlay is not None else "none", "time": time.time(),
            "received": (overlay or {}).get("received"), "objects": objects,
            "image": "data:image/jpeg;base64," + base64.b64encode(jpeg).decode() if jpeg is not None else None,
            "rules": rule_params(cam) if cam is not None else [], "min_score": cam.min_score if cam else None}
