"""The command-room dashboard: live alerts and camera health, read from the bus.

The page (static/index.html) loads the recent alerts once, then follows a server-sent
event stream (``/api/stream``) fed by a blocking ``XREAD`` on the events stream: new
alerts appear within milliseconds of reaching Redis, without polling.  Camera states are
pushed on the same stream whenever they change.  Snapshots are files under the data
directory written by the workers.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, AsyncIterator

import redis.asyncio as aioredis
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from pipeline.config import Config, redact_url, reload_config
from pipeline.publish import bus
from pipeline.publish.status import metrics_text

STATIC = Path(__file__).parent / "static"
CAMERA_PUSH_PERIOD_S = 2.0


def _camera_list(cfg: Config, statuses: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for cid, cam in cfg.cameras.items():
        st = statuses.get(cid, {})
        cell = cfg.grid_cells.get(cam.grid_cell)
        out.append({
            "id": cid, "name": cam.name, "enabled": cam.enabled,
            "grid_cell": {"id": cam.grid_cell, "name": cell.name if cell else cam.grid_cell},
            "source": redact_url(cam.source),
            "state": st.get("state", "unknown" if cam.enabled else "disabled"),
            "online": bool(st.get("online")),
            "since": st.get("since"),
            "detected": st.get("detected"), "skipped": st.get("skipped"),
            "reconnects": st.get("reconnects"), "last_error": st.get("last_error"),
        })
    return out


def _sse(event: str, data: Any, sid: str | None = None) -> bytes:
    head = f"id: {sid}\n" if sid else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _mtime(cfg: Config) -> float | None:
    try:
        return cfg.path.stat().st_mtime if cfg.path else None
    except OSError:
        return None


def create_app(cfg: Config, redis_url: str) -> FastAPI:
    app = FastAPI(title="Sharp Eyes dashboard", version="0.1")
    keys = bus.BusKeys(cfg.bus.prefix)
    data_dir = cfg.data_path()
    holder = {"cfg": cfg, "mtime": _mtime(cfg)}

    def current() -> Config:
        """The config as on disk now (cameras added or renamed show up without a restart)."""
        m = _mtime(holder["cfg"])
        if m != holder["mtime"]:
            holder["mtime"] = m
            holder["cfg"], _problems = reload_config(holder["cfg"].path, holder["cfg"])  # type: ignore[arg-type]
        return holder["cfg"]  # type: ignore[return-value]
    snapshots_root = (data_dir / "snapshots").resolve()

    def client() -> aioredis.Redis:
        return aioredis.Redis.from_url(redis_url, socket_connect_timeout=5)

    async def statuses(r: aioredis.Redis) -> dict[str, dict[str, Any]]:
        return bus.parse_statuses(await r.hgetall(keys.cameras))

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        r = client()
        try:
            await r.ping()
            return {"ok": True}
        finally:
            await r.aclose()

    @app.get("/api/cameras")
    async def cameras() -> list[dict[str, Any]]:
        r = client()
        try:
            return _camera_list(current(), await statuses(r))
        finally:
            await r.aclose()

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus: per-camera fps, skipped fps, inference ms, reconnects, state (all workers)."""
        r = client()
        try:
            st = await statuses(r)
        finally:
            await r.aclose()
        return Response(metrics_text(st), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/api/status")
    async def status() -> dict[str, Any]:
        r = client()
        try:
            return await statuses(r)
        finally:
            await r.aclose()

    @app.get("/api/alerts")
    async def alerts(count: int = 200) -> dict[str, Any]:
        """The newest messages (alerts and camera changes), newest first, and the id to follow from."""
        count = max(1, min(count, 2000))
        r = client()
        try:
            entries = await r.xrevrange(keys.events, count=count)
        finally:
            await r.aclose()
        msgs = [m for _, m in bus.decode_entries(entries)]
        last = msgs[0]["stream_id"] if msgs else "0-0"
        return {"last_id": last, "messages": msgs}

    @app.get("/api/stream")
    async def stream(request: Request, last_id: str = "$") -> StreamingResponse:
        async def gen() -> AsyncIterator[bytes]:
            r = client()
            # a reconnecting EventSource tells where it stopped: resume there, nothing is lost
            cursor = request.headers.get("last-event-id") or last_id
            try:
                if cursor == "$":
                    newest = await r.xrevrange(keys.events, count=1)
                    cursor = newest[0][0].decode() if newest else "0-0"
                cams = _camera_list(current(), await statuses(r))
                yield _sse("cameras", cams)
                next_push = time.monotonic() + CAMERA_PUSH_PERIOD_S
                while not await request.is_disconnected():
                    res = await r.xread({keys.events: cursor}, count=200, block=1000)
                    for _, entries in res or []:
                        for sid, msg in bus.decode_entries(entries):
                            cursor = sid
                            yield _sse("message", msg, sid)
                    if time.monotonic() >= next_push:
                        next_push = time.monotonic() + CAMERA_PUSH_PERIOD_S
                        new = _camera_list(current(), await statuses(r))
                        if new != cams:
                            cams = new
                            yield _sse("cameras", cams)
                        else:
                            yield b": keep-alive\n\n"
            except asyncio.CancelledError:
                pass
            finally:
                await r.aclose()

        return StreamingResponse(gen(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/snapshots/{rel:path}")
    async def snapshot(rel: str) -> FileResponse:
        path = (snapshots_root / rel).resolve()
        if not path.is_relative_to(snapshots_root) or not path.is_file():
            raise HTTPException(404, "no such snapshot")
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
