"""The handling view in headless Chromium on `sharpeye run` (an RTSP simulator camera, the worker's live seam,
the dashboard, a real Redis bus and SQLite): the detail stays in view after picking the last of 60 alerts at
1600 and 1920 px with nothing clipped, the alarm camera plays live in it beside the snapshot, its related
cameras (same cell, a neighbour of another cell) are tiles, the players stop when the detail changes or closes,
and a forward to a colleague picked from the on-duty list, confirmed, reaches that colleague's room as a notice
(and as a browser notification while the page is hidden)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.live import protocol
from pipeline.publish import bus
from pipeline.tools.simulator import RtspSimulator, free_port
from tests.e2e.test_dashboard_browser import ARGS, CHROMIUM, _user, artefacts, login
from tests.support.assets import clip, missing_asset, require_camsim
from tests.support.config import write_config
from tests.support.dashboard import alert_msg, stop
from tests.support.waits import http_up, wait_for

pytestmark = pytest.mark.e2e
CELLS = {"G1": {"name": "Xinhua Street", "officer": {"name": "Wang Wei", "phone": "13800000001"}},
         "G2": {"name": "Station Square", "officer": {"name": "Li Na", "phone": "13800000002"}}}
MAIN = "(() => window.__handling && window.__handling.main && window.__handling.main.player)"


@pytest.fixture(scope="module")
def room(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[dict[str, Any]]:
    require_camsim()
    if not Path(CHROMIUM).exists():
        missing_asset(f"Debian chromium not installed at {CHROMIUM}")
    tmp = tmp_path_factory.mktemp("handling")
    prefix = f"hvb{time.monotonic_ns()}"
    port = free_port()
    with RtspSimulator({"lobby": clip("car-detection.sub.mp4")}) as sim:
        cfg = write_config(tmp, {
            # the one live camera; it raises nothing itself (no train in the clip): the test publishes the alerts
            "lobby": {"name": "Lobby camera", "source": sim.url("lobby"), "grid_cell": "G1", "record": False,
                      "alert_labels": ["train"], "detect_fps": 0.2, "neighbours": ["square"]},
            "gate": {"name": "School gate", "source": "rtsp://127.0.0.1:9/gate", "grid_cell": "G1"},
            "square": {"name": "Station square", "source": "rtsp://127.0.0.1:9/square", "grid_cell": "G2"},
        }, data_dir="data", timezone="Asia/Shanghai", redis_url=redis_url, bus={"prefix": prefix},
            grid_cells=CELLS, alerts={"incident_window_s": 0})
        _user(cfg, "wang", "operator", "G1,G2", "Wang Wei")
        _user(cfg, "zhao", "operator", "G1", "Zhao Lei")
        log = open(tmp / "run.log", "w")
        run = subprocess.Popen([sys.executable, "-m", "cli.main", "run", "--config", str(cfg), "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        data = tmp / "data"
        r = bus.connect(redis_url)
        keys = bus.BusKeys(prefix)
        try:
            wait_for(lambda: http_up(base + "/healthz"), 90, "the dashboard", interval=0.3)
            wait_for(lambda: protocol.stats(data).get("lobby", {}).get("sub", {}).get("gop_packets"), 90,
                     lambda: f"the lobby's live tap holding a GOP: {protocol.stats(data)}", interval=0.3)
            yield {"base": base, "data": data, "publish": lambda m: bus.publish_event(r, keys, m, 10_000)}
        finally:
            stop(run, signal.SIGINT, 20)
            log.close()


def sixty(publish: Any) -> list[str]:
    """60 alerts, 20 per camera (every alert its own incident); the newest, last in the list, is the lobby's."""
    now = time.time()
    ids = []
    for i in range(60):
        cam = ("gate", "square", "lobby")[i % 3]
        m = alert_msg(f"h{i:02d}", camera=cam, t=now - 600 + i * 5)  # lobby and gate in G1, square in G2
        publish(m)
        ids.append(m["alert_id"])
    return ids


