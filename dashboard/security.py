"""Log-in, server-side sessions, CSRF tokens, the log-in rate limit and the security headers.

- A session is a random 256-bit token in an HttpOnly, SameSite=Strict cookie (Secure when the
  page is served over TLS); the database keeps only its SHA-256, so a copy of the table opens
  no session.  Sessions end after ``SESSION_IDLE_S`` without a request (a shift) or
  ``SESSION_MAX_S`` in all, on log-out, on a password change and when the user is disabled.
- Each session has its own CSRF token, handed to the page by ``/api/me``; every state-changing
  request must send it back in ``X-CSRF-Token``.  The log-in itself (no session yet) must be a
  JSON request from the same origin, which a cross-site form cannot make.
- Log-in attempts are limited per client address (``IP_MAX_FAILS`` failures in ``IP_WINDOW_S``)
  and per (name, address) pair with growing delays (:func:`throttle_delay`), never by locking an
  account: a stranger who knows a name can slow only their own tries.  Unknown names, wrong
  passwords and throttled tries get the same answers in about the same time; an admin lists and
  clears throttles.  Every attempt, failed or not, goes into the audit log.
"""

from __future__ import annotations

import hashlib
import json
import re
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
from history.schema import login_throttles, sessions, users

COOKIE = "sharpeye_session"
CSRF_HEADER = "x-csrf-token"
SESSION_IDLE_S = 12 * 3600.0
SESSION_MAX_S = 24 * 3600.0
TOUCH_EVERY_S = 60.0  # last_seen is written at most this often
THROTTLE_FREE = 3  # failures in a row for one (name, address) before tries are slowed
THROTTLE_FIRST_S = 5.0  # the first wait; each further failure doubles it
THROTTLE_MAX_S = 300.0  # the longest wait between two tries of one name from one address
THROTTLE_FORGET_S = 24 * 3600.0  # failures older than this no longer count
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
    problem: str | None = None  # bad_credentials, rate_limited, disabled
    retry_after: float = 0.0


def throttle_delay(fails: int) -> float:
    """Seconds a (name, address) pair waits after ``fails`` failures in a row: none for the first few
    (typing mistakes), then 5, 10, 20, ... up to ``THROTTLE_MAX_S``."""
    if fails < THROTTLE_FREE:
        return 0.0
    return float(min(THROTTLE_MAX_S, THROTTLE_FIRST_S * 2 ** min(fails - THROTTLE_FREE, 20)))


def _throttle_key(username: str, remote: str | None) -> tuple[str, str]:
    return username[:64], (remote or "?")[:64]


def throttled_for(conn: Any, username: str, remote: str | None, now: float) -> float:
    """Seconds this name may not be tried from this address; 0 when it may now."""
    name, addr = _throttle_key(username, remote)
    row = conn.execute(select(login_throttles.c.until).where(login_throttles.c.username == name,
                                                             login_throttles.c.remote == addr)).first()
    return max(0.0, row.until - now) if row is not None else 0.0


def _count_failure(conn: Any, username: str, remote: str | None, now: float) -> float:
    """One more failure for (name, address), known name or not; returns the delay it now has."""
    name, addr = _throttle_key(username, remote)
    row = conn.execute(select(login_throttles).where(login_throttles.c.username == name,
                                                     login_throttles.c.remote == addr)).first()
    fails = 1 if row is None or row.last_at < now - THROTTLE_FORGET_S else row.fails + 1
    delay = throttle_delay(fails)
    values = {"fails": fails, "last_at": now, "until": now + delay}
    if row is None:
        conn.execute(login_throttles.insert().values(username=name, remote=addr, **values))
    else:
        conn.execute(update(login_throttles).where(login_throttles.c.username == name,
                                                   login_throttles.c.remote == addr).values(**values))
    return delay


def check_login(engine: Engine, username: str, password: str, remote: str | None) -> LoginResult:
    """Verify a log-in; the audit log records every attempt.

    Failures are counted per (name, address), whether the name exists or not, and each one past the first
    few makes that pair wait longer (:func:`throttle_delay`): a stranger guessing from elsewhere slows down
    only their own tries, never the owner's log-in from the owner's desk.  Every answer costs one
    argon2 verification (a dummy hash for unknown names and throttled tries), so unknown names, wrong
    passwords and throttled tries look and take the same.
    """
    now = time.time()
    with engine.begin() as conn:
        row = conn.execute(select(users).where(users.c.username == username)).first()
        wait = throttled_for(conn, username, remote, now)
        if wait > 0:
            verify_password(DUMMY_HASH, password)  # as long as a real check
            record(conn, "login_throttled", user_id=row.id if row else None, username=row.username if row else None,
                   note=None if row else username[:64], remote=remote, data={"retry_after_s": round(wait, 1)})
            return LoginResult(None, "rate_limited", wait)
        if row is None or not verify_password(row.password_hash, password):
            if row is None:
                verify_password(DUMMY_HASH, password)  # an unknown name takes as long as a wrong password
            delay = _count_failure(conn, username, remote, now)
            record(conn, "login_failed", user_id=row.id if row else None, username=row.username if row else None,
                   note=None if row else username[:64], remote=remote,
                   data={"throttled_for_s": delay} if delay else None)
            return LoginResult(None, "bad_credentials")
        if row.disabled:
            record(conn, "login_refused_disabled", user_id=row.id, username=row.username, remote=remote)
            return LoginResult(None, "disabled")
        values: dict[str, Any] = {"failed_logins": 0, "locked_until": None}
        if needs_rehash(row.password_hash):
            from dashboard.users import hash_password
            values["password_hash"] = hash_password(password)
        conn.execute(update(users).where(users.c.id == row.id).values(**values))
        name, addr = _throttle_key(username, remote)
        conn.execute(login_throttles.delete().where(login_throttles.c.username == name,
                                                    login_throttles.c.remote == addr))
        record(conn, "login", user_id=row.id, username=row.username, remote=remote)
        return LoginResult(from_row(row))


