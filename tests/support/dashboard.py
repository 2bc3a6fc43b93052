"""Helpers for the dashboard tests: a real PostgreSQL server, a dashboard and an archiver as child processes.

PostgreSQL runs from Debian's binaries in a temporary folder on a free loopback port; as root
it runs as the ``postgres`` user (``initdb`` refuses root).  The tests skip when the binaries
are missing (scripts/setup installs ``postgresql``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.publish import bus
from pipeline.tools.simulator import free_port
from tests.support.assets import ROOT
from tests.support.config import write_config


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class Postgres:
    """``initdb`` + ``postgres`` in a private folder; ``url`` is a SQLAlchemy URL with trust auth."""

    def __init__(self) -> None:
        bindir = _pg_bin()
        if bindir is None:
            raise FileNotFoundError("PostgreSQL binaries not found under /usr/lib/postgresql (apt install postgresql)")
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="sharpeye-pg-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://sharpeye@127.0.0.1:{self.port}/sharpeye"

    def start(self) -> str:
        data = self.dir / "data"
        subprocess.run(self.as_user + [str(self.bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "sharpeye",
                                       "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
        self.proc = subprocess.Popen(self.as_user + [
            str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.dir),
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.proc.stderr.read().decode()[-2000:]}")  # type: ignore
            r = subprocess.run([str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                               capture_output=True)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        subprocess.run(self.as_user + [str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                                       "-U", "sharpeye", "sharpeye"], check=True, capture_output=True)
        return self.url

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            # fast shutdown, sent to the process group: as root the server runs under runuser, which does not
            # pass SIGINT on (the session's end waited 15 s for nothing, then left the server running)
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the session."""
    if _pg_bin() is None:
        pytest.skip("PostgreSQL not installed (scripts/setup installs postgresql)")
    pg = Postgres()
    try:
        yield pg.start()
    finally:
        pg.stop()


def fresh_pg_database(server_url: str, name: str) -> str:
    """A new empty database on the test server, so tests do not see each other's rows."""
    from sqlalchemy import create_engine, text

    eng = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return server_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A migrated history database, once on SQLite and once on a fresh PostgreSQL database."""
    from history.db import open_database

    if request.param == "sqlite":
        eng = open_database(url=f"sqlite:///{tmp_path / 'h.sqlite'}")
    else:
        server = request.getfixturevalue("postgres_url")
        eng = open_database(url=fresh_pg_database(server, f"h{abs(hash(str(tmp_path))) % 10**9}"))
    yield eng
    eng.dispose()


def spawn(module: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m module args`` in its own session, output to ``log``."""
    fh = open(log, "ab")
    return subprocess.Popen([sys.executable, "-m", module, *args], stdout=fh, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=ROOT)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def stop_all(procs: Iterable[subprocess.Popen[bytes]], timeout: float = 15) -> None:
    """Stop several process groups together: thaw (a test may have frozen one) and SIGTERM them all, then
    wait for each, SIGKILL what is still there after ``timeout``."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGCONT)
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited {proc.returncode}: {log.read_text()[-3000:] if log else ''}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} not up after {timeout} s")


@dataclass(frozen=True)
class Served:
    """A running dashboard: its base URL, its log, and ``publish(msg)`` onto the config's bus."""

    base: str
    log: Path
    publish: Callable[[dict[str, Any]], object]


@dataclass(frozen=True)
class DashboardProcess:
    """A dashboard child process: its base URL, its log and the process."""

    base: str
    log: Path
    proc: subprocess.Popen[bytes]


@contextlib.contextmanager
def dashboard_process(cfg: Path, redis_url: str, folder: Path, timeout: float = 30) -> Iterator[DashboardProcess]:
    """``python -m dashboard`` for ``cfg`` on a free port, its log ``folder/dashboard.log``; it answers
    /healthz (within ``timeout`` s) when this yields and is stopped when it exits."""
    port = free_port()
    log = folder / "dashboard.log"
    dash = spawn("dashboard", "--config", str(cfg), "--redis", redis_url, "--port", str(port), log=log)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz", timeout, dash, log)
        yield DashboardProcess(base, log, dash)
    finally:
        stop(dash)


@contextlib.contextmanager
def served_dashboard(cfg: Path, redis_url: str, prefix: str, folder: Path) -> Iterator[Served]:
    """A dashboard process on a free port and an archiver for ``cfg`` (bus ``prefix``), logs in ``folder``;
    both are up (the dashboard answers /healthz) when it yields and stopped when it exits."""
    arch = spawn("history.archiver", "--config", str(cfg), "--redis", redis_url, log=folder / "archiver.log")
    r = bus.connect(redis_url)
    keys = bus.BusKeys(prefix)
    try:
        with dashboard_process(cfg, redis_url, folder) as dash:
            yield Served(dash.base, dash.log, lambda m: bus.publish_event(r, keys, m, 10_000))
    finally:
        stop(arch)


CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright never downloads a browser here


