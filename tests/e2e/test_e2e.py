"""End to end on real parts: RTSP simulator → `sharpeye run` (worker, embedded Redis, dashboard)
→ the alert appears in the dashboard page in headless Chromium."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import jsonschema
import pytest

from pipeline.tools.simulator import RtspSimulator, free_port
from tests.support.assets import missing_asset, require_camsim
from tests.support.config import write_config
from tests.support.waits import http_up, wait_for

CHROMIUM = "/usr/bin/chromium"
METRICS_TOKEN = "e2e-scrape-token-0123456789"
pytestmark = pytest.mark.e2e


def test_person_on_rtsp_camera_alerts_on_dashboard(tmp_path: Path, person_clip: Path) -> None:
    require_camsim()
    if not Path(CHROMIUM).exists():
        missing_asset(f"Debian chromium not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    port = free_port()
    with RtspSimulator({"lobby": person_clip}) as sim:
        cfg = write_config(tmp_path, {
            "lobby": {"name": "Lobby camera", "source": sim.url("lobby"), "alert_labels": ["person"]},
            "dead": {"name": "Unplugged camera", "source": f"rtsp://127.0.0.1:{free_port()}/nothing"},
        }, data_dir="data", dashboard={"metrics_token": METRICS_TOKEN})
        # the dashboard needs a log-in: an operator of every cell, English pages
        add = subprocess.run([sys.executable, "-m", "cli.main", "users", "add", "e2e", "--config", str(cfg),
                              "--role", "operator", "--cells", "*", "--locale", "en", "--password-stdin"],
                             input="e2e-password\n", capture_output=True, text=True, timeout=60)
        assert add.returncode == 0, add.stderr
        run = subprocess.Popen([sys.executable, "-m", "cli.main", "run", "--config", str(cfg),
                                "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: http_up(base + "/healthz"), 30, f"{base}/healthz", interval=0.2)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                    "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
                page = browser.new_page()
                page.goto(base + "/")
                assert page.url.endswith("/login")  # no session: the log-in page
                page.fill("#username", "e2e")
                page.fill("#password", "e2e-password")
                page.click("#submit")
                page.wait_for_url(base + "/", timeout=60_000)  # argon2 log-in on a loaded 2-core machine
                t0 = time.monotonic()
                alert = page.locator('#alerts li.alert[data-camera="lobby"]').first
                alert.wait_for(timeout=30_000)
                seen_after = time.monotonic() - t0
                assert "person" in alert.locator(".label").inner_text()
                assert "Xinhua Street" in alert.locator(".cell").inner_text()
                assert "Wang Wei" in alert.locator(".officer").inner_text()
                # the snapshot is served and is a real JPEG
                page.wait_for_function(
                    "() => { const i = document.querySelector('#alerts li.alert .snap');"
                    " return i && i.complete && i.naturalWidth > 0; }", timeout=10_000)
                assert page.locator("#alerts li.alert .snap").first.evaluate("i => i.naturalWidth") == 768
                # cameras: the live one online, the unreachable one offline
                page.locator('#cameras li[data-camera="lobby"][data-online="true"]').wait_for(timeout=10_000)
                assert page.locator('#cameras li[data-camera="dead"]').get_attribute("data-online") == "false"
                browser.close()
            print(f"alert visible {seen_after:.1f} s after the page opened")

            # health: Prometheus metrics and `sharpeye status` show the same cameras
            scrape = urllib.request.Request(base + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            with urllib.request.urlopen(scrape, timeout=5) as resp:
                metrics = resp.read().decode()
            assert 'sharpeye_camera_online{camera="lobby"} 1.0' in metrics
            assert 'sharpeye_camera_online{camera="dead"} 0.0' in metrics
            assert 'sharpeye_camera_detected_fps{camera="lobby"}' in metrics
            st = subprocess.run([sys.executable, "-m", "cli.main", "status", "--config", str(cfg), "--json"],
                                capture_output=True, text=True, timeout=30)
            assert st.returncode == 0, st.stderr
            status = json.loads(st.stdout)
            assert status["lobby"]["online"] is True and status["dead"]["online"] is False
            assert status["dead"]["reconnects"] >= 1 and status["dead"]["state"] in ("backoff", "connecting")

            # the same alert is on the bus, readable with `sharpeye events --json`
            ev = subprocess.run([sys.executable, "-m", "cli.main", "events", "--config", str(cfg),
                                 "--json", "-n", "50"], capture_output=True, text=True, timeout=30)
            assert ev.returncode == 0, ev.stderr
            msgs = [json.loads(line) for line in ev.stdout.splitlines()]
            schema = json.loads((Path(__file__).resolve().parents[2] / "docs/schemas/event.schema.json").read_text())
            for m in msgs:
                jsonschema.validate(m, schema)
            news = [m for m in msgs if m["type"] == "alert" and m["phase"] == "new"]
            assert news and news[0]["camera"]["id"] == "lobby" and news[0]["labels"] == ["person"]
            snap = tmp_path / "data" / news[0]["snapshot"]["path"]
            assert snap.read_bytes()[:2] == b"\xff\xd8"
            # no repeated `new` for the same camera and rule while the person stays in view:
            # a rule's next `new` only ever follows the `end` of its previous alert
            open_alert: dict[tuple[str, str], str] = {}
            for m in (m for m in msgs if m["type"] == "alert"):
                key = (m["camera"]["id"], m["rule"]["id"])
                if m["phase"] == "new":
                    assert key not in open_alert, f"second `new` while {open_alert[key]} is open"
                    open_alert[key] = m["alert_id"]
                else:
                    assert open_alert.get(key) == m["alert_id"]
                    if m["phase"] == "end":
                        del open_alert[key]
        finally:
            os.killpg(run.pid, signal.SIGINT)
            try:
                out, _ = run.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGKILL)
                out, _ = run.communicate()
        assert run.returncode == 0, out[-3000:]
        assert "stopped" in out
        assert not (tmp_path / "data" / "redis" / "url").exists()