def list_throttles(engine: Engine, now: float | None = None) -> list[dict[str, Any]]:
    """Every (name, address) pair with failures not yet forgotten, newest first (for the admin)."""
    now = time.time() if now is None else now
    with engine.connect() as conn:
        rows = conn.execute(select(login_throttles).where(login_throttles.c.last_at >= now - THROTTLE_FORGET_S)
                            .order_by(login_throttles.c.last_at.desc()).limit(1000)).all()
    return [{"username": r.username, "remote": r.remote, "fails": r.fails, "last_at": r.last_at,
             "retry_after": round(max(0.0, r.until - now), 1)} for r in rows]


def clear_throttles(engine: Engine, username: str, remote: str | None = None) -> int:
    """Forget the failures of a name (from one address, or all); returns how many pairs were cleared."""
    with engine.begin() as conn:
        q = login_throttles.delete().where(login_throttles.c.username == username[:64])
        if remote is not None:
            q = q.where(login_throttles.c.remote == remote[:64])
        n = conn.execute(q).rowcount
        conn.execute(update(users).where(users.c.username == username).values(failed_logins=0, locked_until=None))
    return int(n or 0)


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


MAX_BODY_BYTES = 1 << 20  # a request body larger than this is refused (413) before any route reads it
# the few routes that take a picture in their body get more (a patrol mark's JPEG: 2.8 MB as base64)
LARGER_BODIES = ((re.compile(r"/api/patrols/[^/]+/marks"), 4 << 20),)
_BAD_RAW = (b"%00", b"\x00")


async def _answer(send: Send, status: int, code: str) -> None:
    body = json.dumps({"detail": {"code": code}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware run before routing: a size limit on request bodies and no NUL in a path.

    - A body over ``max_body`` bytes (declared by Content-Length, or counted as it arrives) is answered
      413 ``body_too_large`` without the route ever seeing it: an unauthenticated 300 MB post costs
      at most ``max_body`` of memory.  Bodies are read here (they are small) and replayed to the app.
    - A NUL in the path, raw (``%00``) or decoded, is answered 404: no file name holds one.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_body: int = MAX_BODY_BYTES):
        self.app = app
        self.max_body = max_body

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)  # transparent: app.routes, app.state are the wrapped app's

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        raw = scope.get("raw_path") or b""
        if any(b in raw.lower() for b in _BAD_RAW) or "\x00" in scope.get("path", ""):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4404})
                return
            await _answer(send, 404, "not_found")  # a path with NUL names nothing, as any unknown path
            return
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = next((n for rx, n in LARGER_BODIES if rx.fullmatch(scope.get("path", ""))), self.max_body)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        try:
            if declared is not None and int(declared) > limit:
                await _answer(send, 413, "body_too_large")
                return
        except ValueError:
            await _answer(send, 400, "bad_request")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _answer(send, 413, "body_too_large")
                return
            chunks.append(chunk)
            if not msg.get("more_body"):
                break
        # after the body: the client's disconnect, as the server reports it
        await self.app(scope, body_then(b"".join(chunks), receive), send)


def body_then(body: bytes, after: Receive) -> Receive:
    """An ASGI ``receive`` that hands over the whole request body in one message, then defers to ``after``."""
    sent = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await after()

    return receive


SECRET_FIELDS = frozenset({"password", "new_password", "old_password", "token", "csrf", "secret", "key"})


def validation_errors(errors: Any) -> list[dict[str, Any]]:
    """A request's validation problems as the page needs them: where and what, never the value sent
    (it may be a password, or a number JSON cannot even write back, such as 1e999)."""
    out: list[dict[str, Any]] = []
    try:
        for e in list(errors)[:20]:
            loc = [x if isinstance(x, int) else str(x)[:64] for x in (e.get("loc") or ())]
            secret = any(str(x).lower() in SECRET_FIELDS for x in loc)
            out.append({"loc": loc, "type": str(e.get("type", ""))[:64],
                        "msg": "invalid value" if secret else str(e.get("msg", ""))[:200]})
    except Exception:  # noqa: BLE001 - a malformed error list still gets a clean answer
        return [{"loc": [], "type": "invalid", "msg": "invalid request"}]
    return out