@contextlib.contextmanager
def recorded_room(folder: Path, redis_url: str, tag: str, *users: tuple[str, ...]) -> Iterator[Served]:
    """A served dashboard on the two-cell config (see :func:`write_dashboard_config`) with the lobby camera
    recorded from ``T0`` for 30 s and these users (``add_login`` arguments after the config); its own bus
    prefix starting with ``tag``.  For browser tests: fails when Chromium is missing."""
    from tests.support.record import record_clip

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian chromium not installed at {CHROMIUM} (scripts/setup installs it)")
    prefix = f"{tag}{time.monotonic_ns()}"
    cfg = write_dashboard_config(folder, f"bus: {{prefix: {prefix}}}")
    record_clip(folder)
    for u in users:
        add_login(cfg, *u)
    with served_dashboard(cfg, redis_url, prefix, folder) as room:
        yield room


@contextlib.contextmanager
def served_site(folder: Path, redis_url: str, tag: str, cameras: dict[str, Any], cells: dict[str, Any],
                *users: tuple[str, ...], **top: Any) -> Iterator[Served]:
    """A served dashboard (see :func:`served_dashboard`) on a config of these cameras and grid cells, data in
    ``folder/data``, Shanghai time, its own bus prefix starting with ``tag``, ``top`` for more sections; with
    these users (``add_login`` arguments after the config)."""
    prefix = f"{tag}{time.monotonic_ns()}"
    cfg = write_config(folder, cameras, grid_cells=cells, data_dir="data", timezone="Asia/Shanghai",
                       bus={"prefix": prefix}, **top)
    for u in users:
        add_login(cfg, *u)
    with served_dashboard(cfg, redis_url, prefix, folder) as room:
        yield room


def browser_login(browser: Any, base: str, name: str, path: str = "/login", password: str | None = None,
                  **context: Any) -> Any:
    """A new 1400x900 browser page signed in as ``name``: opens ``path`` (the log-in page, or a page that
    sends there), signs in and waits for the command room.  ``context`` goes to ``new_context``."""
    page = browser.new_context(viewport={"width": 1400, "height": 900}, **context).new_page()
    page.goto(base + path)
    assert urllib.parse.urlsplit(page.url).path == "/login", page.url
    page.fill("#username", name)
    page.fill("#password", PASSWORD if password is None else password)
    page.click("#submit")
    page.wait_for_url(base + "/", timeout=60_000)  # argon2 log-in on a loaded 2-core machine
    return page


TWO_CELLS_YAML = """\
data_dir: data
timezone: Asia/Shanghai
bus: {{prefix: {prefix}}}
grid_cells:
  G1:
    name: Xinhua Street
    officer: {{name: Wang Wei, phone: "13800000001"}}
  G2:
    name: Station Square
    officer: {{name: Li Na, phone: "13800000002"}}
cameras:
"""  # a config's head, for ``.format(prefix=...)``: two cells, the cameras to follow


def open_with_users(cfg: Any, *users: str) -> Any:
    """The config's history database (an Engine) with these users, each ``"name role cells display name"``
    (cells comma-separated, ``*`` for all), every one with :data:`PASSWORD`."""
    from dashboard.users import add_user
    from history import open_database

    engine = open_database(cfg)
    for spec in users:
        name, role, cells, display = spec.split(" ", 3)
        add_user(engine, name, PASSWORD, role, cells.split(","), display)
    return engine


def config_on_backend(request: pytest.FixtureRequest, folder: Path, tag: str,
                      text: str | None = None) -> tuple[Any, str]:
    """A loaded config on its own bus prefix (``tag`` and the clock) and its bus prefix, for a fixture
    parametrised ``["sqlite", "postgresql"]``: for ``postgresql`` its history database is a fresh database on
    the session's PostgreSQL server.  ``text``: the config's YAML with ``{prefix}`` to fill, else the two-cell
    config of :func:`write_dashboard_config`."""
    from pipeline.config import load_config

    prefix = f"{tag}{time.monotonic_ns()}"
    database = ""
    if request.param == "postgresql":
        db = fresh_pg_database(request.getfixturevalue("postgres_url"), f"{tag}{time.monotonic_ns() % 10**9}")
        database = f"dashboard: {{database_url: '{db}'}}\n"
    if text is None:
        return load_config(write_dashboard_config(folder, f"bus: {{prefix: {prefix}}}\n{database}")), prefix
    path = folder / "streams.yaml"
    path.write_text(text.format(prefix=prefix) + database)
    return load_config(path), prefix


def add_login(cfg: Path, name: str, role: str, cells: str, display: str, locale: str = "en",
              password: str | None = None) -> None:
    """A user in the history database of the config file ``cfg`` (cells comma-separated, ``*`` for all), made
    by the function ``sharpeye users add`` calls."""
    from dashboard.users import add_user
    from history import open_database
    from pipeline.config import load_config

    engine = open_database(load_config(cfg))
    try:
        add_user(engine, name, PASSWORD if password is None else password, role, cells.split(","), display, locale)
    finally:
        engine.dispose()


