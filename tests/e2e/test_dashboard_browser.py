"""The command room in headless Chromium: two operators' browsers on a real dashboard process, the
archiver, a real Redis bus (alerts published as a worker publishes them) and SQLite.

Measures the page load and how long an action done in one browser takes to show in the other.
Screenshots of the main pages are kept under build/test-artifacts/dashboard/ (or
$SHARPEYE_TEST_ARTIFACTS) for a person to look at.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.support.dashboard import (
    CHROMIUM,
    add_login,
    alert_msg,
    browser_login,
    camera_msg,
    served_dashboard,
    write_dashboard_config,
)

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
ROOT = Path(__file__).resolve().parents[2]
PW = "correct horse battery"
pytestmark = pytest.mark.e2e


def artefacts() -> Path:
    d = Path(os.environ.get("SHARPEYE_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts")) / "dashboard"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _user(cfg: Path, name: str, role: str, cells: str, display: str, locale: str = "en") -> None:
    """A dashboard user, made as ``sharpeye users add`` makes one (in this process: one interpreter start
    less per user; the command itself is tested in tests/integration/test_cli.py)."""
    add_login(cfg, name, role, cells, display, locale)


@pytest.fixture
def room(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian chromium not installed at {CHROMIUM} (scripts/setup installs it)")
    prefix = f"room{time.monotonic_ns()}"
    # critical alerts escalate after 2 s unacknowledged (the escalation test), the others after 10 min
    cfg = write_dashboard_config(tmp_path, f"bus: {{prefix: {prefix}}}\ndashboard: {{escalation: {{acknowledge_s: "
                                 "{low: 600, medium: 600, high: 600, critical: 2}}}")
    _user(cfg, "wang", "operator", "G1", "Wang Wei")
    _user(cfg, "zhao", "operator", "G1", "Zhao Lei")
    _user(cfg, "boss", "admin", "*", "Chief Chen")
    with served_dashboard(cfg, redis_url, prefix, tmp_path) as served:
        yield {"base": served.base, "cfg": cfg, "publish": served.publish, "tmp": tmp_path}


def login(browser: Any, base: str, name: str) -> Any:
    page = browser_login(browser, base, name, "/", password=PW)
    page.locator('#conn[data-state="live"]').wait_for(timeout=10_000)
    return page


def test_two_operators_handle_an_alert_and_see_each_other_within_a_second(room: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    base, out = room["base"], artefacts()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        # page load: log-in to the command room showing its list, measured in the browser
        t0 = time.monotonic()
        wang = login(browser, base, "wang")
        load_s = time.monotonic() - t0
        zhao = login(browser, base, "zhao")
        room["publish"](alert_msg("r1", camera="lobby", severity="high"))
        room["publish"](alert_msg("r2", camera="gate", severity="medium"))
        room["publish"](alert_msg("other-cell", camera="square"))
        room["publish"](camera_msg("gate", "offline"))
        for p in (wang, zhao):
            p.locator('#alerts li.alert[data-alert-id="r1"][data-state="new"]').wait_for(timeout=5000)
            p.locator('#alerts li.alert[data-alert-id="r2"]').wait_for(timeout=5000)
        assert wang.locator('#alerts li[data-alert-id="other-cell"]').count() == 0  # G2 is not wang's
        assert wang.title().startswith("(2)")  # new alerts counted in the tab title
        wang.screenshot(path=str(out / "room-new-alerts.png"), full_page=True)

        def step(button: str, expect: str) -> float:
            """Click in wang's page; time until zhao's page shows the change."""
            wang.click(f'#d-actions button[data-action="{button}"]')
            t = time.monotonic()
            zhao.wait_for_function(expect, timeout=5000)
            return time.monotonic() - t

        wang.click('#alerts li[data-alert-id="r1"]')
        wang.locator('#detail[data-alert-id="r1"]').wait_for()
        delays = {
            "acknowledge": step("acknowledge", "() => { const li = document.querySelector("
                                "'#alerts li[data-alert-id=\"r1\"]'); return li.dataset.state === 'acknowledged'"
                                " && li.querySelector('.owner').textContent.includes('Wang Wei'); }"),
        }
        for action, light in (("dispatch", "sent"), ("signed_for", "signed_for"), ("on_scene", "on_scene"),
                              ("feedback", "feedback")):
            delays[action] = step(action, f"() => !!document.querySelector('#alerts li[data-alert-id=\"r1\"] "
                                          f".mini-lights i[data-step=\"{light}\"][data-on=\"true\"]')")
        # the four dispatch lights of the handling view (it redraws after the list: wait, don't race it)
        wang.wait_for_function("() => document.querySelectorAll('#d-lights .light[data-on=\"true\"]').length === 4",
                               timeout=5000)
        wang.screenshot(path=str(out / "handling-dispatched.png"), full_page=True)
        # closing needs a classification and a comment
        wang.click("#d-close-alert")
        wang.locator("#d-error:not([hidden])").wait_for()
        assert "classification" in wang.locator("#d-error").inner_text().lower()
        wang.select_option("#d-class", "genuine")
        wang.fill("#d-comment", "two youths on the school fence; sent home")
        wang.click("#d-close-alert")
        t = time.monotonic()
        zhao.wait_for_function("() => document.querySelector('#alerts li[data-alert-id=\"r1\"]').dataset.state"
                               " === 'resolved'", timeout=5000)
        delays["close"] = time.monotonic() - t
        timeline = wang.locator("#d-timeline li")
        assert timeline.count() == 6
        assert "Wang Wei" in timeline.first.inner_text() and re.search(r"\d\d:\d\d:\d\d", timeline.first.inner_text())

        # the other operator takes the second alert over from wang and closes it as a false alarm
        wang.click('#alerts li[data-alert-id="r2"]')
        wang.click('#d-actions button[data-action="acknowledge"]')
        zhao.locator('#alerts li[data-alert-id="r2"][data-state="acknowledged"]').wait_for(timeout=5000)
        zhao.click('#alerts li[data-alert-id="r2"]')
        zhao.locator('#detail[data-alert-id="r2"] #d-owner:has-text("Wang Wei")').wait_for()
        assert zhao.locator('#d-actions button[data-action="take_over"]').is_visible()
        assert not zhao.locator('#d-actions button[data-action="dispatch"]').is_visible()
        # the takeover asks first: dismissed, nothing is sent and wang keeps the alert
        asked: list[str] = []
        posts: list[str] = []
        zhao.on("request", lambda r: posts.append(r.url) if r.method == "POST" and "/actions" in r.url else None)
        zhao.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
        zhao.click('#d-actions button[data-action="take_over"]')
        zhao.wait_for_function("() => true")  # the click's handlers have run
        assert len(asked) == 1 and "Wang Wei" in asked[0], asked
        time.sleep(0.5)
        assert posts == []
        assert "Wang Wei" in zhao.locator("#d-owner").inner_text()
        assert wang.locator('#alerts li[data-alert-id="r2"] .owner:has-text("Wang Wei")').count() == 1
        # accepted, it is taken over
        zhao.once("dialog", lambda d: d.accept())
        zhao.click('#d-actions button[data-action="take_over"]')
        wang.locator('#alerts li[data-alert-id="r2"] .owner:has-text("Zhao Lei")').wait_for(timeout=5000)
        assert len(posts) == 1
        zhao.select_option("#d-class", "false_alarm")
        zhao.fill("#d-comment", "a cat on the wall")
        zhao.click("#d-close-alert")
        wang.locator('#alerts li[data-alert-id="r2"][data-state="false_alarm"]').wait_for(state="attached",
                                                                                          timeout=5000)
        zhao.screenshot(path=str(out / "room-after-false-alarm.png"), full_page=True)
        assert wang.title() == "Sharp Eyes · command room"  # nothing new left
        # reloading shows the same states (from the database), not just what was pushed
        wang.reload()
        wang.locator('#conn[data-state="live"]').wait_for(timeout=10_000)
        wang.click('.filter[data-filter="all"]')
        wang.locator('#alerts li[data-alert-id="r1"][data-state="resolved"]').wait_for(timeout=5000)
        wang.locator('#alerts li[data-alert-id="r2"][data-state="false_alarm"]').wait_for(timeout=5000)
        assert wang.locator('#alerts li.camera-event[data-camera="gate"]').count() == 1
        # the history search finds the alert with every action
        wang.goto(base + "/history")
        wang.select_option("#h-state", "resolved")
        wang.click("#h-go")
        wang.wait_for_function("() => { const r = [...document.querySelectorAll('#results tr.result')];"
                               " return r.length === 1 && r[0].dataset.alertId === 'r1'; }", timeout=5000)
        wang.click('#results tr.result[data-alert-id="r1"]')
        wang.locator(".timeline-row li").nth(5).wait_for()
        acts = [li.get_attribute("data-action") for li in wang.locator(".timeline-row li").all()]
        assert acts == ["acknowledge", "dispatch", "signed_for", "on_scene", "feedback", "close"]
        wang.screenshot(path=str(out / "history.png"), full_page=True)
        # the report counts them; the supervisor view and the printable alert
        wang.goto(base + "/reports")
        wang.locator('#r-cells tr[data-cell="G1"] .total:has-text("2")').wait_for(timeout=5000)
        assert wang.locator('#r-cells tr[data-cell="G2"]').count() == 0
        assert wang.get_attribute("#r-csv", "href").startswith("/api/reports.csv?")
        wang.screenshot(path=str(out / "reports.png"), full_page=True)
        wang.goto(base + "/supervisor")
        wang.locator('#s-load tr[data-operator="Zhao Lei"]').wait_for(timeout=5000)
        wang.screenshot(path=str(out / "supervisor.png"), full_page=True)
        wang.goto(base + "/alerts/r1/print")
        wang.locator("#p-timeline li").nth(5).wait_for(timeout=5000)
        wang.screenshot(path=str(out / "print-alert.png"), full_page=True)
        wang.goto(base + "/history")
        wang.select_option("#h-state", "resolved")
        # a time range is read as 24-hour wall time in the config's zone (Asia/Shanghai)
        sh = ZoneInfo("Asia/Shanghai")
        wall = lambda t: dt.datetime.fromtimestamp(t, sh).strftime("%Y-%m-%d %H:%M")  # noqa: E731
        for lo, hi, found in ((time.time() - 120, time.time() + 60, 1), (time.time() - 7200, time.time() - 3600, 0)):
            wang.fill("#h-from", wall(lo))
            wang.fill("#h-to", wall(hi))
            wang.click("#h-go")
            wang.wait_for_function(f"() => document.querySelectorAll('#results tr.result').length === {found}"
                                   " && /^\\d+ /.test(document.querySelector('#h-status').textContent)")
        browser.close()
    worst = max(delays.values())
    print(f"page load (log-in to live list) {load_s:.2f} s; action propagation to the other browser: "
          + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in delays.items())
          + f"; median {statistics.median(delays.values()) * 1000:.0f} ms, worst {worst * 1000:.0f} ms")
    assert worst < 1.0, delays


def test_operator_is_refused_other_cells_and_admin_pages_in_the_browser(room: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    base, out = room["base"], artefacts()
    room["publish"](alert_msg("g2-alert", camera="square"))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        wang = login(browser, base, "wang")
        for path in ("/users", "/engineer"):
            resp = wang.goto(base + path)
            assert resp is not None and resp.status == 403
            wang.locator("#forbidden").wait_for()
        wang.screenshot(path=str(out / "forbidden.png"))
        for path in ("/api/alerts/g2-alert", "/api/cameras/square"):
            assert wang.request.get(base + path).status == 404
        assert wang.request.get(base + "/api/users").status == 403
        # a forged POST from the page's own session but without the CSRF token
        assert wang.request.post(base + "/api/logout").status == 403
        wang.goto(base + "/")
        wang.locator("#cameras li").first.wait_for()
        assert [li.get_attribute("data-camera") for li in wang.locator("#cameras li").all()] == ["lobby", "gate"]
        boss = login(browser, base, "boss")
        boss.locator('#alerts li[data-alert-id="g2-alert"]').wait_for(timeout=5000)
        boss.goto(base + "/users")
        boss.locator('#users tr[data-user="wang"]').wait_for()
        boss.screenshot(path=str(out / "users.png"))
        boss.goto(base + "/engineer")
        boss.locator('#health tr[data-camera="square"]').wait_for()
        boss.screenshot(path=str(out / "engineer.png"))
        # the grid map: both cells for the chief, G2 with its open alert; a click filters the room to the cell
        boss.goto(base + "/map")
        boss.locator('#plan g.cell[data-cell="G2"][data-new="1"]').wait_for(timeout=5000)
        assert boss.locator("#plan g.cell").count() == 2 and boss.locator("#plan circle.camera").count() == 3
        boss.screenshot(path=str(out / "map.png"))
        boss.locator('#plan g.cell[data-cell="G1"] polygon').click()
        boss.wait_for_url(base + "/?cell=G1")
        boss.locator("#cell-filter").wait_for()
        boss.locator('#alerts li[data-alert-id="g2-alert"]').wait_for(state="hidden")
        wang.goto(base + "/map")
        wang.locator('#plan g.cell[data-cell="G1"]').wait_for()
        assert wang.locator("#plan g.cell").count() == 1
        browser.close()


def test_chinese_pages_have_no_english_words_and_24_hour_times(room: dict[str, Any], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    base, out = room["base"], artefacts()
    room["publish"](alert_msg("zh1", camera="lobby", t=1_795_944_253.6))  # 2026-11-29 17:24:13 in Shanghai
    # and one of the last minutes, so the reports page (this shift: the last 12 hours) has a row for G1
    # whenever the suite runs (with zh1 alone it had none after 05:24 Shanghai time on 30 November)
    room["publish"](alert_msg("zh2", camera="lobby", t=time.time() - 60))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = login(browser, base, "wang")
        page.select_option("#lang", "zh-CN")  # stored for the user, the page reloads in Chinese
        page.wait_for_function("() => document.documentElement.lang === 'zh-CN'")
        page.locator('#alerts li[data-alert-id="zh1"]').wait_for(timeout=5000)
        page.click('#alerts li[data-alert-id="zh1"]')
        page.locator('#detail[data-alert-id="zh1"]').wait_for()
        # the handling view links the alert's clip; the header links the camera wall
        assert page.locator("#d-clip").get_attribute("href") == "/clip/zh1"
        assert page.locator('nav a[href="/wall"]').count() == 1
        page.locator('#conn[data-state="live"]').wait_for(timeout=10_000)
        assert "2026-11-29 17:24:13" in page.locator('#alerts li[data-alert-id="zh1"] .time').inner_text()
        english = _english_words(page)
        assert english in ([], ["English"]), english  # the language menu names English in English
        page.screenshot(path=str(out / "room-zh.png"), full_page=True)
        for path, ready in (("/history", "#results tr.result"), ("/reports", '#r-cells tr[data-cell="G1"]'),
                            ("/supervisor", "#s-states tr")):
            page.goto(base + path)
            page.locator(ready).first.wait_for(timeout=5000)
            # the title is set from the catalogue once it has loaded: wait for that, not for luck
            page.wait_for_function("() => document.title !== 'Sharp Eyes'", timeout=5000)
            english = _english_words(page)
            assert english in ([], ["English"]), (path, english)
            page.screenshot(path=str(out / f"{path.strip('/')}-zh.png"), full_page=True)
        page.goto(base + "/login")  # still logged in: straight back to the room
        assert page.url == base + "/"
        page.click("#logout")
        page.wait_for_url(base + "/login")
        page.locator('#submit:has-text("登录")').wait_for()
        page.screenshot(path=str(out / "login-zh.png"))
        browser.close()


def _english_words(page: Any) -> list[str]:
    """Words in Latin letters the page shows, apart from the config's own names (cameras, cells, people)."""
    text = page.evaluate("""() => {
            const names = new Set(['Lobby camera', 'Gate camera', 'School gate', 'Xinhua Street', 'Wang Wei',
                                   'Zhao Lei', 'Chief Chen', '13800000001', 'lobby', 'gate', 'square',
                                   'Sharp Eyes']);  // the users' names: in the forward list
            const out = [];
            const walk = n => {
              if (n.nodeType === 3) { out.push(n.textContent); return; }
              if (n.nodeType !== 1 || n.hidden || getComputedStyle(n).display === 'none') return;
              if (['SCRIPT', 'STYLE', 'TEMPLATE'].includes(n.tagName)) return;
              if (n.placeholder) out.push(n.placeholder);
              n.childNodes.forEach(walk);
            };
            walk(document.body);
            let s = out.join(' ');
            for (const x of names) s = s.split(x).join(' ');
            return s + ' ' + document.title;
        }""")
    return re.findall(r"[A-Za-z]{2,}", text)


