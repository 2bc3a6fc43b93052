"""The scrubber: no password, token or config secret reaches a log line, a traceback or `sharpeye check`."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config, redact_url
from pipeline.config.secrets import MASK, Scrubber, install_log_scrubber, register_secrets, scrub, secrets_in

ROOT = Path(__file__).resolve().parents[3]

CONFIG = """\
redis_url: "rediss://sharpeye:R3dis-Pw@redis.example:6380/2"
grid_cells:
  G1:
    name: Xinhua Street
    officer: {name: Wang Wei, phone: "13800000000"}
cameras:
  gate:
    name: Gate
    source: "rtsp://admin:Cam-Pw-77@10.1.2.3:554/sub?Token=Tok-Abc-99"
    record_source: "rtsp://10.1.2.3:554/main?PASSWORD=Main-Pw-55&channel=1"
    grid_cell: G1
"""
SECRETS = ("R3dis-Pw", "Cam-Pw-77", "Tok-Abc-99", "Main-Pw-55")


def write(tmp_path: Path, text: str, name: str = "streams.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# --------------------------------------------------------------------------- the rules


@pytest.mark.parametrize("text, expected", [
    ("rtsp://admin:s3cret@10.0.0.5:554/ch1", "rtsp://admin:***@10.0.0.5:554/ch1"),
    ("open rtsp://admin:p@ss:w0rd@cam.local/x failed", "open rtsp://admin:***@cam.local/x failed"),
    ("redis://:hunter22@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("rediss://default:hunter22@r.example:6380", "rediss://default:***@r.example:6380"),
    ("http://cam/snap.jpg?user=a&password=xyz&w=640", "http://cam/snap.jpg?user=a&password=***&w=640"),
    ("rtsp://h/s?PassWd=1;pwd=2&TOKEN=3&secret=4&key=5", "rtsp://h/s?PassWd=***;pwd=***&TOKEN=***&secret=***&key=***"),
    ("https://h/x?access_token=abc&api_key=def&client-secret=ghi",
     "https://h/x?access_token=***&api_key=***&client-secret=***"),
    ("unix:///run/redis.sock?password=sockpw", "unix:///run/redis.sock?password=***"),
    ("'rtsp://u:pw@h/x'", "'rtsp://u:***@h/x'"),
])
def test_url_passwords_and_secret_parameters_are_masked(text: str, expected: str) -> None:
    assert Scrubber().scrub(text) == expected


@pytest.mark.parametrize("text", [
    "rtsp://10.0.0.5:554/ch1", "rtsp://admin@10.0.0.5/ch1", "monkey=3 keyframe=1 passes=2",
    "use rtsp://[user:password@]host[:port]/path", "user@example.com wrote 12:30", "rtsp://[::1]:554/x",
])
def test_what_is_no_secret_is_left_alone(text: str) -> None:
    assert Scrubber().scrub(text) == text


def test_named_secrets_are_masked_anywhere_also_percent_encoded() -> None:
    s = Scrubber(["p@ss/word!", "abc"])
    assert s.scrub("auth failed for p@ss/word! at 10:00") == f"auth failed for {MASK} at 10:00"
    assert s.scrub("rtsp://u:p%40ss%2Fword%21@h/x") == f"rtsp://u:{MASK}@h/x"
    # a short value is only masked inside a URL or parameter: masking "abc" everywhere would wreck the logs
    assert s.scrub("abcdef") == "abcdef"


def test_secrets_are_collected_from_a_config_by_url_and_by_name() -> None:
    found = secrets_in({
        "redis_url": "redis://:Redis-1@h:6379/0",
        "cameras": {"a": {"source": "rtsp://u:Cam-1@h/x?token=Tok-1", "name": "Lobby"}},
        "dashboard": {"metrics_token": "Metrics-Token-1", "database_url": "postgresql://u:Db-1@db/x"},
        "password": "Top-1",
    })
    assert {"Redis-1", "Cam-1", "Tok-1", "Metrics-Token-1", "Db-1", "Top-1"} <= found
    assert "Lobby" not in found and "u" not in found


def test_redact_url_is_the_scrubber() -> None:
    assert redact_url("rtsp://admin:s3cret@10.0.0.5:554/ch1") == "rtsp://admin:***@10.0.0.5:554/ch1"
    assert redact_url("rtsp://cam.local/live?token=zz9") == "rtsp://cam.local/live?token=***"
    assert redact_url("rtsp://Cam.Local:554/x") == "rtsp://Cam.Local:554/x"  # the rest is kept as written


# --------------------------------------------------------------------------- logs and exceptions


def test_log_records_of_any_logger_are_scrubbed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = load_config(write(tmp_path, CONFIG))
    install_log_scrubber(cfg)
    log = logging.getLogger("pipeline.ingest.test_secrets")  # a child logger: root filters alone miss it
    with caplog.at_level(logging.INFO):
        log.info("opening %s", cfg.cameras["gate"].source)
        log.warning("redis %s refused password %s", cfg.redis_url, "R3dis-Pw")
        log.info("camera %(cam)s: %(url)s", {"cam": "gate", "url": cfg.cameras["gate"].record_source})
        try:
            raise ConnectionError(f"cannot connect to {cfg.redis_url} (password Cam-Pw-77 rejected)")
        except ConnectionError:
            log.exception("bus down")
        log.info("uvicorn-style %s %s", "GET", "/api/alerts")
    text = caplog.text
    for secret in SECRETS:
        assert secret not in text, (secret, text)
    assert "rtsp://admin:***@10.1.2.3:554/sub?Token=***" in text
    assert "cannot connect to rediss://sharpeye:***@redis.example:6380/2 (password *** rejected)" in text
    assert "Traceback" in text and "ConnectionError" in text
    plain = caplog.records[-1]
    assert plain.args == ("GET", "/api/alerts")  # a record without a secret keeps its arguments


def test_uncaught_exceptions_are_printed_scrubbed(tmp_path: Path) -> None:
    cfg = write(tmp_path, CONFIG)
    code = textwrap.dedent(f"""
        import threading
        from pipeline.config import load_config
        from pipeline.config.secrets import install_log_scrubber
        cfg = load_config({str(cfg)!r})
        install_log_scrubber(cfg)
        def camera_thread():
            raise RuntimeError("thread saw " + cfg.cameras["gate"].source)
        t = threading.Thread(target=camera_thread, name="cam-gate")
        t.start()
        t.join()
        raise RuntimeError("main saw Cam-Pw-77 and " + cfg.redis_url)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 1
    assert "Exception in thread cam-gate" in r.stderr and "RuntimeError: main saw *** and rediss://" in r.stderr
    for secret in SECRETS:
        assert secret not in r.stderr, r.stderr


