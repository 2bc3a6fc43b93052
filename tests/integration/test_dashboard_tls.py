"""TLS for the dashboard, with a self-signed certificate made by the test.

- `sharpeye check` refuses a missing, unpaired or mismatched dashboard.tls_cert / tls_key with FILE:LINE.
- The dashboard serves HTTPS (and nothing in clear) with them: its session cookie is Secure and HSTS is sent.
- The supervisor's health check of the dashboard speaks HTTPS to it without verifying its own certificate.
- `sharpeye run` (and the dashboard on its own) refuses a non-loopback address without TLS: exit 2, a clear line.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashboard.users import add_user
from history import open_database
from pipeline.config import ConfigError, load_config
from pipeline.config.schema import is_loopback
from pipeline.runtime.supervisor import DashboardChild
from pipeline.tools.simulator import free_port
from tests.support.config import line_of
from tests.support.dashboard import spawn, stop, write_dashboard_config
from tests.support.waits import wait_for

ROOT = Path(__file__).resolve().parents[2]
PW = "correct horse battery"
UNVERIFIED = ssl.create_default_context()
UNVERIFIED.check_hostname = False
UNVERIFIED.verify_mode = ssl.CERT_NONE


def self_signed(folder: Path, name: str = "dash") -> tuple[Path, Path]:
    """A throwaway EC certificate for localhost / 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(path)
    return e.value.problems


