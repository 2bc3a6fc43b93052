"""The watchlists page (布控) in headless Chromium: an engineer finds it in the header, adds 藏D·T50?2 for their cell
with a reason and an expiry and sees it listed (and mirrored for the workers); a plate that is not one and a missing
reason are refused with the API's error beside the field; the entry is removed after a confirmation (a first
"cancel" keeps it); both changes are in the audit log.  A duty operator has no link and gets the forbidden page.
A real dashboard process, a real Redis bus and SQLite; no worker or camera needed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from sqlalchemy import select

from history import open_database
from history.schema import actions, watchlist_entries
from pipeline.analyse.watchlist import MIRROR_KEY, from_mirror
from pipeline.config import load_config
from tests.e2e.test_dashboard_browser import ARGS, CHROMIUM, _user, artefacts, login
from tests.support.config import write_config
from tests.support.dashboard import served_dashboard

pytestmark = [pytest.mark.e2e, pytest.mark.concurrent]
CELLS = {"G1": {"name": "Xinhua Street", "officer": {"name": "Wang Wei", "phone": "13800000001"}},
         "G2": {"name": "Station Square", "officer": {"name": "Li Na", "phone": "13800000002"}}}
CAMERAS: dict[str, dict[str, Any]] = {
    "gate": {"name": "School gate", "source": "rtsp://127.0.0.1:9/gate", "grid_cell": "G1"},
    "carpark": {"name": "Station car park", "source": "rtsp://127.0.0.1:9/carpark", "grid_cell": "G2"},
}


@pytest.fixture
def site(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    prefix = f"wlpage{time.monotonic_ns()}"
    cfg = write_config(tmp_path, CAMERAS, grid_cells=CELLS, data_dir="data", timezone="Asia/Shanghai",
                       bus={"prefix": prefix})
    _user(cfg, "zhang", "engineer", "G1", "张工", locale="zh-CN")
    _user(cfg, "wang", "operator", "G1", "王伟", locale="zh-CN")
    engine = open_database(load_config(cfg))
    r = redis_lib.Redis.from_url(redis_url)
    with served_dashboard(cfg, redis_url, prefix, tmp_path) as served:
        yield {"base": served.base, "engine": engine, "mirror": lambda: from_mirror(r.get(f"{prefix}:{MIRROR_KEY}"))}
    r.delete(f"{prefix}:{MIRROR_KEY}")
    engine.dispose()


def test_an_engineer_adds_and_removes_a_watchlist_entry_and_an_operator_is_refused(site: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    base, engine = site["base"], site["engine"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = login(browser, base, "zhang")
        page.click('#nav a[href="/watchlists"]')
        page.wait_for_url(base + "/watchlists")
        page.locator('body[data-ready="true"]').wait_for(timeout=10_000)
        assert page.title() == "布控" and page.inner_text("#nav a.here") == "布控"
        assert page.locator("#wl-empty").is_visible()
        # only the engineer's own cell to choose, chosen already
        assert page.eval_on_selector_all("#wl-cells input", "els => els.map(e => [e.value, e.checked])") == \
            [["G1", True]]

        # a plate that is not one: the API's refusal beside the plate field, nothing added
        page.fill("#wl-plate", "ABC1234")
        page.fill("#wl-reason", "盗抢车辆")
        page.click("#wl-submit")
        err = page.locator("#wl-plate-error:not([hidden])")
        err.wait_for(timeout=5000)
        assert "号牌" in err.inner_text()
        assert page.get_attribute('.wl-field[data-field="plate"]', "data-invalid") == "true"
        assert page.locator("#wl-reason-error").is_hidden()
        # two unknown characters: said as such
        page.fill("#wl-plate", "藏D·T5??2")
        page.click("#wl-submit")
        page.wait_for_function("() => document.querySelector('#wl-plate-error').textContent.includes('一位')",
                               timeout=5000)
        # no reason: the error is beside the reason now, the plate's is gone
        page.fill("#wl-plate", "藏D·T50?2")
        page.fill("#wl-reason", "")
        page.click("#wl-submit")
        page.locator("#wl-reason-error:not([hidden])").wait_for(timeout=5000)
        assert "事由" in page.inner_text("#wl-reason-error") and page.locator("#wl-plate-error").is_hidden()
        page.screenshot(path=str(artefacts() / "watchlists-field-error.png"), full_page=True)
        with engine.connect() as conn:
            assert conn.execute(select(watchlist_entries)).all() == []

        # a good one: listed with its reason, owner, cell and expiry, and on the bus for the workers
        page.fill("#wl-reason", "盗抢车辆，案件编号 2024-117")
        page.select_option("#wl-expiry", "7")
        page.click("#wl-submit")
        row = page.locator('#wl-table tr[data-plate="藏D·T50?2"]')
        row.wait_for(timeout=5000)
        assert "盗抢车辆" in row.inner_text()  # owner left empty: the user name
        cells = [c.inner_text() for c in row.locator("td").all()]
        assert cells[0] == "藏D·T50?2" and cells[2] == "zhang" and cells[3] == "Xinhua Street (G1)"
        assert cells[6] == "布控中" and "已布控 藏D·T50?2" in page.inner_text("#wl-status")
        assert page.locator("#wl-plate-error").is_hidden() and page.locator("#wl-reason-error").is_hidden()
        with engine.connect() as conn:
            (entry,) = conn.execute(select(watchlist_entries)).all()
        assert entry.pattern == "藏DT50?2" and json.loads(entry.cells) == ["G1"]
        assert entry.expires_at - entry.created_at == pytest.approx(7 * 86400, abs=5)
        assert [(e.id, e.pattern) for e in site["mirror"]()] == [(entry.id, "藏DT50?2")]
        page.screenshot(path=str(artefacts() / "watchlists-listed.png"), full_page=True)

        # removal asks first; "cancel" keeps the entry, "yes" removes it
        row.locator("button.wl-remove").click()
        assert "藏D·T50?2" in row.locator(".wl-confirm").inner_text()
        row.locator("button.wl-no").click()
        row.locator("button.wl-remove").wait_for(timeout=2000)
        with engine.connect() as conn:
            assert len(conn.execute(select(watchlist_entries)).all()) == 1
        row.locator("button.wl-remove").click()
        row.locator("button.wl-yes").click()
        page.locator('#wl-table tr[data-plate="藏D·T50?2"]').wait_for(state="detached", timeout=5000)
        assert page.locator("#wl-empty").is_visible()
        with engine.connect() as conn:
            assert conn.execute(select(watchlist_entries)).all() == []
            logged = conn.execute(select(actions.c.action, actions.c.username, actions.c.note)
                                  .where(actions.c.action.like("watchlist_%")).order_by(actions.c.id)).all()
        assert [tuple(a) for a in logged] == [("watchlist_add", "zhang", "藏D·T50?2"),
                                              ("watchlist_remove", "zhang", "藏D·T50?2")]
        assert site["mirror"]() == []

        # a duty operator: no link, and the page itself is refused
        op = login(browser, base, "wang")
        assert op.locator('#nav a[href="/search"]').count() == 1  # the nav is built
        assert op.locator('#nav a[href="/watchlists"]').count() == 0
        resp = op.goto(base + "/watchlists")
        assert resp is not None and resp.status == 403
        op.locator("#forbidden").wait_for(timeout=5000)
        assert op.locator("#wl-form").count() == 0
        browser.close()
