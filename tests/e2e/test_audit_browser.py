"""The audit page in headless Chromium: a log-in, a clip view and an export made in the browser are listed.

A real dashboard process and archiver, a real Redis bus, recordings written by the SegmentWriter.  The
admin logs in, opens an alert's clip, exports the alert from its detail view, then opens /audit: the three
rows are there with who and which camera; the filter by action narrows the list, and the CSV link carries
the filter.  An operator is refused the page.  Screenshot in build/test-artifacts/dashboard/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_dashboard_browser import ARGS, CHROMIUM, PW, artefacts
from tests.support.dashboard import browser_login, recorded_alert_msg, recorded_room

pytestmark = [pytest.mark.e2e, pytest.mark.concurrent]


@pytest.fixture
def served(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    with recorded_room(tmp_path, redis_url, "au", ("boss", "admin", "*", "Chief Chen"),
                       ("wang", "operator", "G1", "Wang Wei")) as room:
        yield {"base": room.base, "publish": room.publish}


def login(browser: Any, base: str, name: str) -> Any:
    return browser_login(browser, base, name, password=PW)


def test_the_audit_page_lists_a_login_a_clip_view_and_an_export(served: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    base = served["base"]
    served["publish"](recorded_alert_msg("au-1"))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = login(browser, base, "boss")
        # a clip view
        with page.expect_response(lambda r: "/api/clips/au-1" in r.url and "video" not in r.url,
                                  timeout=60_000) as info:
            page.goto(f"{base}/clip/au-1")
        assert info.value.status == 200
        # an export from the alert's detail view
        page.goto(base + "/")
        page.locator('#conn[data-state="live"]').wait_for(timeout=15_000)
        page.click('#alerts li[data-alert-id="au-1"]')
        page.locator('#detail[data-alert-id="au-1"]').wait_for()
        page.click("#d-export")
        page.locator('#d-export-status[data-state="done"]').wait_for(timeout=60_000)
        # the audit page
        page.goto(base + "/audit")
        page.locator('body[data-loaded="true"]').wait_for(timeout=15_000)
        rows = page.locator("#audit tbody tr")
        actions = {(rows.nth(i).get_attribute("data-action"), rows.nth(i).get_attribute("data-user"))
                   for i in range(rows.count())}
        assert {("login", "boss"), ("view_clip", "boss"), ("export_start", "boss")} <= actions, actions
        clip_row = page.locator('#audit tbody tr[data-action="view_clip"]').first
        assert clip_row.get_attribute("data-camera") == "lobby"
        assert page.locator('#audit tbody tr[data-action="login"] td.action').first.inner_text() == "Logged in"
        page.screenshot(path=str(artefacts() / "audit.png"), full_page=True)
        # filter by action: only exports; the CSV link carries the filter
        page.select_option('#a-filter select[name="action"]', "export_start")
        page.click("#a-apply")
        page.wait_for_function("() => [...document.querySelectorAll('#audit tbody tr')]"
                               ".every(r => r.dataset.action === 'export_start')", timeout=10_000)
        assert "action=export_start" in (page.get_attribute("#a-csv", "href") or "")
        # an operator is refused the page
        op = login(browser, base, "wang")
        resp = op.goto(base + "/audit")
        assert resp is not None and resp.status == 403
        browser.close()
