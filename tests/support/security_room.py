"""A command room with two cells for the security tests: the app in-process on real Redis and SQLite,
an operator of each cell, an engineer, an admin, and objects of every kind in both cells.

Cell A is G1 (cameras lobby, gate), cell B is G2 (camera square).  ``asgi`` sends a request exactly as
written (``..``, ``%2e``, ``%2f``, ``%00`` untouched), as ``curl --path-as-is`` does: an HTTP client
library would tidy the path before it left.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from fastapi.testclient import TestClient

from dashboard.app import create_app
from dashboard.security import body_then
from dashboard.users import add_user
from history import open_database
from pipeline.config import load_config
from pipeline.publish import bus

PW = "correct horse battery"
DAY = "2026-12-07"
CONFIG = """\
data_dir: data
timezone: Asia/Shanghai
bus: {{prefix: {prefix}}}
alerts: {{incident_window_s: 0}}
grid_cells:
  G1:
    name: Xinhua Street
    officer: {{name: Wang Wei, phone: "13800000001"}}
    outline: [[0, 0], [400, 0], [400, 300], [0, 300]]
  G2:
    name: Station Square
    officer: {{name: Li Na, phone: "13800000002"}}
    outline: [[400, 0], [700, 0], [700, 300], [400, 300]]
cameras:
  lobby: {{name: Lobby camera, source: "rtsp://127.0.0.1:9/lobby", grid_cell: G1, position: [100, 150]}}
  gate: {{name: School gate, source: "rtsp://127.0.0.1:9/gate", grid_cell: G1, position: [300, 50]}}
  square: {{name: Station square, source: "rtsp://127.0.0.1:9/square", grid_cell: G2, position: [550, 150]}}
"""
CELL_OF = {"lobby": ("G1", "Xinhua Street"), "gate": ("G1", "Xinhua Street"), "square": ("G2", "Station Square")}
USERS = {"opA": ("operator", ["G1"]), "opB": ("operator", ["G2"]), "eng": ("engineer", ["G1", "G2"]),
         "boss": ("admin", ["*"])}


def alert_msg(alert_id: str, camera: str, t: float, snapshot: str | None = None) -> dict[str, Any]:
    cell, cell_name = CELL_OF[camera]
    return {
        "schema": "sharpeye.event/1", "type": "alert", "alert_id": alert_id, "phase": "new",
        "time": round(t, 3), "frame_time": round(t, 3), "camera": {"id": camera, "name": camera.title()},
        "grid_cell": {"id": cell, "name": cell_name, "officer": {"name": "Wang Wei", "phone": "13800000001"}},
        "rule": {"id": "zone", "kind": "intrusion", "severity": "high"}, "labels": ["person"], "track_ids": [1],
        "objects": [], "score": 0.8, "start_time": round(t, 3), "end_time": None,
        "snapshot": {"path": snapshot, "width": 768, "height": 432, "score": 0.8} if snapshot else None,
        "clip": {"start": round(t - 5, 3), "end": None},
    }


class Client:
    """A logged-in user (TestClient with the CSRF token at hand)."""

    def __init__(self, app: Any, name: str | None):
        self.name = name
        self.c = TestClient(app, base_url="http://testserver", follow_redirects=False)
        self.h: dict[str, str] = {}
        if name is not None:
            r = self.c.post("/api/login", json={"username": name, "password": PW})
            assert r.status_code == 200, r.text
            self.h = {"X-CSRF-Token": r.json()["csrf"]}

    def cookie(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.c.cookies.items())

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return self.c.request(method, path, json=body if method not in ("GET", "HEAD") else None, headers=self.h)


class Room:
    def __init__(self, tmp_path: Path, redis_url: str):
        self.prefix = f"sec{time.monotonic_ns()}"
        cfg_path = tmp_path / "streams.yaml"
        cfg_path.write_text(CONFIG.format(prefix=self.prefix))
        self.cfg = load_config(cfg_path)
        self.data = self.cfg.data_path()
        self.engine = open_database(self.cfg)
        for name, (role, cells) in USERS.items():
            add_user(self.engine, name, PW, role, cells, name)
        self.redis_url = redis_url
        self.app = create_app(self.cfg, redis_url, self.engine)
        self.bus = bus.connect(redis_url)
        self.keys = bus.BusKeys(self.prefix)
        # one snapshot per cell: the other cell's bytes must never come back
        self.snap = {}
        for cam, marker in (("lobby", b"CELL-A-EVIDENCE"), ("square", b"CELL-B-EVIDENCE")):
            p = self.data / "snapshots" / cam / DAY / f"{cam}-1.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"\xff\xd8" + marker + b"\xff\xd9")
            self.snap[cam] = f"{cam}/{DAY}/{cam}-1.jpg"
        self.clients: dict[str | None, Client] = {}

    def publish_alert(self, alert_id: str, camera: str, t: float | None = None) -> None:
        snap = "snapshots/" + self.snap[camera] if camera in self.snap else None
        bus.publish_event(self.bus, self.keys, alert_msg(alert_id, camera, time.time() - 300 if t is None else t,
                                                         snap), 10_000)

    def as_(self, name: str | None) -> Client:
        if name not in self.clients:
            self.clients[name] = Client(self.app, name)
        return self.clients[name]

    def asgi(self, method: str, raw_path: str, cookie: str = "", body: bytes = b"",
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """One request with the path exactly as given (decoded once, as uvicorn does, for ``path``)."""
        raw, _, query = raw_path.partition("?")
        hdrs = [(b"host", b"testserver"), (b"content-length", str(len(body)).encode())]
        if cookie:
            hdrs.append((b"cookie", cookie.encode()))
        for k, v in (headers or {}).items():
            hdrs.append((k.lower().encode(), v.encode()))
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": unquote(raw), "raw_path": raw.encode(), "query_string": query.encode(),
                 "root_path": "", "headers": hdrs, "client": ("127.0.0.1", 40000), "server": ("testserver", 80)}
        out: dict[str, Any] = {"status": 0, "body": b""}

        async def stay() -> dict[str, Any]:  # the client stays connected until the answer is sent
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        receive = body_then(body, stay)

        async def send(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                out["status"] = msg["status"]
            elif msg["type"] == "http.response.body":
                out["body"] += msg.get("body", b"")

        asyncio.run(self.app(scope, receive, send))
        return out["status"], out["body"]

    def audit_rows(self) -> list[dict[str, Any]]:
        from sqlalchemy import select

        from history.schema import actions
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(actions).order_by(actions.c.id))]

    def close(self) -> None:
        self.engine.dispose()


def jdump(v: Any) -> bytes:
    return json.dumps(v).encode()