def in_view(page: Any, selector: str) -> dict[str, Any]:
    """The element's box, the viewport, and whether the element is what shows at its own centre."""
    return page.evaluate("""(sel) => { const e = document.querySelector(sel); const b = e.getBoundingClientRect();
        const hit = document.elementFromPoint(b.left + b.width / 2, b.top + b.height / 2);
        return {left: b.left, right: b.right, top: b.top, bottom: b.bottom, vw: document.documentElement.clientWidth,
                vh: window.innerHeight, own: !!hit && (hit === e || e.contains(hit)), scrollY: window.scrollY}; }""",
                         selector)


def test_last_of_sixty_stays_in_view_plays_live_and_shows_related_cameras(room: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    ids = sixty(room["publish"])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=[*ARGS, "--autoplay-policy=no-user-gesture-required"])
        page = login(browser, room["base"], "wang")
        page.locator(f'#alerts li.alert[data-alert-id="{ids[-1]}"]').wait_for(timeout=15_000)
        wait_for(lambda: page.locator("#alerts li.alert:not([hidden])").count() == 60, 15,
                 lambda: f"60 items, not {page.locator('#alerts li.alert:not([hidden])').count()}")
        last = page.eval_on_selector_all("#alerts li.alert:not([hidden])", "ls => ls[ls.length - 1].dataset.alertId")
        assert last == ids[-1]
        for width in (1600, 1920):
            page.set_viewport_size({"width": width, "height": 900})
            page.evaluate("window.scrollTo(0, 0)")
            page.locator(f'#alerts li.alert[data-alert-id="{last}"]').click()  # scrolls the list down to it
            page.locator(f'#detail[data-alert-id="{last}"]').wait_for(timeout=5000)
            box = in_view(page, "#detail")
            assert box["scrollY"] > 2000, box  # the page really is scrolled far down the list
            assert 0 <= box["top"] < box["vh"] / 2 and box["right"] <= box["vw"], (width, box)
            assert in_view(page, "#d-title")["own"], (width, box)  # the panel's head is on screen
            page.locator("#d-forward").scroll_into_view_if_needed()
            fwd = in_view(page, "#d-forward")
            assert fwd["own"] and 0 <= fwd["top"] and fwd["bottom"] <= fwd["vh"], (width, fwd)
            assert fwd["right"] <= in_view(page, "#detail")["right"] and fwd["right"] - fwd["left"] > 20, (width, fwd)
            page.screenshot(path=str(artefacts() / f"room-handling-{width}.png"))

        # the alarm camera plays in the detail: a first frame, then time advancing
        page.wait_for_function(f"() => {MAIN}() && {MAIN}().stats.firstFrameMs !== null", timeout=15_000)
        t0 = page.evaluate(f"() => {MAIN}().tile.video.currentTime")
        page.wait_for_function(f"() => {MAIN}().tile.video.currentTime > {t0 + 1.0}", timeout=10_000)
        st = page.evaluate(f"() => {{ const p = {MAIN}(); return {{ready: p.tile.video.readyState, "
                           "w: p.tile.video.videoWidth, cam: p.camera.id, error: p.stats.error}; }")
        assert st["ready"] >= 2 and st["w"] > 0 and st["cam"] == "lobby" and st["error"] is None, st
        assert page.locator("#d-media #d-snap").count() == 1  # beside the snapshot
        # related: the gate (same cell), the square (a neighbour in G2, which wang may see)
        tiles = page.locator('[data-testid="related-cameras"] .hv-tile')
        tiles.first.wait_for(timeout=5000)
        got = page.eval_on_selector_all('[data-testid="related-cameras"] .hv-tile',
                                        "ts => ts.map(t => [t.dataset.camera, t.dataset.relation])")
        assert got == [["gate", "cell"], ["square", "neighbour"]]
        assert "[" not in page.locator("#d-related").inner_text()
        page.screenshot(path=str(artefacts() / "room-handling-live.png"))
        wait_for(lambda: protocol.stats(room["data"])["lobby"]["sub"]["viewers"] >= 1, 10, "a viewer on the lobby")

        # another alert in the detail: the lobby's player is closed, the gate's opens
        page.evaluate(f"() => {{ window.__oldPlayer = {MAIN}(); }}")
        gate = next(i for i in reversed(ids) if int(i[1:]) % 3 == 0)
        page.locator(f'#alerts li.alert[data-alert-id="{gate}"]').click()
        page.locator(f'#detail[data-alert-id="{gate}"]').wait_for(timeout=5000)
        assert page.evaluate("() => window.__oldPlayer.closed") is True
        assert page.evaluate(f"() => {MAIN}().camera.id") == "gate"
        # the panel closed: every player stops, the worker's lobby viewer goes
        page.locator('#alerts li.alert[data-alert-id="h59"]').click()
        page.wait_for_function(f"() => {MAIN}() && {MAIN}().camera.id === 'lobby'", timeout=5000)
        page.click("#d-close")
        assert page.evaluate("() => window.__handling.main === null && window.__handling.related.length === 0")
        wait_for(lambda: protocol.stats(room["data"])["lobby"]["sub"]["viewers"] == 0, 10,
                 lambda: f"no viewer left: {protocol.stats(room['data'])['lobby']}")
        browser.close()