def test_an_unacknowledged_alert_escalates_on_the_page(room: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    base, out = room["base"], artefacts()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = login(browser, base, "wang")
        t0 = time.time()
        room["publish"](alert_msg("esc1", camera="lobby", severity="critical", t=t0))
        room["publish"](alert_msg("calm1", camera="gate", severity="low", t=t0 + 1))
        page.locator('#alerts li[data-alert-id="calm1"]').wait_for(timeout=5000)
        # by priority (the room's default): the critical one before the low one, though older
        assert page.locator("#alerts li").first.get_attribute("data-alert-id") == "esc1"
        assert page.get_attribute("body", "data-sound") == "critical"  # the critical one sounds until taken
        page.locator('#alerts li[data-alert-id="esc1"][data-overdue="true"]').wait_for(timeout=6000)
        took = time.time() - t0
        assert page.locator("#alerts li").first.get_attribute("data-alert-id") == "esc1"  # moved up
        assert page.locator('#alerts li[data-alert-id="esc1"] .overdue').inner_text() == "overdue · acknowledge"
        page.click('#alerts li[data-alert-id="esc1"]')
        page.locator("#d-overdue:not([hidden])").wait_for()
        page.locator('#d-timeline li[data-action="escalate"]').first.wait_for()
        assert "not acknowledged in time" in page.locator('#d-timeline li[data-action="escalate"]').first.inner_text()
        page.screenshot(path=str(out / "escalated.png"), full_page=True)
        page.click('#d-actions button[data-action="acknowledge"]')
        page.locator('#alerts li[data-alert-id="esc1"][data-overdue="false"]').wait_for(timeout=5000)
        page.locator('body[data-sound="none"]').wait_for(state="attached")  # a low alert makes no sound
        browser.close()
    print(f"critical alert (2 s to acknowledge) shown overdue {took:.1f} s after it started")


def test_the_officer_reports_from_a_phone_and_the_room_sees_it(room: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    base, out = room["base"], artefacts()
    room["publish"](alert_msg("ph1", camera="lobby", snapshot=None))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        wang = login(browser, base, "wang")
        wang.click('#alerts li[data-alert-id="ph1"]')
        wang.click('#d-actions button[data-action="acknowledge"]')
        wang.locator('#d-actions button[data-action="dispatch"]:visible').click()
        wang.wait_for_function("() => document.getElementById('d-link').value.includes('/o/')")
        link = wang.input_value("#d-link")
        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True).new_page()
        phone.goto(link)  # no session: the link is the key
        phone.locator('#o-next[data-step="signed_for"]').wait_for()
        phone.screenshot(path=str(out / "officer-phone.png"), full_page=True)
        phone.click("#o-next")
        t = time.monotonic()
        wang.locator('#d-lights .light[data-step="signed_for"][data-on="true"]').wait_for(timeout=5000)
        seen = time.monotonic() - t
        phone.locator('#o-next[data-step="on_scene"]').wait_for()
        phone.click("#o-next")
        phone.locator('#o-next[data-step="feedback"]').wait_for()
        phone.fill("#o-note", "two youths, sent home")
        phone.click("#o-next")
        phone.locator("#o-done:not([hidden])").wait_for()
        wang.locator('#d-timeline li[data-action="feedback"]:has-text("two youths")').wait_for(timeout=5000)
        phone.reload()
        phone.locator("#o-error:not([hidden])").wait_for()  # the link ended with the feedback
        browser.close()
    print(f"officer's 'signed for' on the phone shown in the room after {seen * 1000:.0f} ms")
    assert seen < 1.0
