"""Log-in, server-side sessions, CSRF tokens, the log-in rate limit and the security headers.

- A session is a random 256-bit token in an HttpOnly, SameSite=Strict cookie (Secure when the
  page is served over TLS); the database keeps only its SHA-256, so a copy of the table opens
  no session.  Sessions end after ``SESSION_IDLE_S`` without a request (a shift) or
  ``SESSION_MAX_S`` in all, on log-out, on a password change and when the user is disabled.
- Each session has its own CSRF token, handed to the page by ``/api/me``; every state-changing
  request must send it back in ``X-CSRF-Token``.  The log-in itself (no session yet) must be a
  JSON request from the same origin, which a cross-site form cannot make.
- Log-in attempts are limited per client address (``IP_MAX_FAILS`` failures in ``IP_WINDOW_S``)
  and per account: ``LOCK_AFTER`` failures in a row lock it for ``LOCK_S``.  Every attempt,
  failed or not, goes into the audit log.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import Engine, select, update

from dashboard.users import DUMMY_HASH, User, from_row, needs_rehash, verify_password
from history.audit import record
from history.schema import sessions, users

COOKIE = "sharpeye_session"
CSRF_HEADER = "x-csrf-token"
SESSION_IDLE_S = 12 * 3600.0
SESSION_MAX_S = 24 * 3600.0
TOUCH_EVERY_S = 60.0  # last_seen is written at most this often
LOCK_AFTER = 5
LOCK_S = 300.0
IP_WINDOW_S = 300.0
IP_MAX_FAILS = 20

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class LoginLimiter:
    """Failed log-ins per client address in a sliding window, kept in memory (one dashboard process).

    Several dashboards behind a load balancer share the count through the bus (:class:`SharedLoginLimiter`);
    this one is its fallback while the bus is down."""

    def __init__(self, max_fails: int = IP_MAX_FAILS, window_s: float = IP_WINDOW_S):
        self.max_fails = max_fails
        self.window_s = window_s
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._fails.setdefault(key, deque())
        while q and q[0] < now - self.window_s:
            q.popleft()
        return q

    def retry_after(self, key: str, now: float | None = None) -> float:
        """Seconds until this address may try again; 0 when it may now."""
        now = time.time() if now is None else now
        with self._lock:
            q = self._recent(key, now)
            return max(0.0, q[0] + self.window_s - now) if len(q) >= self.max_fails else 0.0

    def failed(self, key: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self._recent(key, now).append(now)


@dataclass
class LoginResult:
    user: User | None
    problem: str | None = None  # bad_credentials, locked, disabled
    retry_after: float = 0.0


def check_login(engine: Engine, username: str, password: str, remote: str | None) -> LoginResult:
    """Verify a log-in, count failures, lock after ``LOCK_AFTER``; the audit log records every attempt."""
    now = time.time()
    with engine.begin() as conn:
        row = conn.execute(select(users).where(users.c.username == username)).first()
        if row is None:
            verify_password(DUMMY_HASH, password)  # an unknown name takes as long as a wrong password
            record(conn, "login_failed", note=username[:64], remote=remote)
            return LoginResult(None, "bad_credentials")
        if row.locked_until and row.locked_until > now:
            record(conn, "login_refused_locked", user_id=row.id, username=row.username, remote=remote)
            return LoginResult(None, "locked", row.locked_until - now)
        if not verify_password(row.password_hash, password):
            fails = row.failed_logins + 1
            locked = now + LOCK_S if fails >= LOCK_AFTER else None
            conn.execute(update(users).where(users.c.id == row.id).values(
                failed_logins=0 if locked else fails, locked_until=locked))
            record(conn, "login_failed", user_id=row.id, username=row.username, remote=remote,
                   data={"locked_for_s": LOCK_S} if locked else None)
            return LoginResult(None, "locked" if locked else "bad_credentials", LOCK_S if locked else 0.0)
        if row.disabled:
            record(conn, "login_refused_disabled", user_id=row.id, username=row.username, remote=remote)
            return LoginResult(None, "disabled")
        values: dict[str, Any] = {"failed_logins": 0, "locked_until": None}
        if needs_rehash(row.password_hash):
            from dashboard.users import hash_password
            values["password_hash"] = hash_password(password)
        conn.execute(update(users).where(users.c.id == row.id).values(**values))
        record(conn, "login", user_id=row.id, username=row.username, remote=remote)
        return LoginResult(from_row(row))


def create_session(engine: Engine, user: User, remote: str | None, user_agent: str | None) -> tuple[str, str]:
    """A new session for ``user``: (cookie token, CSRF token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = time.time()
    with engine.begin() as conn:
        conn.execute(sessions.delete().where(sessions.c.expires_at < now))  # sweep the expired ones
        conn.execute(sessions.insert().values(
            id=token_hash(token), user_id=user.id, csrf_token=csrf, created_at=now, last_seen=now,
            expires_at=now + SESSION_MAX_S, remote=(remote or "")[:64], user_agent=(user_agent or "")[:300]))
    return token, csrf


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str
    token_id: str


def lookup_session(engine: Engine, token: str | None) -> Session | None:
    """The live session of a cookie value, or None (unknown, expired, idle too long, user disabled)."""
    if not token or len(token) > 100:
        return None
    sid = token_hash(token)
    now = time.time()
    with engine.connect() as conn:
        row = conn.execute(select(sessions.c.csrf_token, sessions.c.last_seen, sessions.c.expires_at, users)
                           .join(users, users.c.id == sessions.c.user_id).where(sessions.c.id == sid)).first()
        if row is None:
            return None
        if row.expires_at < now or row.last_seen < now - SESSION_IDLE_S or row.disabled:
            conn.execute(sessions.delete().where(sessions.c.id == sid))
            conn.commit()
            return None
        if row.last_seen < now - TOUCH_EVERY_S:
            conn.execute(update(sessions).where(sessions.c.id == sid).values(last_seen=now))
            conn.commit()
    return Session(from_row(row), row.csrf_token, sid)


def end_session(engine: Engine, token_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(sessions.delete().where(sessions.c.id == token_id))


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and secrets.compare_digest(session.csrf, sent or "")


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class SecurityHeaders:
    """ASGI middleware adding the security headers to every response (streams included).

    A plain ASGI wrapper rather than an ``@app.middleware``: it touches only the response
    start, so the server-sent event stream passes through unbuffered.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], tls: bool = False):
        self.app = app
        self.headers = [
            (b"content-security-policy", CSP.encode()),
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        if tls:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in have]
                if scope["path"].startswith("/api/") and b"cache-control" not in have:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)


class SharedLoginLimiter:
    """The per-address limit shared by every dashboard process of the site (a sorted set per address in the
    bus's Redis, ``P:login:fails:<address>``), so N processes behind a load balancer give an attacker 20
    tries, not N x 20.  While the bus is down each process counts alone (the account lock, kept in the
    database, holds in any case)."""

    def __init__(self, prefix: str, local: LoginLimiter | None = None):
        self.prefix = prefix
        self.local = local or LoginLimiter()

    def _key(self, address: str) -> str:
        return f"{self.prefix}:login:fails:{address}"

    async def retry_after(self, r: Any, address: str, now: float | None = None) -> float:
        """Seconds until this address may try again; 0 when it may now."""
        now = time.time() if now is None else now
        lim = self.local
        try:
            async with r.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(self._key(address), 0, now - lim.window_s)
                pipe.zrange(self._key(address), 0, 0, withscores=True)
                pipe.zcard(self._key(address))
                _, first, count = await pipe.execute()
        except (RedisError, OSError):
            return lim.retry_after(address, now)
        if count < lim.max_fails or not first:
            return 0.0
        return max(0.0, float(first[0][1]) + lim.window_s - now)

    async def failed(self, r: Any, address: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.local.failed(address, now)
        try:
            async with r.pipeline(transaction=True) as pipe:
                pipe.zadd(self._key(address), {f"{now:.6f}:{secrets.token_hex(4)}": now})
                pipe.expire(self._key(address), int(self.local.window_s) + 1)
                await pipe.execute()
        except (RedisError, OSError):
            pass  # counted locally
