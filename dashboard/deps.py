"""Route guards and typed dependencies: a session on every route but log-in and health, CSRF on every
change, roles, cells.

A route's signature says what it needs through the ``Annotated`` aliases at the end of this module
(``DashboardDep``, ``CurrentUser``, ``EngineerUser``, ``AdminUser``, ``SessionDep``, ``RemoteAddr``)
instead of reaching into ``request.app.state`` itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from dashboard.context import Dashboard, ctx
from dashboard.security import COOKIE, CSRF_HEADER, Session, csrf_ok, lookup_session
from dashboard.users import User
from history.refusal import Refused

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
NOT_PAGES = ("/api/", "/static/", "/snapshots/")  # answered 401, not redirected to the log-in


def refuse(status: int, code: str, **extra: object) -> HTTPException:
    """An error the page translates by its code (the message catalogues hold the words)."""
    return HTTPException(status, {"code": code, **extra})


T = TypeVar("T")


def found(item: T | None) -> T:
    """``item``, or the 404 ``not_found`` refusal when the look-up found nothing (or nothing the user may see)."""
    if item is None:
        raise refuse(404, "not_found")
    return item


async def service_call(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread; a :class:`Refused` it raises becomes the refusal the page translates."""
    try:
        return await run_in_threadpool(fn, *args)
    except Refused as e:
        raise refuse(e.status, e.code, **e.extra) from None


async def session_required(request: Request) -> Session:
    """The caller's session; without one, pages redirect to the log-in and the API answers 401."""
    sess = await run_in_threadpool(lookup_session, ctx(request).engine, request.cookies.get(COOKIE))
    if sess is None:
        if request.url.path.startswith(NOT_PAGES) or request.method not in SAFE_METHODS:
            raise refuse(401, "no_session")
        raise HTTPException(303, headers={"Location": "/login"})
    if request.method not in SAFE_METHODS and not csrf_ok(sess, request.headers.get(CSRF_HEADER)):
        raise refuse(403, "csrf")
    request.state.session = sess
    return sess


async def current_user(sess: Session = Depends(session_required)) -> User:
    return sess.user


def require_role(role: str) -> Callable[..., object]:
    """A dependency that lets only ``role`` and higher through (403 otherwise, page and API alike)."""
    async def dep(user: User = Depends(current_user)) -> User:
        if not user.has_role(role):
            raise refuse(403, "forbidden_role", role=role)
        return user
    return dep


def remote_addr(request: Request) -> str | None:
    return request.client.host if request.client else None


def get_dashboard(request: Request) -> Dashboard:
    """The app's config, database and bus (one per process)."""
    return ctx(request)


engineer_only = require_role("engineer")
admin_only = require_role("admin")

DashboardDep = Annotated[Dashboard, Depends(get_dashboard)]
SessionDep = Annotated[Session, Depends(session_required)]
CurrentUser = Annotated[User, Depends(current_user)]
EngineerUser = Annotated[User, Depends(engineer_only)]
AdminUser = Annotated[User, Depends(admin_only)]
RemoteAddr = Annotated[str | None, Depends(remote_addr)]
