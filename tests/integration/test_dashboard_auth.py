"""Users, roles, sessions, CSRF, rate limits and headers of the dashboard, in-process against a real
Redis and a SQLite history database; the `sharpeye users` command as a subprocess."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from dashboard.app import create_app
from dashboard.security import COOKIE, IP_MAX_FAILS, THROTTLE_FREE
from dashboard.users import add_user
from history import open_database
from history.schema import actions, login_throttles, sessions, users
from pipeline.config import load_config
from pipeline.publish import bus
from tests.support.dashboard import alert_msg, write_dashboard_config

STATIC = Path(__file__).resolve().parents[2] / "dashboard" / "static"
TOKEN = "scrape-token-0123456789"
PW = "correct horse battery"


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> Iterator[dict[str, object]]:
    prefix = f"auth{time.monotonic_ns()}"
    extra = f"bus: {{prefix: {prefix}}}\ndashboard: {{metrics_token: {TOKEN}}}"
    cfg = load_config(write_dashboard_config(tmp_path, extra))
    engine = open_database(cfg)
    add_user(engine, "op", PW, "operator", ["G1"], "Wang Wei")
    add_user(engine, "eng", PW, "engineer", ["G1"])
    add_user(engine, "boss", PW, "admin", ["*"])
    add_user(engine, "op2", PW, "operator", ["G2"], "Li Na")
    app = create_app(cfg, redis_url, engine)
    yield {"cfg": cfg, "engine": engine, "app": app, "prefix": prefix, "redis": redis_url}
    engine.dispose()


def client(env: dict[str, object], base: str = "http://testserver") -> TestClient:
    return TestClient(env["app"], base_url=base, follow_redirects=False)  # type: ignore[arg-type]


def login(env: dict[str, object], name: str, base: str = "http://testserver") -> tuple[TestClient, str]:
    c = client(env, base)
    r = c.post("/api/login", json={"username": name, "password": PW})
    assert r.status_code == 200, r.text
    return c, r.json()["csrf"]


def _api_routes(routes: list[object]) -> Iterator[object]:
    """Every route, also those inside included routers (newer FastAPI keeps them nested)."""
    for r in routes:
        nested = getattr(r, "original_router", None)
        if nested is not None:
            yield from _api_routes(nested.routes)
        else:
            yield r


def test_every_route_but_login_and_health_needs_a_session(env: dict[str, object]) -> None:
    c = client(env)
    inner = env["app"].app  # type: ignore[attr-defined]
    open_routes = {("/login", "GET"), ("/api/login", "POST"), ("/healthz", "GET"), ("/metrics", "GET"),
                   ("/favicon.ico", "GET")}  # the icon the log-in page shows too
    # the officer's phone page: no session, but a one-time link; an unknown link is a plain 404
    link_routes = {("/o/{token}", "GET"), ("/api/o/{token}", "GET"), ("/api/o/{token}/snapshot", "GET"),
                   ("/api/o/{token}/steps", "POST")}
    checked = 0
    for route in _api_routes(inner.routes):
        if not isinstance(route, APIRoute):
            continue
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        for method in route.methods:
            if (route.path, method) in open_routes:
                continue
            if (route.path, method) in link_routes:
                r = c.request(method, path, json={"step": "signed_for"})
                assert r.status_code == 404, f"{method} {route.path} answered {r.status_code} for an unknown link"
                continue
            r = c.request(method, path)
            assert r.status_code in (401, 303), f"{method} {route.path} answered {r.status_code} without a session"
            if r.status_code == 303:
                assert r.headers["location"] == "/login" and method == "GET" and not path.startswith("/api/")
            checked += 1
    assert checked >= 15
    assert c.get("/metrics").status_code == 401
    assert c.get("/static/app.js").status_code == 401  # only the log-in page's own files are public
    assert c.get("/static/login.js").status_code == 200 and c.get("/static/i18n/zh-CN.json").status_code == 200
    assert c.get("/static/../app.py").status_code in (401, 404)
    assert c.get("/healthz").json() == {"ok": True}
    assert c.get("/login").status_code == 200


def test_login_sets_a_strict_httponly_cookie_and_passwords_are_argon2id(env: dict[str, object]) -> None:
    c = client(env)
    r = c.post("/api/login", json={"username": "op", "password": PW})
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=/" in cookie and "Secure" not in cookie
    tls = client(env, "https://testserver").post("/api/login", json={"username": "op", "password": PW})
    assert "Secure" in tls.headers["set-cookie"]
    me = c.get("/api/me").json()
    assert me["user"]["username"] == "op" and me["csrf"] == r.json()["csrf"] and me["timezone"] == "Asia/Shanghai"
    assert set(me["cells"]) == {"G1"}
    with env["engine"].connect() as conn:  # type: ignore[attr-defined]
        assert conn.execute(select(users.c.password_hash).where(users.c.username == "op")).scalar().startswith(
            "$argon2id$")
        token = r.cookies[COOKIE]
        stored = conn.execute(select(sessions.c.id)).scalars().all()
        assert token not in stored  # only its hash is kept
        assert conn.execute(select(actions.c.action).where(actions.c.username == "op")).scalars().all() == [
            "login", "login"]


def test_forged_requests_are_refused(env: dict[str, object]) -> None:
    c, csrf = login(env, "op")
    assert c.post("/api/logout").json()["detail"]["code"] == "csrf"  # no token
    assert c.post("/api/logout", headers={"X-CSRF-Token": "forged"}).status_code == 403
    _, other_csrf = login(env, "op2")
    assert c.post("/api/logout", headers={"X-CSRF-Token": other_csrf}).status_code == 403  # another user's token
    # a made-up session id, or the stored (hashed) id of a real one, opens nothing
    with env["engine"].connect() as conn:  # type: ignore[attr-defined]
        stored = conn.execute(select(sessions.c.id)).scalars().first()
    for forged in ("x" * 43, stored):
        f = client(env)
        f.cookies.set(COOKIE, forged)
        assert f.get("/api/me").status_code == 401
        assert f.get("/").status_code == 303
    # log-in from another site (Origin) or as a form post: refused before the password is even checked
    assert client(env).post("/api/login", json={"username": "op", "password": PW},
                            headers={"Origin": "http://evil.example"}).status_code == 403
    assert client(env).post("/api/login", data={"username": "op", "password": PW}).status_code in (403, 422)
    assert c.post("/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert c.get("/api/me").status_code == 401  # the session is gone server-side


def test_failures_slow_one_name_from_one_address_and_the_address_is_rate_limited(env: dict[str, object]) -> None:
    """No account lock a stranger can trigger: failures slow down (name, address) pairs, known names and
    unknown alike, and the owner at another desk logs in as usual."""
    c = client(env)
    for name in ("op", "nobody-at-all"):  # a known and an unknown name answer alike
        for _ in range(THROTTLE_FREE):
            r = c.post("/api/login", json={"username": name, "password": "wrong-password"})
            assert r.status_code == 401 and r.json()["detail"]["code"] == "bad_credentials"
        r = c.post("/api/login", json={"username": name, "password": PW})  # right password, too soon
        assert r.status_code == 429 and r.json()["detail"]["code"] == "rate_limited"
    desk = TestClient(env["app"], base_url="http://testserver", follow_redirects=False,  # type: ignore[arg-type]
                      client=("10.0.0.7", 50000))
    assert desk.post("/api/login", json={"username": "op", "password": PW}).status_code == 200
    with env["engine"].begin() as conn:  # type: ignore[attr-defined]
        conn.execute(update(login_throttles).values(until=time.time() - 1))  # the delay has passed
    assert c.post("/api/login", json={"username": "op", "password": PW}).status_code == 200
    # the address: after IP_MAX_FAILS failures even a right password waits
    for i in range(IP_MAX_FAILS):
        code = c.post("/api/login", json={"username": f"nobody{i}", "password": "x"}).status_code
        if code == 429:
            break
    r = c.post("/api/login", json={"username": "eng", "password": PW})
    assert r.status_code == 429 and r.json()["detail"]["retry_after"] > 0


def test_the_address_limit_is_shared_by_every_dashboard_on_the_bus(env: dict[str, object], tmp_path: Path) -> None:
    """Behind a load balancer an attacker's tries spread over N dashboards: they count together (the bus
    holds them), so the N-th process refuses as the first one would."""
    other = create_app(env["cfg"], env["redis"], env["engine"])  # type: ignore[arg-type]
    a, b = client(env), TestClient(other, base_url="http://testserver", follow_redirects=False)
    for i in range(IP_MAX_FAILS):
        assert (a if i % 2 else b).post("/api/login", json={"username": f"x{i}", "password": "x"}).status_code == 401
    for c in (a, b):
        r = c.post("/api/login", json={"username": "eng", "password": PW})
        assert r.status_code == 429 and 0 < r.json()["detail"]["retry_after"] <= 301
    r = bus.connect(env["redis"])  # type: ignore[arg-type]
    assert r.zcard(f"{env['prefix']}:login:fails:testclient") == IP_MAX_FAILS
    assert 0 < r.ttl(f"{env['prefix']}:login:fails:testclient") <= 301  # the key goes with the window


def test_roles_gate_pages_and_api(env: dict[str, object]) -> None:
    op, _ = login(env, "op")
    eng, _ = login(env, "eng")
    boss, boss_csrf = login(env, "boss")
    for path in ("/users", "/engineer"):
        r = op.get(path)
        assert r.status_code == 403 and 'id="forbidden"' in r.text
    for path in ("/api/users", "/api/health"):
        assert op.get(path).status_code == 403
    assert op.post("/api/users", json={}).status_code == 403  # the CSRF check comes first: no token
    assert eng.get("/engineer").status_code == 200 and eng.get("/api/health").status_code == 200
    assert eng.get("/users").status_code == 403 and eng.get("/api/users").status_code == 403
    assert boss.get("/users").status_code == 200
    names = {u["username"] for u in boss.get("/api/users").json()}
    assert names == {"op", "eng", "boss", "op2"}
    r = boss.post("/api/users", json={"username": "new1", "password": "short", "role": "operator", "cells": ["G1"]},
                  headers={"X-CSRF-Token": boss_csrf})
    assert r.status_code == 400 and "8 characters" in r.json()["detail"]["message"]
    r = boss.patch("/api/users/op", json={"disabled": True}, headers={"X-CSRF-Token": boss_csrf})
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert op.get("/api/me").status_code == 401  # disabling ends the sessions at once
    r = client(env).post("/api/login", json={"username": "op", "password": PW})
    assert r.status_code == 401 and r.json()["detail"]["code"] == "disabled"


def test_an_operator_sees_only_the_cameras_and_alerts_of_their_cells(env: dict[str, object]) -> None:
    r = bus.connect(str(env["redis"]))
    keys = bus.BusKeys(str(env["prefix"]))
    snap_dir = Path(env["cfg"].data_path()) / "snapshots"  # type: ignore[attr-defined]
    for cam in ("lobby", "square"):
        (snap_dir / cam / "d").mkdir(parents=True)
        (snap_dir / cam / "d" / "s.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    bus.publish_event(r, keys, alert_msg("in-g1", camera="lobby", snapshot="snapshots/lobby/d/s.jpg"), 1000)
    bus.publish_event(r, keys, alert_msg("in-g2", camera="square", snapshot="snapshots/square/d/s.jpg"), 1000)
    op, csrf = login(env, "op")
    assert {c["id"] for c in op.get("/api/cameras").json()} == {"lobby", "gate"}
    assert op.get("/api/cameras/square").status_code == 404 and op.get("/api/cameras/lobby").status_code == 200
    assert {a["alert_id"] for a in op.get("/api/alerts").json()["alerts"]} == {"in-g1"}
    assert op.get("/api/alerts/in-g2").status_code == 404
    assert op.get("/api/alerts/in-g1").json()["alert"]["grid_cell"]["id"] == "G1"
    assert op.post("/api/alerts/in-g2/actions", json={"action": "acknowledge"},
                   headers={"X-CSRF-Token": csrf}).status_code == 404
    assert op.get("/snapshots/square/d/s.jpg").status_code == 404
    assert op.get("/snapshots/lobby/d/s.jpg").content == b"\xff\xd8\xff\xd9"
    r.hset(keys.cameras, "square", json.dumps({"state": "streaming", "updated": time.time()}))
    r.hset(keys.cameras, "lobby", json.dumps({"state": "streaming", "updated": time.time()}))
    m = op.get("/metrics").text
    assert 'camera="lobby"' in m and 'camera="square"' not in m
    boss, _ = login(env, "boss")
    assert {a["alert_id"] for a in boss.get("/api/alerts").json()["alerts"]} == {"in-g1", "in-g2"}


def test_metrics_take_the_scrape_token(env: dict[str, object]) -> None:
    c = client(env)
    assert c.get("/metrics", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    r = c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")


def test_security_headers_and_pages_without_inline_script(env: dict[str, object]) -> None:
    c, _ = login(env, "op")
    for path in ("/login", "/", "/api/me", "/healthz"):
        h = client(env).get(path).headers if path in ("/login", "/healthz") else c.get(path).headers
        csp = h["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert h["x-frame-options"] == "DENY" and h["x-content-type-options"] == "nosniff"
    assert c.get("/api/me").headers["cache-control"] == "no-store"
    for html in STATIC.glob("*.html"):
        text = html.read_text()
        for m in re.finditer(r"<script([^>]*)>(.*?)</script>", text, re.S):
            assert 'src="/static/' in m.group(1) and not m.group(2).strip(), f"inline script in {html.name}"
        assert not re.search(r"\son[a-z]+=", text), f"inline event handler in {html.name}"
        assert "style=" not in text, f"inline style in {html.name}"


def _cli(cfg: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``sharpeye users ARGS --config CFG`` through the CLI's main in this process (stdin, stdout and stderr
    swapped for strings); the first call of the test below runs the real entry point."""
    import contextlib
    import io

    from cli.main import main as sharpeye

    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = sharpeye(["users", *args, "--config", str(cfg)])
    finally:
        sys.stdin = old_stdin
    return subprocess.CompletedProcess(["sharpeye", "users", *args], code, out.getvalue(), err.getvalue())