DASHBOARD_CELLS: dict[str, Any] = {
    "G1": {"name": "Xinhua Street", "officer": {"name": "Wang Wei", "phone": "13800000001"},
           "outline": [[0, 0], [400, 0], [400, 300], [0, 300]]},
    "G2": {"name": "Station Square", "officer": {"name": "Li Na", "phone": "13800000002"},
           "outline": [[400, 0], [700, 0], [700, 300], [400, 300]]},
}
DASHBOARD_CAMERAS: dict[str, dict[str, Any]] = {
    "lobby": {"name": "Lobby camera", "source": "rtsp://127.0.0.1:9/lobby", "grid_cell": "G1", "position": [100, 150],
              "rules": {"zone": {"kind": "presence", "severity": "high",
                                 "procedure": "1. 查看实时视频。2. 电话通知责任民警。"}}},
    "gate": {"name": "School gate", "source": "rtsp://127.0.0.1:9/gate", "grid_cell": "G1", "position": [300, 50]},
    "square": {"name": "Station square", "source": "rtsp://127.0.0.1:9/square", "grid_cell": "G2",
               "position": [550, 150]},
}


def write_dashboard_config(folder: Path, extra: str = "") -> Path:
    """The dashboard tests' config: two cells (G1: lobby, gate; G2: square), no running cameras needed.

    ``extra`` is YAML for more top-level sections (``bus``, ``dashboard`` ...), as a person would
    write them; written with :func:`tests.support.config.write_config`.
    """
    top = (yaml.safe_load(extra) if extra.strip() else None) or {}
    # every alert its own incident: these tests handle each alert they publish (grouping: test_incidents.py)
    return write_config(folder, DASHBOARD_CAMERAS, grid_cells=DASHBOARD_CELLS,
                        **{"data_dir": "data", "timezone": "Asia/Shanghai", "alerts": {"incident_window_s": 0}, **top})


CELLS = {"lobby": ("G1", "Xinhua Street"), "gate": ("G1", "Xinhua Street"), "square": ("G2", "Station Square")}


def alert_msg(alert_id: str, phase: str = "new", t: float | None = None, camera: str = "lobby",
              severity: str = "high", kind: str = "intrusion", labels: tuple[str, ...] = ("person",),
              start: float | None = None, snapshot: str | None = None) -> dict[str, object]:
    """An alert message as a worker publishes it (sharpeye.event/1)."""
    t = time.time() if t is None else t
    cell, cell_name = CELLS[camera]
    return {
        "schema": "sharpeye.event/1", "type": "alert", "alert_id": alert_id, "phase": phase,
        "time": round(t, 3), "frame_time": round(t, 3),
        "camera": {"id": camera, "name": camera.title() + " camera"},
        "grid_cell": {"id": cell, "name": cell_name, "officer": {"name": "Wang Wei", "phone": "13800000001"}},
        "rule": {"id": "zone", "kind": kind, "severity": severity}, "labels": list(labels), "track_ids": [1],
        "objects": [], "score": 0.8, "start_time": round(start if start is not None else t, 3),
        "end_time": round(t, 3) if phase == "end" else None,
        "snapshot": {"path": snapshot, "width": 768, "height": 432, "score": 0.8} if snapshot else None,
        "clip": {"start": round(t - 5, 3), "end": None},
    }


def recorded_alert_msg(alert_id: str) -> dict[str, object]:
    """An ended lobby alert inside :func:`recorded_room`'s recording: from ``T0 + 8`` to ``T0 + 12``, its clip
    from ``T0 + 3`` to ``T0 + 17``."""
    from tests.support.record import T0

    msg = alert_msg(alert_id, phase="end", t=T0 + 12, camera="lobby", start=T0 + 8)
    msg["clip"] = {"start": T0 + 3.0, "end": T0 + 17.0}
    return msg


def camera_msg(camera: str, phase: str, t: float | None = None) -> dict[str, object]:
    cell, cell_name = CELLS[camera]
    return {"schema": "sharpeye.event/1", "type": "camera", "phase": phase,
            "time": round(time.time() if t is None else t, 3), "camera": {"id": camera, "name": camera},
            "grid_cell": {"id": cell, "name": cell_name, "officer": None}, "state": "backoff", "detail": "test"}


PASSWORD = "correct horse battery"  # every dashboard test user's password


class LoggedIn:
    """A user's TestClient, logged in, with the CSRF token at hand (``csrf``; as headers, ``h``)."""

    def __init__(self, app: object, name: str, password: str = PASSWORD):
        from fastapi.testclient import TestClient

        self.c = TestClient(app)  # type: ignore[arg-type]
        r = self.c.post("/api/login", json={"username": name, "password": password})
        assert r.status_code == 200, r.text
        self.csrf: str = r.json()["csrf"]
        self.h = {"X-CSRF-Token": self.csrf}


def api_routes(routes: Iterable[object]) -> Iterator[Any]:
    """Every FastAPI ``APIRoute`` of an app's routes, included routers' routes too (for tests over all routes)."""
    from fastapi.routing import APIRoute

    for r in routes:
        nested = getattr(r, "original_router", None)
        if nested is not None:
            yield from api_routes(nested.routes)
        elif isinstance(r, APIRoute):
            yield r
