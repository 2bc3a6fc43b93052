"""The history and reports pages in headless Chromium: the room's filters kept in the URL, rules by the name
operators read, who acknowledged and who closed how (each outcome with its own label and colour), and
reports counting incidents beside alerts (a real dashboard process, the archiver, a real Redis bus, SQLite)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e.test_dashboard_browser import ARGS, CHROMIUM, artefacts, login
from tests.support.dashboard import alert_msg, served_site

pytestmark = [pytest.mark.e2e, pytest.mark.concurrent]
CELLS = {"G1": {"name": "Xinhua Street", "officer": {"name": "Wang Wei", "phone": "13800000001"}}}
FLOOR = {"polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}
CAMERAS: dict[str, dict[str, Any]] = {
    "lobby": {"name": "Lobby camera", "source": "rtsp://127.0.0.1:9/lobby", "grid_cell": "G1",
              "zones": {"floor": FLOOR},
              "rules": {"intruder": {"kind": "intrusion", "zone": "floor", "severity": "high", "name": "夜间入侵"},
                        "loiterer": {"kind": "loitering", "zone": "floor", "severity": "medium"}}},
    "gate": {"name": "School gate", "source": "rtsp://127.0.0.1:9/gate", "grid_cell": "G1", "zones": {"yard": FLOOR},
             "lines": {"door": {"a": [0.5, 0], "b": [0.5, 1]}},
             "rules": {"night": {"kind": "intrusion", "zone": "yard", "severity": "critical", "name": "夜间入侵"},
                       "door": {"kind": "line_crossing", "line": "door", "severity": "low"}}},
}


@pytest.fixture
def site(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    with served_site(tmp_path, redis_url, "hrb", CAMERAS, CELLS,
                     ("wang", "operator", "G1", "Wang Wei", "zh-CN")) as served:
        yield {"base": served.base, "publish": served.publish}


def rule_msg(alert_id: str, camera: str, rule: str, kind: str, severity: str, t: float) -> dict[str, Any]:
    m = alert_msg(alert_id, camera=camera, severity=severity, kind=kind, t=t)
    m["rule"] = {"id": rule, "kind": kind, "severity": severity}
    m["grid_cell"] = {"id": "G1", "name": "Xinhua Street", "officer": {"name": "Wang Wei", "phone": "13800000001"}}
    return m


def act(page: Any, alert_id: str, action: str, **extra: Any) -> None:
    body = {"action": action, **extra}
    page.evaluate("([id, body]) => SE.api(`/api/alerts/${id}/actions`, {method: 'POST', body})", [alert_id, body])


def test_history_filters_in_the_url_outcomes_and_reports_by_incident(site: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    t = time.time() - 60
    # the lobby: an intrusion, then loitering on the same floor (one incident); the gate: its own two
    for m in (rule_msg("h1", "lobby", "intruder", "intrusion", "high", t),
              rule_msg("h2", "lobby", "loiterer", "loitering", "medium", t + 1),
              rule_msg("h3", "gate", "night", "intrusion", "critical", t + 2),
              rule_msg("h4", "gate", "door", "line_crossing", "low", t + 3)):
        site["publish"](m)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = login(browser, site["base"], "wang")
        page.wait_for_function("async () => (await SE.api('/api/history')).alerts.length === 4", timeout=15_000)
        act(page, "h1", "acknowledge")
        act(page, "h1", "close", classification="genuine", note="caught at the door")
        act(page, "h4", "acknowledge")
        act(page, "h4", "close", classification="duplicate", note="same as the lobby")

        # a link with filters: the rule by its name, who closed it; the form shows them, the list obeys
        page.goto(site["base"] + "/history?rule=%E5%A4%9C%E9%97%B4%E5%85%A5%E4%BE%B5&closed_by=Wang%20Wei")
        page.wait_for_function("() => document.querySelectorAll('#results tr.result').length === 1", timeout=10_000)
        row = page.locator('#results tr.result[data-alert-id="h1"]')
        assert page.input_value("#h-rule") == "夜间入侵" and page.input_value("#h-closed_by") == "Wang Wei"
        assert row.locator("td.rule").inner_text() == "夜间入侵"  # not "intruder"
        assert row.locator("td.acknowledged-by").inner_text() == "Wang Wei"
        assert row.locator('.outcome[data-class="genuine"]').inner_text() == "属实"
        assert row.locator("td.comment").inner_text() == "caught at the door"
        # the rule menu offers names, not ids: one entry for both cameras' 夜间入侵
        # and the rules without a name by their kind's name (越线, 徘徊), never by an id
        assert page.locator("#h-rule option").all_inner_texts() == ["全部", "夜间入侵", "越线", "徘徊"]
        # another filter: the URL follows, a reload keeps it
        page.select_option("#h-rule", "")
        page.select_option("#h-classification", "duplicate")
        page.click("#h-go")
        page.wait_for_function("() => [...document.querySelectorAll('#results tr.result')].map(r => r.dataset.alertId)"
                               ".join() === 'h4'", timeout=10_000)
        query = parse_qs(urlsplit(page.url).query)
        assert query == {"classification": ["duplicate"], "closed_by": ["Wang Wei"]}, page.url
        page.reload()
        page.wait_for_function("() => document.querySelectorAll('#results tr.result').length === 1", timeout=10_000)
        assert page.input_value("#h-classification") == "duplicate"
        dup = page.locator('#results tr.result[data-alert-id="h4"] .outcome[data-class="duplicate"]')
        assert dup.inner_text() == "重复"
        colours = {c: page.evaluate("c => { const s = document.createElement('span'); s.className = 'outcome';"
                                    " s.dataset.class = c; s.textContent = 'x'; document.body.append(s);"
                                    " return getComputedStyle(s).backgroundColor; }", c)
                   for c in ("genuine", "false_alarm", "duplicate", "test")}
        assert len(set(colours.values())) == 4, colours  # each outcome its own colour
        page.fill("#h-q", "lobby")
        page.select_option("#h-classification", "")
        page.click("#h-clear")
        page.wait_for_function("() => document.querySelectorAll('#results tr.result').length === 4", timeout=10_000)
        assert urlsplit(page.url).query == ""
        page.screenshot(path=str(artefacts() / "history-filters.png"), full_page=True)

        # reports: four alerts in three incidents; rules by name; outcomes per incident with their labels
        page.goto(site["base"] + "/reports")
        cell = page.locator('#r-cells tr[data-cell="G1"]')
        cell.locator('.incidents:has-text("3")').wait_for(timeout=10_000)
        assert cell.locator(".total").inner_text() == "4"
        assert sorted(cell.locator(".outcome").all_inner_texts()) == sorted(["属实 1", "重复 1"])
        rules = page.locator("#r-by-rule td.rule").all_inner_texts()
        assert rules.count("夜间入侵") == 2 and "intruder" not in rules and "徘徊" in rules
        page.screenshot(path=str(artefacts() / "reports-incidents.png"), full_page=True)
        browser.close()
