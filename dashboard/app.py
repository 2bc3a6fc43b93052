"""The command-room dashboard: alerts with their workflow, cameras and health, for logged-in users.

The app reads three things only: the bus (Redis: the workers' events and camera statuses, plus
its own actions stream), the history database (alerts, actions, users; the archiver fills the
alerts) and files under the data directory (snapshots).  It never imports worker code.

Routes live in ``routes/`` by concern (auth, alerts, cameras, health, users).  Every route needs
a session except the log-in (page, API, and the few static files it needs) and ``/healthz``;
``/metrics`` takes a session or the configured scrape token.  Every response carries the
security headers (``security.SecurityHeaders``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis.exceptions import RedisError
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from dashboard.context import Dashboard
from dashboard.deps import refuse, session_required
from dashboard.escalation import CHECK_EVERY_S, EscalationTurn, escalate_due
from dashboard.pages import PUBLIC_STATIC, page, static_file
from dashboard.routes import (
    alerts,
    audit,
    auth,
    cameras,
    exports,
    handling_view,
    health,
    history,
    live,
    officer,
    patrol,
    reports,
    shelves,
    sightings,
    users,
    wall,
    watchlists,
    workers,
    zones,
)
from dashboard.security import RequestGuard, SecurityHeaders, validation_errors
from dashboard.services import patrol_faults, policy
from dashboard.services import watchlists as watchlist_mirror
from history import open_database
from history.incidents import configure as configure_incidents
from pipeline.config import Config

log = logging.getLogger("sharpeye.dashboard")
ERROR_PAGES = {403: "forbidden.html", 404: "forbidden.html"}


def create_app(cfg: Config, redis_url: str, engine: Engine | None = None, tls: bool = False) -> SecurityHeaders:
    """The ASGI app; opens (and migrates) the history database unless an engine is given."""
    engine = engine or open_database(cfg)
    dash = Dashboard(cfg, engine, redis_url, tls=tls)
    configure_incidents(engine, dash.config)  # alerts it stores from the bus are grouped as the archiver does

    turn = EscalationTurn(dash.keys.prefix_key("escalation:lease"))

    async def escalations() -> None:
        """Every second: escalate what is overdue, and push it to the pages (one dashboard of several); every
        30 s, the patrol fault checks."""
        faults_due = 0.0
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            try:
                if not await turn.mine(dash.redis()):
                    continue  # another dashboard process checks
                # the handling policy first (auto-acknowledged alerts never escalate), then escalation
                for alert, act in await run_in_threadpool(policy.auto_steps, dash.engine, dash.config()):
                    await dash.push_action(alert, act)
                for alert, act in await run_in_threadpool(escalate_due, dash.engine, dash.config()):
                    await dash.push_action(alert, act)
            except (RedisError, OSError, TimeoutError) as e:  # the bus is down or frozen: a line, not a traceback
                log.warning("escalation check: bus unavailable (%s); trying again in %.0f s", e, CHECK_EVERY_S)
                continue
            except Exception:
                log.exception("escalation check failed; trying again in %.0f s", CHECK_EVERY_S)
                continue
            if time.monotonic() >= faults_due:  # cameras offline or tampered too long: on the patrol fault list
                faults_due = time.monotonic() + patrol_faults.CHECK_EVERY_S
                try:
                    await patrol_faults.check(dash)
                except (RedisError, OSError, TimeoutError) as e:
                    log.warning("camera fault check: bus unavailable (%s); trying again in %.0f s", e,
                                patrol_faults.CHECK_EVERY_S)
                except Exception:
                    log.exception("camera fault check failed; trying again in %.0f s", patrol_faults.CHECK_EVERY_S)
                try:  # the workers' watchlist mirror again: a bus that restarted empty gets it back
                    await watchlist_mirror.mirror(dash)
                except Exception as e:
                    log.warning("watchlist mirror not written (%s); trying again in %.0f s", e,
                                patrol_faults.CHECK_EVERY_S)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(escalations())
        yield
        task.cancel()
        await turn.release(dash.redis())
        await dash.close()

    app = FastAPI(title="Sharp Eyes dashboard", version="0.2", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.dashboard = dash

    @app.exception_handler(HTTPException)
    async def errors(request: Request, exc: HTTPException) -> Response:
        """Pages get a page (translated by the browser), the API gets JSON with a code."""
        if exc.status_code in ERROR_PAGES and not request.url.path.startswith(("/api/", "/snapshots/", "/static/")):
            return page(ERROR_PAGES[exc.status_code], exc.status_code)
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        """422 naming the fields, never echoing what was sent (passwords, 1e999) and never failing itself."""
        return JSONResponse({"detail": {"code": "invalid_request", "errors": validation_errors(exc.errors())}},
                            status_code=422, headers={"Cache-Control": "no-store"})

    @app.exception_handler(RedisError)
    async def bus_down(request: Request, exc: RedisError) -> Response:
        """Redis dead, frozen or restarting: 503 with a code the page translates, never a 500 and a traceback."""
        log.warning("%s %s: bus unavailable (%s: %s)", request.method, request.url.path, type(exc).__name__, exc)
        return JSONResponse({"detail": {"code": "bus_unavailable"}}, status_code=503,
                            headers={"Retry-After": "2", "Cache-Control": "no-store"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        """Browsers ask every page for it: the icon, not a 404 in every log."""
        resp = static_file("favicon.svg")
        assert resp is not None
        return resp

    @app.get("/static/{rel:path}", include_in_schema=False)
    async def static(rel: str, request: Request) -> Response:
        if rel not in PUBLIC_STATIC:
            await session_required(request)
        resp = static_file(rel)
        if resp is None:
            raise refuse(404, "not_found")
        return resp

    for r in (auth.router, health.router, officer.router, alerts.router, history.router, reports.router,
              cameras.router, users.router):
        app.include_router(r)
    app.include_router(live.router)  # live wall and alert clips (docs/live.md)
    app.include_router(wall.router)  # each user's wall: layout, push to wall and restore (services/wall.py)
    app.include_router(zones.router)  # zone and line editor (engineers)
    app.include_router(exports.router)  # exports, cases, camera timeline (issue 12)
    app.include_router(workers.router)  # workers and camera owners of the cluster (issue 14)
    app.include_router(patrol.router)  # video patrol: plans, tours, manual alarms, faults (history/patrol.py)
    app.include_router(audit.router)  # the audit log page and the log-in throttles (admins, supervisors)
    app.include_router(shelves.router)  # shelves (屏蔽): quiet cameras or rules for a while (history/shelves.py)
    app.include_router(sightings.router)  # sightings search (研判): plates, labels, colours (history/sightings.py)
    app.include_router(watchlists.router)  # watchlists (布控): plates that raise an alert when read
    app.include_router(handling_view.router)  # the handling view: forward recipients, notices
    return SecurityHeaders(RequestGuard(app), tls=tls)  # body limit and NUL-free paths before any route