def test_forward_to_an_on_duty_colleague_is_confirmed_and_notifies_them(room: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    m = alert_msg("fw1", camera="lobby")
    room["publish"](m)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        zhao = login(browser, room["base"], "zhao")
        zhao.context.grant_permissions(["notifications"], origin=room["base"])
        # zhao's page is hidden (another window in front): the notice also comes as a browser notification
        zhao.evaluate("""() => { Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
            const N = window.Notification; window.__notes = [];
            window.Notification = class extends N { constructor(t, o) { super(t, o); window.__notes.push(t); } }; }""")
        wang = login(browser, room["base"], "wang")
        wang.locator('#alerts li.alert[data-alert-id="fw1"]').click()
        wang.locator('#detail[data-alert-id="fw1"]').wait_for(timeout=5000)
        # the list: zhao, on duty (logged in now); nobody is typed
        wang.locator('#d-forward-to option[value="zhao"]:not([disabled])').wait_for(state="attached", timeout=5000)
        assert wang.locator("#d-forward-to").evaluate("e => e.tagName") == "SELECT"
        wang.fill("#d-forward-msg", "please take this one, I am on the phone")
        # nobody picked: refused before anything is sent
        wang.click("#d-forward")
        assert wang.locator("#d-error").inner_text() == "Pick the colleague to forward to"
        wang.select_option("#d-forward-to", "zhao")
        asked: list[str] = []
        wang.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))  # first: cancelled
        wang.click("#d-forward")
        wang.wait_for_timeout(500)
        assert asked and "Zhao Lei" in asked[0] and "Lobby camera" in asked[0], asked
        assert wang.locator("#d-owner").inner_text() == "nobody yet"  # nothing was sent
        wang.once("dialog", lambda d: (asked.append(d.message), d.accept()))
        wang.click("#d-forward")
        wang.locator("#d-owner").filter(has_text="Zhao Lei").wait_for(timeout=5000)
        note = zhao.locator('[data-testid="notices"] .hv-notice[data-kind="forwarded"][data-alert-id="fw1"]')
        note.wait_for(timeout=5000)
        assert "Wang Wei forwarded an alert to you" in note.inner_text()
        assert "please take this one" in note.inner_text()
        assert any("Wang Wei forwarded" in n for n in zhao.evaluate("() => window.__notes"))
        note.locator(".hv-open").click()
        zhao.locator('#detail[data-alert-id="fw1"]').wait_for(timeout=5000)
        assert zhao.locator("#d-owner").inner_text().endswith("Zhao Lei")
        zhao.screenshot(path=str(artefacts() / "room-handling-notice.png"))
        browser.close()
