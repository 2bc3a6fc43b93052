"""The workers view in headless Chromium: a real dashboard process, a real redis-server, and two simulated
workers that own the cameras through the real ``pipeline.cluster`` coordinator.  The health page shows each
camera's owner, the workers page lists both workers with capacity and load, and when one stops renewing
the page shows its cameras on the other and the moves (reason: lease expired).  Screenshots go to
build/test-artifacts/dashboard/ (or $SHARPEYE_TEST_ARTIFACTS)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashboard.users import add_user
from history import open_database
from pipeline.cluster.coordinator import Coordinator
from pipeline.config import load_config
from tests.e2e.test_dashboard_browser import ARGS, CHROMIUM, artefacts
from tests.integration.test_dashboard_workers import CLUSTER, TTL_S, held_by, start_worker
from tests.support.dashboard import browser_login, dashboard_process, write_dashboard_config
from tests.support.waits import wait_for

PW = "correct horse battery"
pytestmark = [pytest.mark.e2e, pytest.mark.concurrent]


@pytest.fixture
def room(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian chromium not installed at {CHROMIUM} (scripts/setup installs it)")
    cfg_path = write_dashboard_config(tmp_path, f"bus: {{prefix: wkb{time.monotonic_ns()}}}\n" + CLUSTER)
    cfg = load_config(cfg_path)
    engine = open_database(cfg)
    add_user(engine, "zhou", PW, "engineer", ["*"], "Zhou Gong", locale="en")
    engine.dispose()
    workers: list[Coordinator] = []
    with dashboard_process(cfg_path, redis_url, tmp_path, timeout=60) as dash:
        try:
            yield {"base": dash.base, "cfg": cfg, "redis": redis_url, "workers": workers}
        finally:
            for w in workers:
                w.stop(release=True)


def test_the_page_shows_owners_and_a_move_after_a_worker_stops_renewing(room: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    ws = room["workers"]
    wa = start_worker(room["cfg"], room["redis"], "wa", capacity=2.0)
    ws += [wa, start_worker(room["cfg"], room["redis"], "wb")]
    want = {"gate": "wa", "square": "wa", "lobby": "wb"}  # the hash's split (test_dashboard_workers.py)
    wait_for(lambda: held_by(ws) == want, 15, lambda: f"the cameras owned as hashed, have {held_by(ws)}")
    base, out = room["base"], artefacts()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser_login(browser, base, "zhou", password=PW)
        # the health page: each camera's owner worker (and token)
        page.goto(base + "/engineer")
        for cam, wid in want.items():
            page.locator(f'#health tr[data-camera="{cam}"][data-owner="{wid}"]').wait_for(timeout=10_000)
        assert "wa (" in page.locator('#health tr[data-camera="gate"] td.owner').inner_text()
        page.screenshot(path=str(out / "engineer-owners.png"), full_page=True)
        # the workers page: both live, capacity and load
        assert page.locator('nav a[href="/workers"]').count() == 1  # also in the header, for engineers
        page.click("#workers-link")
        page.wait_for_url(base + "/workers")
        page.locator('#workers tr[data-worker="wa"][data-live="true"][data-held="2"]').wait_for(timeout=10_000)
        page.locator('#workers tr[data-worker="wb"][data-live="true"][data-held="1"]').wait_for(timeout=10_000)
        assert page.locator('#workers tr[data-worker="wa"] td.load').inner_text().strip() == "1.00"  # 2 / capacity 2
        for cam, wid in want.items():
            page.locator(f'#owners tr[data-camera="{cam}"][data-owner="{wid}"]').wait_for(timeout=5000)
        assert page.locator("h1 .sub").inner_text() == "Workers"
        page.screenshot(path=str(out / "workers.png"), full_page=True)
        # wa stops renewing (killed, as far as Redis can tell): the page shows its cameras on wb, and the moves
        t0 = time.monotonic()
        wa.stop(release=False)
        ws.remove(wa)
        for cam in ("gate", "square"):
            page.locator(f'#owners tr[data-camera="{cam}"][data-owner="wb"]').wait_for(timeout=(TTL_S + 15) * 1000)
            page.locator(f'#moves tr[data-camera="{cam}"][data-from="wa"][data-to="wb"][data-reason="expired"]'
                         ).wait_for(timeout=5000)
        shown = time.monotonic() - t0
        page.locator('#workers tr[data-worker="wb"][data-held="3"]').wait_for(timeout=5000)
        assert page.locator('#workers tr[data-worker="wa"]').count() == 0
        assert "lease expired" in page.locator('#moves tr[data-camera="gate"][data-reason="expired"]').inner_text()
        page.screenshot(path=str(out / "workers-after-move.png"), full_page=True)
        # one camera's history, newest first: the takeover, then its start
        page.click('#owners tr[data-camera="gate"] button')
        page.wait_for_function("() => document.querySelectorAll('#moves tbody tr').length >= 2 && "
                               "[...document.querySelectorAll('#moves tbody tr')].every(r => r.dataset.camera === "
                               "'gate')", timeout=5000)
        reasons = page.eval_on_selector_all("#moves tbody tr", "rows => rows.map(r => r.dataset.reason)")
        assert reasons[0] == "expired" and reasons[-1] in ("start", "handover"), reasons
        # in Chinese
        page.select_option("#lang", "zh-CN")
        page.wait_for_function("() => document.documentElement.lang === 'zh-CN'")
        page.locator('#moves tr[data-reason="expired"]').first.wait_for(timeout=5000)
        assert page.locator("h1 .sub").inner_text() == "工作节点"
        assert "租约过期" in page.locator('#moves tr[data-reason="expired"]').first.inner_text()
        page.screenshot(path=str(out / "workers-zh.png"), full_page=True)
        browser.close()
    print(f"\nthe page showed wa's cameras on wb, with the moves, {shown:.1f} s after wa stopped "
          f"(lease ttl {TTL_S:g} s)")
