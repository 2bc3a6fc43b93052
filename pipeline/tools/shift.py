"""A duty shift, simulated: the demo cameras through the real pipeline and dashboard, with a scripted operator.

``sharpeye bench shift`` (cli/shift.py) calls :func:`run_shift`.  What it does, like ``scripts/demo`` but in
a private work folder, on free ports:

1. serves the demo clips as RTSP cameras (``scripts/camsim.py``): ``lobby`` (people walking in one by one:
   intrusion, loitering and crowding on the floor) and ``parking`` (cars), each with a main stream
   (recorded) and a sub-stream (analysed); with ``busy`` / ``night`` also the 2x2 busy street mosaic of
   ``scripts/make_busy.py`` by day and by night (``street``, ``night``: intrusion per tile, crowding);
2. starts ``sharpeye run`` on the demo config (``streams.yaml``, its procedures and rules) rewritten for the
   simulator, a data folder of its own and, when asked, another ``alerts.incident_window_s``;
3. reads every message of the bus (the alert ids raised) and, unless ``operator`` is off, logs in to the
   dashboard as an operator and works the room over its HTTP API as a person would: acknowledges each
   room item ``ack_after_s`` after it appeared, then every ``step_s``: dispatches the high and critical
   ones, walks the officer's steps (签收, 到场, 反馈) through the officer link the dispatch answers with,
   and closes with a classification (genuine after the feedback; false alarm for the rest);
4. after ``minutes`` of streaming, takes the room's list (``GET /api/alerts``: open items per camera),
   stops the cameras (the end of the footage) and lets the operator clear the queue, timing it;
5. checks that every alert id raised on the bus is stored in the history database, and counts room items
   with grouping (incidents) and without (every alert its own item, as with ``incident_window_s: 0``),
   per camera and per camera-hour, and the minutes items spent past a step's escalation deadline.

The history database is read read-only with plain SQL (this tool sits below ``history/`` in the layers, and
reads the tables as an auditor would); the dashboard is driven only through HTTP, the pipeline only
through its command line and the bus.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import runpy
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import yaml
from sqlalchemy import create_engine, text

from pipeline.publish import bus
from pipeline.runtime.procs import start_child
from pipeline.tools.simulator import RtspSimulator, camsim_unavailable, free_port

log = logging.getLogger("sharpeye.shift")
ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = ROOT / "streams.yaml"
DEMO_CLIPS = {"lobby": "one-by-one-person-detection", "parking": "car-detection"}
OPEN_STATES = ("new", "acknowledged", "dispatched")
SEVERITY_LIMITS = ("acknowledge_s", "sign_for_s", "on_scene_s", "feedback_s")
# escalation defaults (pipeline/config/schema.py EscalationConfig), used when the config leaves them out
DEFAULT_LIMITS = {"acknowledge_s": {"low": 900, "medium": 300, "high": 120, "critical": 60},
                  "sign_for_s": {"low": 1200, "medium": 600, "high": 300, "critical": 180},
                  "on_scene_s": {"low": 3600, "medium": 1800, "high": 900, "critical": 600},
                  "feedback_s": {"low": 7200, "medium": 3600, "high": 1800, "critical": 1200}}
# step waited for -> (its limits, the column its clock starts from, the column that ends it)
STEP_CLOCKS = (("acknowledge_s", "start_time", "acknowledged_at"), ("sign_for_s", "dispatched_at", "signed_for_at"),
               ("on_scene_s", "signed_for_at", "on_scene_at"), ("feedback_s", "on_scene_at", "feedback_at"))
STREAMING_TIMEOUT_S = 300.0  # model load and first frames on a loaded two-core machine
STOP_TIMEOUT_S = 60.0
USER, PASSWORD = "shift-operator", "shift-operator-" + secrets.token_hex(8)


class SetupError(Exception):
    """The set-up could not start (no clips, no simulator, `sharpeye run` refused)."""


@dataclass
class ShiftPlan:
    minutes: float = 10.0
    busy: bool = False  # add the busy street mosaic by day
    night: bool = False  # add it by night
    operator: bool = True  # work the room; False: nobody touches it (the flood as it builds up)
    ack_after_s: float = 20.0  # the operator acknowledges an item this long after it appeared
    step_s: float = 5.0  # and does each next step this long after the one before
    window_s: float | None = None  # alerts.incident_window_s for the run (None: the config's, 120 s by default)
    clear_timeout_s: float = 300.0  # give up clearing the queue after this long past the end of the footage
    workdir: Path | None = None
    poll_s: float = 1.0


def _log(msg: str) -> None:
    print(f"[shift {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------- set-up


def clip_mounts(busy: bool, night: bool) -> dict[str, dict[str, Path]]:
    """camera → {"main": file, "sub": file (when there is a sub-stream)}; the demo's clips from ``.cache/clips``
    (scripts/setup makes the 640x360 sub-streams), the busy scenes from scripts/make_busy.py's cache."""
    folder = Path(os.environ.get("SHARPEYE_CACHE_DIR") or ROOT / ".cache") / "clips"
    mirror = Path(os.environ.get("SHARPEYE_ASSET_MIRROR") or ROOT.parent / "shared") / "clips"
    out: dict[str, dict[str, Path]] = {}
    for cam, name in DEMO_CLIPS.items():
        main = next((p for p in (folder / f"{name}.mp4", mirror / f"{name}.mp4") if p.is_file()), None)
        if main is None:
            raise SetupError(f"{folder / (name + '.mp4')} is missing: run scripts/setup")
        out[cam] = {"main": main}
        sub = folder / f"{name}.sub.mp4"
        if sub.is_file():
            out[cam]["sub"] = sub
    if busy or night:
        make: dict[str, Any] = runpy.run_path(str(ROOT / "scripts" / "make_busy.py"), run_name="make_busy")
        for cam, variant, wanted in (("street", "day", busy), ("night", "night", night)):
            if wanted:
                _log(f"busy scene ({variant}): from the cache or encoded now (a minute or two the first time)")
                out[cam] = {"main": Path(make["ensure_busy"](make["BusySpec"](variant=variant)))}
    return out