def test_check_refuses_missing_unpaired_and_mismatched_tls_files_with_their_line(tmp_path: Path) -> None:
    self_signed(tmp_path, "a")
    self_signed(tmp_path, "b")
    path = write_dashboard_config(tmp_path, "dashboard:\n  tls_cert: missing.crt\n  tls_key: a.key")
    problems = _problems(path)
    assert len(problems) == 1 and problems[0].startswith(f"{path}:{line_of(path, 'tls_cert')}: dashboard.tls_cert:")
    assert "missing.crt" in problems[0] and "config file's folder" in problems[0]

    path = write_dashboard_config(tmp_path, "dashboard:\n  tls_cert: a.crt")
    assert any("tls_cert and tls_key go together" in p for p in _problems(path))

    path = write_dashboard_config(tmp_path, "dashboard:\n  tls_cert: a.crt\n  tls_key: b.key")  # another cert's key
    problems = _problems(path)
    assert len(problems) == 1 and "do not load as a pair" in problems[0], problems
    assert problems[0].startswith(f"{path}:{line_of(path, 'tls_cert')}: dashboard.tls_cert:")

    path = write_dashboard_config(tmp_path, "dashboard:\n  tls_cert: a.crt\n  tls_key: a.key")
    cfg = load_config(path)  # relative paths are taken from the config's folder
    assert cfg.dashboard.tls and cfg.dashboard.tls_cert == str(tmp_path / "a.crt")

    # the command itself: exit 2 with the FILE:LINE line, exit 0 once right
    bad = write_dashboard_config(tmp_path, "dashboard:\n  tls_cert: a.crt\n  tls_key: nope.key")
    res = subprocess.run([sys.executable, "-m", "cli.main", "check", str(bad)], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert res.returncode == 2 and f"{bad}:{line_of(bad, 'tls_key')}: dashboard.tls_key:" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.1.2.3", "192.168.1.5", "example.org", ""))


@pytest.fixture
def tls_dashboard(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    cert, key = self_signed(tmp_path)
    path = write_dashboard_config(tmp_path, f"bus: {{prefix: tls{time.monotonic_ns()}}}\n"
                                            f"dashboard: {{tls_cert: {cert.name}, tls_key: {key.name}}}")
    engine = open_database(load_config(path))
    add_user(engine, "op", PW, "operator", ["G1"], "Wang Wei")
    engine.dispose()
    port = free_port()
    log = tmp_path / "dashboard.log"
    proc = spawn("dashboard", "--config", str(path), "--redis", redis_url, "--port", str(port), log=log)
    try:
        yield {"port": port, "proc": proc, "log": log, "path": path, "redis": redis_url}
    finally:
        stop(proc)


def _get(url: str, **kw: Any) -> Any:
    return urllib.request.urlopen(url, timeout=5, context=UNVERIFIED, **kw)


def test_dashboard_serves_https_only_with_secure_session_cookies(tls_dashboard: dict[str, Any]) -> None:
    port, proc = tls_dashboard["port"], tls_dashboard["proc"]
    base = f"https://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, tls_dashboard["log"].read_text()[-3000:]
        try:
            with _get(base + "/healthz") as res:
                return bool(res.status == 200)
        except OSError:
            return False
    wait_for(up, 30, "the dashboard answering over HTTPS")
    with pytest.raises(OSError):  # nothing in clear on the same port
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
    with pytest.raises(urllib.error.URLError):  # a self-signed certificate is not trusted by default
        urllib.request.urlopen(base + "/healthz", timeout=5).read()

    req = urllib.request.Request(base + "/api/login", data=json.dumps({"username": "op", "password": PW}).encode(),
                                 headers={"Content-Type": "application/json", "Origin": base}, method="POST")
    with _get(req) as res:
        cookie = res.headers["set-cookie"]
        assert res.status == 200
        assert res.headers["strict-transport-security"].startswith("max-age=")
    attrs = [a.strip().lower() for a in cookie.split(";")]
    assert "secure" in attrs and "httponly" in attrs and "samesite=strict" in attrs, cookie
    token = cookie.split(";", 1)[0]
    with _get(urllib.request.Request(base + "/api/me", headers={"Cookie": token})) as res:
        assert json.loads(res.read())["user"]["username"] == "op"

    # the supervisor's probe: HTTPS, its own (unverified) certificate; over plain HTTP it would fail
    child = DashboardChild([], "127.0.0.1", port, bus_ok=lambda: True, tls=True)
    assert child.url == f"https://127.0.0.1:{port}/healthz"
    assert child._probe() is None
    plain = DashboardChild([], "0.0.0.0", port, bus_ok=lambda: True)
    assert plain._probe() is not None


def test_supervised_dashboard_over_tls_passes_its_health_checks(tmp_path: Path, redis_url: str) -> None:
    cert, key = self_signed(tmp_path)
    path = write_dashboard_config(tmp_path, f"dashboard: {{tls_cert: {cert}, tls_key: {key}}}")
    port = free_port()
    child = DashboardChild([sys.executable, "-m", "dashboard", "--config", str(path), "--redis", redis_url,
                            "--port", str(port)], "127.0.0.1", port, bus_ok=lambda: True, tls=True)
    child.start()
    try:
        t0 = time.monotonic()

        def healthy() -> bool:
            child.last_probe = 0.0  # probe at every call, not every DASHBOARD_PROBE_S
            assert child.unhealthy(time.monotonic()) is None
            return child.up
        wait_for(healthy, 30, "the supervisor's HTTPS probe to pass")
        print(f"supervised dashboard healthy over HTTPS after {time.monotonic() - t0:.1f} s")
    finally:
        child.terminate()
        child.kill()


def test_run_refuses_a_non_loopback_dashboard_without_tls(tmp_path: Path) -> None:
    path = write_dashboard_config(tmp_path, "dashboard: {host: 0.0.0.0}")
    res = subprocess.run([sys.executable, "-m", "cli.main", "run", "--config", str(path), "--port",
                          str(free_port())], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 2, res.stderr
    assert "refusing to serve the dashboard on '0.0.0.0' without TLS" in res.stderr and "tls_cert" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "data" / "redis" / "url").exists()  # refused before anything started
    # --host on the command line is held to the same rule, and so is the dashboard started on its own
    plain = tmp_path / "plain"
    plain.mkdir()
    res = subprocess.run([sys.executable, "-m", "cli.main", "run", "--config", str(write_dashboard_config(plain)),
                          "--host", "10.0.0.1", "--port", str(free_port())], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert res.returncode == 2 and "'10.0.0.1' without TLS" in res.stderr, res.stderr
    res = subprocess.run([sys.executable, "-m", "dashboard", "--config", str(path), "--redis", "redis://127.0.0.1:1"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 2 and "refusing to serve plain HTTP on '0.0.0.0'" in res.stderr, res.stderr
