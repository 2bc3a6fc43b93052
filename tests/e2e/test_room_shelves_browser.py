"""The command room in headless Chromium with a shelf (屏蔽): an operator shelves a camera with a reason and an expiry;
an alert of it is stored and listed, marked, but makes no sound; the banner says 屏蔽中; once the shelf has expired
the next alert of the camera sounds (a real dashboard process, the archiver, a real Redis bus and SQLite)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from history import open_database
from history import shelves as shelf_store
from history.schema import actions, alerts, shelves
from pipeline.config import load_config
from tests.e2e.test_dashboard_browser import ARGS, CHROMIUM, _user, artefacts, login
from tests.support.config import write_config
from tests.support.dashboard import alert_msg, served_dashboard
from tests.support.waits import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.concurrent]
CELLS = {"G1": {"name": "Xinhua Street", "officer": {"name": "Wang Wei", "phone": "13800000001"}}}
CAMERAS: dict[str, dict[str, Any]] = {
    "lobby": {"name": "Lobby camera", "source": "rtsp://127.0.0.1:9/lobby", "grid_cell": "G1",
              "rules": {"zone": {"kind": "presence", "severity": "high"}}},
    "gate": {"name": "School gate", "source": "rtsp://127.0.0.1:9/gate", "grid_cell": "G1"},
}


@pytest.fixture
def room(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    prefix = f"shelf{time.monotonic_ns()}"
    cfg = write_config(tmp_path, CAMERAS, grid_cells=CELLS, data_dir="data", timezone="Asia/Shanghai",
                       bus={"prefix": prefix}, alerts={"incident_window_s": 0})
    _user(cfg, "wang", "operator", "G1", "王伟", locale="zh-CN")
    _user(cfg, "chief", "engineer", "G1", "陈队", locale="zh-CN")
    engine = open_database(load_config(cfg))
    with served_dashboard(cfg, redis_url, prefix, tmp_path) as served:
        yield {"base": served.base, "publish": served.publish, "engine": engine}
    engine.dispose()


def lobby_msg(alert_id: str) -> dict[str, Any]:
    m = alert_msg(alert_id, camera="lobby", severity="high", kind="presence")
    m["grid_cell"] = {"id": "G1", "name": "Xinhua Street", "officer": {"name": "Wang Wei", "phone": "13800000001"}}
    return m


def stored(engine: Any, alert_id: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(select(alerts.c.id).where(alerts.c.id == alert_id)).first() is not None


def test_a_shelved_camera_alerts_silently_and_rings_again_after_the_shelf_expired(room: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    engine = room["engine"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = login(browser, room["base"], "wang")
        assert page.get_attribute("body", "data-sound") in (None, "none")
        page.click("#shelf-new summary")
        page.select_option("#shelf-camera", "lobby")
        page.select_option("#shelf-minutes", "5")
        page.fill("#shelf-reason", "门口施工，反复误报")
        page.click("#shelf-submit")
        banner = page.locator('[data-testid="shelf-banner"]:not([hidden])')
        banner.wait_for(timeout=5000)
        assert "屏蔽中" in banner.inner_text() and "门口施工" in banner.inner_text()
        assert page.locator('#shelf-banner .shelf[data-camera="lobby"]').count() == 1
        with engine.connect() as conn:
            (shelf,) = conn.execute(select(shelves)).all()
            (act,) = conn.execute(select(actions).where(actions.c.action == "shelve")).all()
        assert shelf.expires_at - shelf.created_at == pytest.approx(300, abs=1) and act.username == "wang"

        # an alert of the shelved camera: stored, listed and marked, but no sound
        room["publish"](lobby_msg("s1"))
        item = page.locator('#alerts li.alert[data-alert-id="s1"][data-shelved="true"]')
        item.wait_for(timeout=5000)
        assert item.locator(".shelf-mark").inner_text() == "屏蔽中"
        wait_for(lambda: stored(engine, "s1"), 10, "the shelved alert stored by the archiver")
        time.sleep(1.5)  # the page had time to ring if it were going to
        assert page.get_attribute("body", "data-sound") in (None, "none")  # never rang (set on a change only)
        page.screenshot(path=str(artefacts() / "room-shelved.png"), full_page=True)

        # the shelf ends by the clock (brought forward here instead of waiting 5 minutes): banner gone
        with engine.begin() as conn:
            conn.execute(update(shelves).where(shelves.c.id == shelf.id).values(expires_at=time.time() + 4))
        page.reload()
        page.locator('#conn[data-state="live"]').wait_for(timeout=10_000)
        page.locator('[data-testid="shelf-banner"]:not([hidden])').wait_for(timeout=5000)
        page.locator('[data-testid="shelf-banner"][hidden]').wait_for(state="attached", timeout=10_000)
        # the alert raised during the shelf stays quiet; the next one sounds
        assert page.get_attribute("body", "data-sound") in (None, "none")  # never rang (set on a change only)
        room["publish"](lobby_msg("s2"))
        page.locator('#alerts li.alert[data-alert-id="s2"][data-shelved="false"]').wait_for(timeout=5000)
        page.locator('body[data-sound="high"]').wait_for(state="attached", timeout=5000)
        assert page.locator('#alerts li.alert[data-alert-id="s1"]').get_attribute("data-shelved") == "true"
        wait_for(lambda: stored(engine, "s2"), 10, "the next alert stored")
        browser.close()


def test_the_supervisor_page_lists_shelves_lifts_one_and_counts_incidents(room: dict[str, Any]) -> None:
    """A supervisor's page: the shelves holding now (camera, rule, reason, who, until) with a lift button, the
    past week's (lifted early by whom, or expired), and the open incidents per cell with their alerts."""
    from playwright.sync_api import sync_playwright

    engine, now = room["engine"], time.time()
    who = {"user_id": None, "username": "wang", "display_name": "王伟"}
    with engine.begin() as conn:
        held = shelf_store.create(conn, camera_id="lobby", grid_cell_id="G1", rule_id="zone", reason="门口施工",
                                  duration_s=3600, **who)
        shelf_store.create(conn, camera_id="gate", grid_cell_id="G1", rule_id=None, reason="夜间维修",
                           duration_s=600, now=now - 3 * 86400, **who)  # expired three days ago
        early = shelf_store.create(conn, camera_id="gate", grid_cell_id="G1", rule_id=None, reason="演练",
                                   duration_s=7200, now=now - 86400, **who)
        shelf_store.lift(conn, early["id"], user_id=None, username="chief", display_name="陈队", now=now - 86000)
    room["publish"](lobby_msg("p1"))
    wait_for(lambda: stored(engine, "p1"), 10, "the alert stored")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = login(browser, room["base"], "chief")
        page.goto(room["base"] + "/supervisor")
        page.locator("body[data-loaded=true]").wait_for(state="attached", timeout=10_000)
        row = page.locator(f'#s-shelves-active tr[data-shelf-id="{held["id"]}"]')
        text = row.inner_text()
        assert "Lobby camera" in text and "门口施工" in text and "王伟" in text, text
        assert page.locator("#s-shelves-count").inner_text() == "1"
        past = page.locator("#s-shelves-past tbody tr")
        assert past.count() == 2
        assert "陈队 提前解除" in page.locator(f'#s-shelves-past tr[data-shelf-id="{early["id"]}"]').inner_text()
        assert page.locator('#s-shelves-past tr[data-ended="expired"]').inner_text().endswith("到期自动结束")
        g1 = page.locator('#s-cells tr[data-cell="G1"]')
        g1.locator('td[data-count="incidents"]:text-is("1")').wait_for(timeout=10_000)
        assert g1.locator('td[data-count="alerts"]').inner_text() == "1"
        assert page.locator("#s-open").inner_text() == "1"
        page.screenshot(path=str(artefacts() / "supervisor-shelves.png"), full_page=True)
        # lift the one holding now: it moves to the past list, lifted by the supervisor, audited
        asked: list[str] = []
        page.once("dialog", lambda d: (asked.append(d.message), d.accept()))
        row.locator("button.lift").click()
        page.locator(f'#s-shelves-past tr[data-shelf-id="{held["id"]}"][data-ended="lifted"]').wait_for(timeout=5000)
        assert "Lobby camera" in asked[0]
        assert page.locator("#s-shelves-active tbody tr").count() == 0
        assert not page.locator("#s-shelves-none").is_hidden()
        with engine.connect() as conn:
            lifted = conn.execute(select(shelves).where(shelves.c.id == held["id"])).one()
            acts = conn.execute(select(actions.c.username, actions.c.data).where(actions.c.action == "unshelve")).all()
        assert lifted.lifted_by == "chief"
        assert [a.username for a in acts] == ["chief", "chief"]  # the one lifted a day ago, and this one
        assert f'"shelf": {held["id"]}' in acts[-1].data
        # an operator's page lists the shelves of the shift, without a lift button
        page2 = login(browser, room["base"], "wang")
        page2.goto(room["base"] + "/supervisor")
        page2.locator("body[data-loaded=true]").wait_for(state="attached", timeout=10_000)
        assert page2.locator("#s-shelves-past-title").inner_text() == "本班已结束的屏蔽"
        assert page2.locator("button.lift").count() == 0
        browser.close()