def test_users_command_adds_changes_and_disables(tmp_path: Path, redis_url: str) -> None:
    cfg_path = write_dashboard_config(tmp_path)
    r = subprocess.run([sys.executable, "-m", "cli.main", "users", "add", "zhang", "--role", "engineer", "--cells",
                        "G1,G2", "--display-name", "张三", "--password-stdin", "--config", str(cfg_path)],
                       input="first-password\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "zhang: engineer, cells G1,G2" in r.stdout
    assert _cli(cfg_path, "add", "zhang", "--password-stdin", stdin="other-password\n").returncode == 2
    assert _cli(cfg_path, "add", "bad", "--password-stdin", stdin="short\n").returncode == 2
    listing = _cli(cfg_path, "list").stdout
    assert re.search(r"zhang\s+张三\s+engineer\s+G1,G2\s+zh-CN\s+active", listing), listing
    cfg = load_config(cfg_path)
    app = create_app(cfg, redis_url)
    c = TestClient(app)
    assert c.post("/api/login", json={"username": "zhang", "password": "first-password"}).status_code == 200
    assert _cli(cfg_path, "passwd", "zhang", "--password-stdin", stdin="second-password\n").returncode == 0
    assert c.get("/api/me").status_code == 401  # the password change ended the session
    assert TestClient(app).post("/api/login", json={"username": "zhang", "password": "first-password"}
                                ).status_code == 401
    assert TestClient(app).post("/api/login", json={"username": "zhang", "password": "second-password"}
                                ).status_code == 200
    assert _cli(cfg_path, "disable", "zhang").returncode == 0
    assert "disabled" in _cli(cfg_path, "list").stdout
    assert TestClient(app).post("/api/login", json={"username": "zhang", "password": "second-password"}
                                ).json()["detail"]["code"] == "disabled"
    assert _cli(cfg_path, "enable", "zhang").returncode == 0
    assert _cli(cfg_path, "passwd", "nobody", "--password-stdin", stdin="whatever-pass\n").returncode == 2


@pytest.mark.parametrize("trusted", [[], ["127.0.0.0/8"]])
def test_forwarded_addresses_are_believed_only_from_trusted_proxies(tmp_path: Path, redis_url: str,
                                                                    trusted: list[str]) -> None:
    """A balancer at a trusted address passes the operator's address on (the log-in limit and the audit log
    see it); anyone else's X-Forwarded-For is ignored (uvicorn alone would believe 127.0.0.1's)."""
    import requests

    from pipeline.tools.simulator import free_port
    from tests.support.dashboard import spawn, stop, wait_http

    prefix = f"fwd{time.monotonic_ns()}"
    cfg_path = write_dashboard_config(tmp_path, f"bus: {{prefix: {prefix}}}\ndashboard: {{trusted_proxies: {trusted}}}")
    port, log = free_port(), tmp_path / "dash.log"
    proc = spawn("dashboard", "--config", str(cfg_path), "--redis", redis_url, "--port", str(port), log=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz", 30, proc, log)
        res = requests.post(base + "/api/login", json={"username": "who", "password": "x"},
                            headers={"Origin": base, "X-Forwarded-For": "203.0.113.9"}, timeout=30)
        assert res.status_code == 401
        r = bus.connect(redis_url)
        seen = {k.decode().rsplit(":", 1)[1] for k in r.scan_iter(f"{prefix}:login:fails:*")}
        assert seen == ({"203.0.113.9"} if trusted else {"127.0.0.1"}), seen
    finally:
        stop(proc)
