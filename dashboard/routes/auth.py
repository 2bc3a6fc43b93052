"""Log-in, log-out and who am I: the only routes (with /healthz) open without a session."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dashboard.deps import CurrentUser, DashboardDep, RemoteAddr, SessionDep, refuse, remote_addr
from dashboard.pages import page
from dashboard.security import COOKIE, SESSION_MAX_S, check_login, create_session, end_session, lookup_session
from dashboard.users import LOCALES, update_user
from history.audit import record

router = APIRouter()


class LoginBody(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class LocaleBody(BaseModel):
    locale: str


def _same_origin(request: Request) -> bool:
    """A log-in has no CSRF token yet: it must come from this site (Origin, when sent, names our host)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser cross-site request (browsers send Origin on every cross-site POST)
    return urlsplit(origin).netloc == request.headers.get("host")


@router.get("/login", include_in_schema=False)
async def login_page(request: Request, d: DashboardDep) -> Response:
    if await run_in_threadpool(lookup_session, d.engine, request.cookies.get(COOKIE)):
        return RedirectResponse("/", 303)
    return page("login.html")


@router.post("/api/login")
async def login(request: Request, body: LoginBody, d: DashboardDep) -> JSONResponse:
    if not request.headers.get("content-type", "").startswith("application/json") or not _same_origin(request):
        raise refuse(403, "csrf")
    remote = remote_addr(request) or "?"
    wait = await d.limiter.retry_after(d.redis(), remote)
    if wait > 0:
        raise refuse(429, "rate_limited", retry_after=round(wait))
    res = await run_in_threadpool(check_login, d.engine, body.username, body.password, remote)
    if res.user is None:
        await d.limiter.failed(d.redis(), remote)
        status = 429 if res.problem == "rate_limited" else 401
        raise refuse(status, res.problem or "bad_credentials", retry_after=round(res.retry_after))
    token, csrf = await run_in_threadpool(create_session, d.engine, res.user, remote,
                                          request.headers.get("user-agent"))
    resp = JSONResponse({"user": res.user.to_dict(), "csrf": csrf})
    resp.set_cookie(COOKIE, token, max_age=int(SESSION_MAX_S), httponly=True, samesite="strict",
                    secure=d.tls or request.url.scheme == "https", path="/")
    return resp


@router.post("/api/logout")
async def logout(d: DashboardDep, sess: SessionDep, remote: RemoteAddr) -> JSONResponse:

    def _end() -> None:
        end_session(d.engine, sess.token_id)
        with d.engine.begin() as conn:
            record(conn, "logout", user_id=sess.user.id, username=sess.user.username, remote=remote)
    await run_in_threadpool(_end)
    resp = JSONResponse({"ok": True})
    resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return resp


@router.get("/api/me")
async def me(d: DashboardDep, sess: SessionDep) -> dict[str, Any]:
    """Who is logged in, their CSRF token, and what the page needs to show times and cells."""
    cfg = d.config()
    user = sess.user
    cells = {cid: {"name": c.name, "officer": {"name": c.officer.name, "phone": c.officer.phone}}
             for cid, c in cfg.grid_cells.items() if user.sees_cell(cid)}
    tz = cfg.timezone or str(cfg.tzinfo() or "UTC")
    return {"user": user.to_dict(), "csrf": sess.csrf, "timezone": tz, "cells": cells,
            "can": {"engineer": user.has_role("engineer"), "admin": user.has_role("admin")}}


@router.post("/api/me/locale")
async def set_locale(body: LocaleBody, d: DashboardDep, user: CurrentUser) -> dict[str, Any]:
    if body.locale not in LOCALES:
        raise refuse(400, "bad_locale")
    u = await run_in_threadpool(update_user, d.engine, user.username, None, None, None, body.locale)
    return {"user": u.to_dict()}