def _busy_camera(name: str, source: str) -> dict[str, Any]:
    """The mosaic's geometry (tests/quality_busy.yaml): per tile a floor for intrusion, one crowding rule."""
    zones: dict[str, Any] = {}
    rules: dict[str, Any] = {}
    for k in range(4):
        x0, y0 = 0.5 * (k % 2), 0.5 * (k // 2)
        zones[f"floor{k}"] = {"polygon": [[x0, y0 + 0.3], [x0 + 0.5, y0 + 0.3], [x0 + 0.5, y0 + 0.5],
                                          [x0, y0 + 0.5]]}
        rules[f"intrusion{k}"] = {"kind": "intrusion", "zone": f"floor{k}", "labels": ["person"],
                                  "severity": "high"}
    zones["everywhere"] = {"polygon": [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]}
    rules["crowd"] = {"kind": "crowding", "zone": "everywhere", "max_count": 3, "for_s": 5, "severity": "critical"}
    return {"name": name, "source": source, "grid_cell": "G-0101", "detect_fps": 5, "min_score": 0.5,
            "zones": zones, "rules": rules}


def shift_config(sim: RtspSimulator, mounts: dict[str, dict[str, Path]], port: int,
                 window_s: float | None) -> dict[str, Any]:
    """The demo config (streams.yaml) with the simulator's URLs, a data folder of its own and the dashboard's port."""
    cfg: dict[str, Any] = yaml.safe_load(DEMO_CONFIG.read_text())
    cfg["data_dir"] = "data"
    cfg.setdefault("dashboard", {}).update(host="127.0.0.1", port=port)
    cfg.pop("redis_url", None)
    for cam, streams in mounts.items():
        if cam in cfg["cameras"]:
            c = cfg["cameras"][cam]
            if "sub" in streams:
                c["source"], c["record_source"] = sim.url(f"{cam}/sub"), sim.url(f"{cam}/main")
            else:
                c["source"] = sim.url(f"{cam}/main")
                c.pop("record_source", None)
        else:
            label = {"street": "Busy street (2x2 mosaic)", "night": "Busy street at night (2x2 mosaic)"}[cam]
            cfg["cameras"][cam] = _busy_camera(label, sim.url(f"{cam}/main"))
    for cam in list(cfg["cameras"]):
        if cam not in mounts:
            del cfg["cameras"][cam]
    if window_s is not None:
        cfg.setdefault("alerts", {})["incident_window_s"] = window_s
    return cfg


# ----------------------------------------------------------------------------------------- the bus


class BusReader(threading.Thread):
    """Every alert id raised on the bus, by camera, read from the start of the stream (a fresh data folder)."""

    def __init__(self, url: str, keys: bus.BusKeys):
        super().__init__(name="shift-bus", daemon=True)
        self.url, self.keys = url, keys
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.alert_camera: dict[str, str] = {}
        self.messages = 0
        self.errors = 0
        self.last = "0-0"

    def run(self) -> None:
        r = bus.connect(self.url)
        while not self.stop_event.is_set():
            try:
                batch = bus.read_events(r, self.keys, self.last, count=500, block_ms=500)
            except redis.RedisError:
                self.errors += 1
                time.sleep(1.0)
                continue
            with self.lock:
                for sid, msg in batch:
                    self.last = sid
                    self.messages += 1
                    if msg.get("type") == "alert":
                        self.alert_camera.setdefault(str(msg["alert_id"]), str(msg["camera"]["id"]))

    def drain(self, timeout_s: float = 10.0) -> None:
        """Read up to the stream's current end, then stop."""
        r = bus.connect(self.url)
        newest = r.xrevrange(self.keys.events, count=1)
        end = newest[0][0].decode() if newest else "0-0"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.is_alive():
            with self.lock:
                if _sid_key(self.last) >= _sid_key(end):
                    break
            time.sleep(0.2)
        self.stop_event.set()
        self.join(5.0)

    def raised(self) -> dict[str, str]:
        with self.lock:
            return dict(self.alert_camera)


def _sid_key(sid: str) -> tuple[int, int]:
    ms, _, seq = sid.partition("-")
    return int(ms), int(seq or 0)


# ----------------------------------------------------------------------------------------- the operator


class HttpError(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status, self.body = status, body


class Dashboard:
    """The dashboard's HTTP API as the room page uses it: a session cookie and the CSRF token."""

    def __init__(self, base: str):
        self.base = base
        self.cookie: str | None = None
        self.csrf: str | None = None

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, session: bool = True) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if session and self.cookie:
            headers["Cookie"] = self.cookie
        if session and self.csrf and method != "GET":
            headers["X-CSRF-Token"] = self.csrf
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                raw = resp.read()
                if path == "/api/login":
                    cookie = resp.headers.get("Set-Cookie", "")
                    self.cookie = cookie.split(";", 1)[0] or None
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raise HttpError(e.code, e.read().decode(errors="replace")) from None

    def login(self, username: str, password: str) -> None:
        out = self._call("POST", "/api/login", {"username": username, "password": password}, session=False)
        self.csrf = out["csrf"]

    def items(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/alerts?limit=500")["alerts"])

    def act(self, alert_id: str, action: str, **extra: Any) -> dict[str, Any]:
        return dict(self._call("POST", f"/api/alerts/{alert_id}/actions", {"action": action, **extra}))

    def officer_link(self, alert_id: str) -> str:
        return str(self._call("POST", f"/api/alerts/{alert_id}/officer-link", {})["officer_link"])

    def officer_step(self, link: str, step: str) -> dict[str, Any]:
        """An officer step through the one-time link (no session: the token in the path is the key)."""
        token = link.rstrip("/").rsplit("/", 1)[-1]
        return dict(self._call("POST", f"/api/o/{token}/steps", {"step": step, "note": f"shift sim: {step}"},
                               session=False))


@dataclass
class Handling:
    """What the scripted operator knows of one room item."""

    seen_at: float
    due_at: float
    link: str | None = None
    done: list[str] = field(default_factory=list)
    closed_at: float | None = None


class Operator:
    """Works the room: each item acknowledged ``ack_after_s`` after it appeared, every next step ``step_s`` later.

    High and critical items are dispatched and walked through 签收, 到场, 反馈 by the officer's link, then
    closed as genuine; the others are closed as false alarms after the acknowledgement.  The next action
    follows the item's state in the room's list, so an action refused (another step landed first, the
    incident changed) is simply tried again at the next look."""

    def __init__(self, dash: Dashboard, ack_after_s: float, step_s: float):
        self.dash = dash
        self.ack_after_s, self.step_s = ack_after_s, step_s
        self.items: dict[str, Handling] = {}
        self.actions: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self.ack_latency: list[float] = []
        self.last_items: list[dict[str, Any]] = []

    def next_action(self, item: dict[str, Any]) -> str | None:
        state = item.get("state")
        sev = (item.get("occurrences") or {}).get("severity") or (item.get("rule") or {}).get("severity")
        step = (item.get("dispatch") or {}).get("step")
        if state == "new":
            return "acknowledge"
        if state == "acknowledged":
            return "dispatch" if sev in ("high", "critical") else "close"
        if state == "dispatched":
            return {"sent": "signed_for", "signed_for": "on_scene", "on_scene": "feedback", "feedback": "close"}.get(
                step or "sent")
        return None

    def turn(self, now: float) -> int:
        """One look at the room and every action due; returns the number of open items seen."""
        items = self.dash.items()
        self.last_items = items
        open_items = 0
        for item in items:
            if item.get("state") not in OPEN_STATES:
                continue
            open_items += 1
            aid = str(item["alert_id"])
            if item.get("version") is None:
                continue  # straight from the bus, not stored yet: the next look will have it
            h = self.items.setdefault(aid, Handling(seen_at=now, due_at=now + self.ack_after_s))
            if now < h.due_at:
                continue
            action = self.next_action(item)
            if action is None:
                continue
            try:
                self._do(aid, item, action, h, now)
            except HttpError as e:
                self.refused[f"{action}:{e.status}"] = self.refused.get(f"{action}:{e.status}", 0) + 1
                h.due_at = now + 1.0
                continue
            self.actions[action] = self.actions.get(action, 0) + 1
            h.done.append(action)
            h.due_at = now + self.step_s
            if action == "acknowledge":
                start = float(item.get("start_time") or now)
                self.ack_latency.append(max(0.0, time.time() - start))
            if action == "close":
                h.closed_at = now
                open_items -= 1
        return open_items

    def _do(self, aid: str, item: dict[str, Any], action: str, h: Handling, now: float) -> None:
        if action in ("acknowledge", "dispatch"):
            out = self.dash.act(aid, action)
            if action == "dispatch":
                h.link = out.get("officer_link")
        elif action in ("signed_for", "on_scene", "feedback"):
            if h.link is None:  # dispatched before this operator saw it, or the link was lost: a fresh one
                h.link = self.dash.officer_link(aid)
            try:
                self.dash.officer_step(h.link, action)
            except HttpError as e:
                if e.status == 404:
                    h.link = None  # ended or replaced: ask for a new one next time
                raise
        else:
            genuine = "feedback" in h.done or (item.get("dispatch") or {}).get("step") == "feedback"
            self.dash.act(aid, "close", classification="genuine" if genuine else "false_alarm",
                          note="shift simulation: officer's feedback received" if genuine
                          else "shift simulation: nothing to dispatch")


# ----------------------------------------------------------------------------------------- the database


def _limits(cfg: dict[str, Any]) -> dict[str, dict[str, float]]:
    esc = (cfg.get("dashboard") or {}).get("escalation") or {}
    return {k: {**DEFAULT_LIMITS[k], **(esc.get(k) or {})} for k in SEVERITY_LIMITS}


def stored_alerts(db_url: str) -> list[dict[str, Any]]:
    """Every stored alert with its incident and workflow times (read only, plain SQL)."""
    eng = create_engine(db_url)
    try:
        with eng.connect() as conn:
            rows = conn.execute(text(
                "SELECT id, camera_id, incident_id, severity, state, start_time, acknowledged_at, dispatched_at, "
                "signed_for_at, on_scene_at, feedback_at, closed_at, classification FROM alerts")).mappings().all()
            return [dict(r) for r in rows]
    finally:
        eng.dispose()


def overdue_s(row: dict[str, Any], limits: dict[str, dict[str, float]], now: float) -> float:
    """Seconds an incident spent past a step's escalation deadline: for each step, from its clock's start plus
    the limit for the severity to when the step was done (or the item closed, or ``now``)."""
    total = 0.0
    sev = row.get("severity") or "medium"
    for limit_key, since_col, done_col in STEP_CLOCKS:
        since = row.get(since_col)
        if since is None:
            continue
        end = row.get(done_col) or row.get("closed_at") or now
        total += max(0.0, float(end) - (float(since) + float(limits[limit_key].get(sev, limits[limit_key]["medium"]))))
    return total


def room_counts(rows: list[dict[str, Any]], limits: dict[str, dict[str, float]], now: float,
                camera_hours: float) -> dict[str, dict[str, Any]]:
    """Per camera: alerts (room items without grouping), incidents (with), per camera-hour, overdue minutes."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        c = out.setdefault(r["camera_id"], {"alerts": 0, "incidents": 0, "open_incidents": 0, "overdue_min": 0.0})
        c["alerts"] += 1
        if (r.get("incident_id") or r["id"]) == r["id"]:
            c["incidents"] += 1
            c["open_incidents"] += r.get("state") in OPEN_STATES
            c["overdue_min"] += overdue_s(r, limits, now) / 60.0
    for c in out.values():
        c["overdue_min"] = round(c["overdue_min"], 1)
        c["items_per_camera_hour_without_grouping"] = round(c["alerts"] / camera_hours, 1) if camera_hours else None
        c["items_per_camera_hour_with_grouping"] = round(c["incidents"] / camera_hours, 1) if camera_hours else None
    return out


# ----------------------------------------------------------------------------------------- the run


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _wait(pred: Callable[[], bool], timeout: float, what: str, run: subprocess.Popen[bytes], run_log: Path) -> float:
    t0 = time.monotonic()
    while not pred():
        if run.poll() is not None:
            raise SetupError(f"sharpeye run exited with {run.returncode} while waiting for {what}:\n{_tail(run_log)}")
        if time.monotonic() - t0 > timeout:
            raise SetupError(f"no {what} after {timeout:.0f} s:\n{_tail(run_log)}")
        time.sleep(0.5)
    return time.monotonic() - t0


def _stop(run: subprocess.Popen[bytes]) -> int | None:
    """SIGINT, as Ctrl-C; the supervisor stops its children. SIGKILL of its process group after a minute."""
    if run.poll() is None:
        run.send_signal(signal.SIGINT)
        try:
            run.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _log(f"sharpeye run did not stop within {STOP_TIMEOUT_S:.0f} s: killing its process group")
            try:
                os.killpg(run.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            run.wait()
    return run.returncode


def _open_by_camera(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for it in items:
        cam = str(it.get("camera_id") or (it.get("camera") or {}).get("id"))
        c = out.setdefault(cam, {"items": 0, "open": 0, "occurrences_open": 0, "overdue_open": 0})
        c["items"] += 1
        if it.get("state") in OPEN_STATES:
            c["open"] += 1
            c["occurrences_open"] += int((it.get("occurrences") or {}).get("count", 1))
            c["overdue_open"] += bool(it.get("overdue"))
    return out


def _add_user(cfg_path: Path) -> None:
    add = subprocess.run([sys.executable, "-m", "cli.main", "users", "add", USER, "--config", str(cfg_path),
                          "--role", "operator", "--cells", "*", "--display-name", "Shift simulation",
                          "--password-stdin", "--replace"], input=PASSWORD + "\n", capture_output=True, text=True,
                         cwd=ROOT, timeout=180)
    if add.returncode != 0:
        raise SetupError(f"sharpeye users add failed: {add.stderr.strip()[-500:]}")


def run_shift(plan: ShiftPlan, work: Path) -> dict[str, Any]:
    """Run one simulated shift in ``work``; returns the report (see the module docstring)."""
    os.environ.setdefault("SHARPEYE_ASSET_MIRROR", str(ROOT.parent / "shared"))
    if reason := camsim_unavailable():
        raise SetupError(f"RTSP simulator unavailable: {reason}")
    mounts = clip_mounts(plan.busy, plan.night)
    sim = RtspSimulator({f"{cam}/{s}": str(p) for cam, streams in mounts.items() for s, p in streams.items()},
                        lean=True)
    run: subprocess.Popen[bytes] | None = None
    reader: BusReader | None = None
    run_log = work / "run.log"
    try:
        sim.start()
        port = free_port()
        cfg = shift_config(sim, mounts, port, plan.window_s)
        cfg_path = work / "streams.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
        _add_user(cfg_path)
        data = work / "data"
        with open(run_log, "wb") as out:
            argv = [sys.executable, "-m", "cli.main", "run", "--config", str(cfg_path), "--port", str(port)]
            run = start_child(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        (work / "shift.pids").write_text(f"camsim {sim.proc.pid if sim.proc else 0}\nrun {run.pid}\n")
        _log(f"cameras {sorted(mounts)} on {sim.base_url}; sharpeye run pid {run.pid}, dashboard port {port}, "
             f"work folder {work}")
        url_file = data / "redis" / "url"
        _wait(url_file.exists, 60, "bus URL file", run, run_log)
        url = url_file.read_text().strip()
        keys = bus.BusKeys(prefix=(cfg.get("bus") or {}).get("prefix", "sharpeye"))
        reader = BusReader(url, keys)
        reader.start()
        r = bus.connect(url)

        def streaming() -> bool:
            try:
                st = bus.camera_statuses(r, keys)
            except redis.RedisError:
                return False
            return all(c in st and st[c].online for c in mounts)

        took = _wait(streaming, STREAMING_TIMEOUT_S, "all cameras streaming", run, run_log)
        base = f"http://127.0.0.1:{port}"
        dash = Dashboard(base)
        _wait(lambda: _up(base), 60, "dashboard", run, run_log)
        dash.login(USER, PASSWORD)
        op = Operator(dash, plan.ack_after_s, plan.step_s) if plan.operator else None
        t_stream = time.monotonic()
        wall_start = time.time()
        t_end = t_stream + plan.minutes * 60.0
        _log(f"all cameras streaming after {took:.0f} s; shift of {plan.minutes:g} min, operator "
             f"{'on' if op else 'off'}")
        max_open = 0
        next_progress = t_stream + 60.0
        while (now := time.monotonic()) < t_end:
            if run.poll() is not None:
                raise SetupError(f"sharpeye run exited with {run.returncode} during the shift:\n{_tail(run_log)}")
            try:
                if op is not None:
                    max_open = max(max_open, op.turn(now))
            except (HttpError, OSError, http.client.HTTPException) as e:
                _log(f"room not readable this turn: {e}")
            if now >= next_progress:
                _log(f"{(now - t_stream) / 60:.0f} min: {len(reader.raised())} alerts raised"
                     + (f", actions {op.actions}" if op else ""))
                next_progress += 60.0
            time.sleep(max(0.0, plan.poll_s - (time.monotonic() - now)))
        shift_s = time.monotonic() - t_stream
        at_end = dash.items()  # the room's list as the shift ends: the open items per camera
        wall_end = time.time()
        load = os.getloadavg()
        _log("end of the footage: cameras stopped; the operator clears the queue")
        sim.stop()
        clear_s: float | None = None
        if op is not None:
            t_stop = time.monotonic()
            empty_since: float | None = None
            while time.monotonic() - t_stop < plan.clear_timeout_s:
                now = time.monotonic()
                try:
                    left = op.turn(now)
                except (HttpError, OSError, http.client.HTTPException) as e:
                    _log(f"room not readable this turn: {e}")
                    left = 1
                if left:
                    empty_since = None
                elif empty_since is None:
                    empty_since = now
                # empty for a few looks, past the alerts' end time (alerts.end_after_s): nothing is on its way
                if empty_since is not None and now - empty_since >= 3 * plan.poll_s and now - t_stop > 15.0:
                    clear_s = round(empty_since - t_stop, 1)
                    break
                time.sleep(max(0.0, plan.poll_s - (time.monotonic() - now)))
        # every alert raised on the bus must be stored: wait for the archiver, then compare
        reader.drain()
        raised = reader.raised()
        db_url = (cfg.get("dashboard") or {}).get("database_url") or f"sqlite:///{data / 'history.sqlite'}"
        deadline = time.monotonic() + 90.0
        while True:
            rows = stored_alerts(db_url)
            stored = {r["id"] for r in rows}
            missing = sorted(set(raised) - stored)
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(2.0)
        camera_hours = shift_s / 3600.0
        # overdue counts until the queue was cleared, or (nobody working the room) until the shift ended
        counts = room_counts(rows, _limits(cfg), time.time() if op is not None else wall_end, camera_hours)
        stop_code = _stop(run)
        run = None
        report: dict[str, Any] = {
            "minutes": plan.minutes, "shift_s": round(shift_s, 1), "cameras": sorted(mounts),
            "camera_hours_each": round(camera_hours, 4), "started": wall_start, "ended": wall_end,
            "incident_window_s": plan.window_s if plan.window_s is not None
            else (cfg.get("alerts") or {}).get("incident_window_s", 120.0),
            "operator": {"on": op is not None, "ack_after_s": plan.ack_after_s, "step_s": plan.step_s,
                         "actions": dict(op.actions) if op else {}, "refused": dict(op.refused) if op else {},
                         "ack_latency_s_mean": round(sum(op.ack_latency) / len(op.ack_latency), 1)
                         if op and op.ack_latency else None,
                         "ack_latency_s_max": round(max(op.ack_latency), 1) if op and op.ack_latency else None,
                         "max_open_items": max_open if op else None,
                         "clear_queue_s": clear_s, "cleared": clear_s is not None if op else None},
            "alerts_raised": len(raised), "alerts_stored": len(stored & set(raised)),
            "alerts_stored_total": len(stored), "missing_from_history": missing[:50],
            "raised_equals_stored": not missing,
            "raised_by_camera": _count(raised.values()),
            "per_camera": counts, "room_at_end": _open_by_camera(at_end),
            "load_average": [round(x, 2) for x in load], "cpus": os.cpu_count(),
            "bus_messages": reader.messages, "bus_read_errors": reader.errors, "run_exit": stop_code,
        }
        return report
    finally:
        if reader is not None:
            reader.stop_event.set()
        if run is not None:
            _stop(run)
        sim.stop()


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _up(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=5) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def format_report(doc: dict[str, Any]) -> str:
    """The report as a few lines of text."""
    op = doc["operator"]
    lines = [f"duty shift: {doc['minutes']:g} min ({doc['shift_s']:.0f} s streamed), cameras "
             f"{', '.join(doc['cameras'])}, incident window {doc['incident_window_s']:g} s, load average "
             f"{' '.join(f'{x:g}' for x in doc['load_average'])} on {doc['cpus']} CPUs", ""]
    head = (f"{'camera':<10}{'alerts':>8}{'incidents':>11}{'items/cam-h no grouping':>25}"
            f"{'items/cam-h grouped':>21}{'overdue min':>13}{'open at end':>13}")
    lines += [head, "-" * len(head)]
    for cam in doc["cameras"]:
        c = doc["per_camera"].get(cam, {"alerts": 0, "incidents": 0, "overdue_min": 0.0,
                                        "items_per_camera_hour_without_grouping": 0,
                                        "items_per_camera_hour_with_grouping": 0})
        end = doc["room_at_end"].get(cam, {"open": 0})
        lines.append(f"{cam:<10}{c['alerts']:>8}{c['incidents']:>11}{c['items_per_camera_hour_without_grouping']:>25}"
                     f"{c['items_per_camera_hour_with_grouping']:>21}{c['overdue_min']:>13}{end['open']:>13}")
    lines.append("")
    lines.append(f"alerts raised on the bus {doc['alerts_raised']}, stored {doc['alerts_stored']}: "
                 + ("every one stored" if doc["raised_equals_stored"]
                    else f"MISSING {len(doc['missing_from_history'])}: {doc['missing_from_history'][:5]}"))
    if op["on"]:
        lines.append(f"operator: acknowledge after {op['ack_after_s']:g} s, a step every {op['step_s']:g} s; "
                     f"actions {op['actions']}; refused {op['refused'] or 'none'}; acknowledged "
                     f"{op['ack_latency_s_mean']} s after the start on average (max {op['ack_latency_s_max']}); "
                     f"at most {op['max_open_items']} open items; queue "
                     + (f"cleared {op['clear_queue_s']:g} s after the footage ended" if op["cleared"]
                        else "NOT cleared within the time given"))
    else:
        lines.append("operator: off (nobody handled the room)")
    return "\n".join(lines)