def test_secrets_registered_by_hand_are_masked() -> None:
    register_secrets(["Generated-Redis-Password-0xBEEF"])
    assert scrub("AUTH Generated-Redis-Password-0xBEEF") == "AUTH ***"


# --------------------------------------------------------------------------- sharpeye check


def test_check_output_never_shows_a_secret(tmp_path: Path) -> None:
    good = write(tmp_path, CONFIG)
    r = subprocess.run([sys.executable, "-m", "cli.main", "check", str(good)], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "redis external rediss://sharpeye:***@redis.example:6380/2" in r.stdout
    bad = write(tmp_path, CONFIG.replace("10.1.2.3:554/sub", "10.1.2.3:99999/sub")
                .replace("rediss://sharpeye", "http://sharpeye") + "    zones: {Cam-Pw-77: {polygon: []}}\n",
                "bad.yaml")
    r = subprocess.run([sys.executable, "-m", "cli.main", "check", str(bad)], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 2
    out = r.stdout + r.stderr
    assert "cameras.gate.source: 'rtsp://admin:***@10.1.2.3:99999/sub?Token=***': Port out of range" in out
    assert "redis_url: 'http://sharpeye:***@redis.example:6380/2': the scheme must be" in out
    assert "cameras.gate.zones.***.polygon" in out  # a secret used as a name is masked too
    for secret in SECRETS:
        assert secret not in out, out


def test_config_error_messages_are_scrubbed_in_process(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, CONFIG.replace("10.1.2.3:554/sub", "10.1.2.3:0/sub")))
    text = str(ei.value)
    assert "port 0" in text and "Cam-Pw-77" not in text and "Tok-Abc-99" not in text
