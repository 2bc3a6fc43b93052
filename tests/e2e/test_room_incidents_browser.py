"""The command room in headless Chromium with incidents: alerts of one zone fold into one item live and after
a reload, and an overdue mark names the late step and goes away when the step is done (a real dashboard
process, the archiver, a real Redis bus and SQLite)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_dashboard_browser import ARGS, CHROMIUM, artefacts, login
from tests.support.dashboard import alert_msg, served_site

pytestmark = [pytest.mark.e2e, pytest.mark.concurrent]
CELLS = {"G1": {"name": "Xinhua Street", "officer": {"name": "Wang Wei", "phone": "13800000001"}}}
CAMERAS: dict[str, dict[str, Any]] = {
    "lobby": {"name": "Lobby camera", "source": "rtsp://127.0.0.1:9/lobby", "grid_cell": "G1",
              "zones": {"floor": {"polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}},
              "rules": {"intruder": {"kind": "intrusion", "zone": "floor", "severity": "high"},
                        "loiterer": {"kind": "loitering", "zone": "floor", "severity": "medium"}}},
    "gate": {"name": "School gate", "source": "rtsp://127.0.0.1:9/gate", "grid_cell": "G1"},
    "square": {"name": "Station square", "source": "rtsp://127.0.0.1:9/square", "grid_cell": "G1"},
}


@pytest.fixture
def room(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    # critical: 3 s to acknowledge, 4 s to sign for; the others 10 min
    slow = {"low": 600, "medium": 600, "high": 600}
    with served_site(tmp_path, redis_url, "inc", CAMERAS, CELLS, ("wang", "operator", "G1", "Wang Wei"),
                     dashboard={"escalation": {"acknowledge_s": {**slow, "critical": 3},
                                               "sign_for_s": {**slow, "critical": 4}}}) as served:
        yield {"base": served.base, "publish": served.publish}


def rule_msg(alert_id: str, rule: str, kind: str, severity: str, camera: str = "lobby") -> dict[str, Any]:
    m = alert_msg(alert_id, camera=camera, severity=severity, kind=kind)
    m["rule"] = {"id": rule, "kind": kind, "severity": severity}
    m["grid_cell"] = {"id": "G1", "name": "Xinhua Street", "officer": {"name": "Wang Wei", "phone": "13800000001"}}
    return m


def test_alerts_of_one_zone_are_one_item_and_overdue_names_the_late_step(room: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = login(browser, room["base"], "wang")
        room["publish"](rule_msg("i1", "intruder", "intrusion", "high"))
        page.locator('#alerts li.alert[data-alert-id="i1"]').wait_for(timeout=5000)
        room["publish"](rule_msg("l1", "loiterer", "loitering", "medium"))  # the same person, the same floor
        item = page.locator('#alerts li.alert[data-alert-id="i1"][data-occurrences="2"]')
        item.wait_for(timeout=5000)
        assert page.locator('#alerts li[data-alert-id="l1"]').count() == 0
        assert item.locator(".occ").inner_text() == "2×"
        assert item.locator(".rule").inner_text() == "zone intrusion · loitering"  # both reasons
        page.reload()
        page.locator('#conn[data-state="live"]').wait_for(timeout=10_000)
        item = page.locator('#alerts li.alert[data-alert-id="i1"][data-occurrences="2"]')
        item.wait_for(timeout=5000)
        assert page.locator("#alerts li.alert").count() == 1
        item.click()
        page.locator('[data-testid="occurrences"] a[data-alert-id="l1"]').wait_for(timeout=5000)
        assert page.locator("#d-occ-box").is_visible()
        assert "[" not in page.locator("#d-occ-box").inner_text()  # no raw catalogue key

        # a critical alert nobody takes: overdue for the acknowledgement, then done, then late to be signed for
        room["publish"](rule_msg("c1", "zone", "intrusion", "critical", camera="gate"))
        late = page.locator('#alerts li.alert[data-alert-id="c1"][data-overdue="true"]')
        late.wait_for(timeout=10_000)
        assert late.locator(".overdue").inner_text() == "overdue · acknowledge"
        late.click()
        page.locator('#detail[data-alert-id="c1"]').wait_for()
        page.click('#d-actions button[data-action="acknowledge"]')
        page.locator('#alerts li.alert[data-alert-id="c1"][data-overdue="false"]').wait_for(timeout=5000)
        page.click('#d-actions button[data-action="dispatch"]')
        page.locator('#detail[data-state="dispatched"]').wait_for(timeout=5000)
        t_sent = time.monotonic()
        assert page.locator('#alerts li.alert[data-alert-id="c1"]').get_attribute("data-overdue") == "false"
        assert page.locator("#d-overdue").is_hidden()  # the acknowledgement's level does not carry over
        page.locator('#alerts li.alert[data-alert-id="c1"][data-overdue="true"]').wait_for(timeout=10_000)
        assert time.monotonic() - t_sent >= 3.0  # not before the 4 s signature deadline (1 s checks)
        assert page.locator("#d-overdue").inner_text() == "overdue · sign for"
        page.screenshot(path=str(artefacts() / "room-incidents.png"), full_page=True)
        browser.close()


def test_triage_filters_in_the_url_sort_and_bulk_close_with_an_outcome(room: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    now = time.time()
    for aid, cam, rule, kind, sev, age in (("t-old", "lobby", "intruder", "intrusion", "high", 50),
                                           ("t-new", "square", "zone", "intrusion", "medium", 5),
                                           ("t-mid", "gate", "zone", "intrusion", "high", 20)):
        m = rule_msg(aid, rule, kind, sev, camera=cam)
        m.update(time=round(now - age, 3), start_time=round(now - age, 3))
        room["publish"](m)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = login(browser, room["base"], "wang")
        page.locator('#alerts li.alert[data-alert-id="t-new"]').wait_for(timeout=5000)
        order = page.eval_on_selector_all("#alerts li.alert:not([hidden])", "ls => ls.map(l => l.dataset.alertId)")
        assert order == ["t-old", "t-mid", "t-new"]  # by priority: high first, the longest waiting first
        page.select_option('#triage select[name="sort"]', "age")
        order = page.eval_on_selector_all("#alerts li.alert:not([hidden])", "ls => ls.map(l => l.dataset.alertId)")
        assert order == ["t-new", "t-mid", "t-old"]
        page.select_option('#triage select[name="camera"]', "gate")
        assert "camera=gate" in page.url and "sort=age" in page.url
        page.reload()  # the filters are in the URL
        page.locator('#alerts li.alert[data-alert-id="t-mid"]').wait_for(timeout=5000)
        assert page.locator('#alerts li.alert[data-alert-id="t-old"]').is_hidden()
        assert page.locator('#alerts li.alert[data-alert-id="t-new"]').is_hidden()
        assert page.locator('#triage select[name="camera"]').input_value() == "gate"
        page.check("#pick-all")
        assert page.locator("#picked").inner_text() == "1 picked"
        page.select_option("#bulk-class", "test")
        page.fill("#bulk-note", "drill at the gate")
        page.click("#bulk-close")
        page.locator("#bulk-result").filter(has_text="1 done, 0 skipped").wait_for(timeout=5000)
        page.select_option('#triage select[name="state"]', "")  # closed ones too
        badge = page.locator('#alerts li.alert[data-alert-id="t-mid"] .outcome[data-class="test"]')
        badge.wait_for(timeout=5000)
        assert badge.inner_text() == "test"
        page.locator('#alerts li.alert[data-alert-id="t-mid"]').click()
        page.locator('#d-outcome[data-class="test"]').wait_for(timeout=5000)
        page.screenshot(path=str(artefacts() / "room-triage.png"), full_page=True)
        browser.close()
