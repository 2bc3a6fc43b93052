"""Push to wall in headless Chromium: the wall opens on the operator's own cells' cameras; with the wall open in
one browser (another PC logged in as the same user) and the command room in another, "push to wall" puts the
alarm camera on the chosen tile within a few seconds and "restore" brings back the camera that was there (a
real dashboard process, the archiver, a real Redis bus and SQLite; no camera runs, so tiles show no picture:
what is checked is which camera each tile shows)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_dashboard_browser import ARGS, CHROMIUM, PW, artefacts, login
from tests.support.dashboard import alert_msg, browser_login, served_site

pytestmark = [pytest.mark.e2e, pytest.mark.concurrent]
CELLS = {"G1": {"name": "Xinhua Street", "officer": {"name": "Wang Wei", "phone": "13800000001"}},
         "G2": {"name": "Station Square", "officer": {"name": "Li Na", "phone": "13800000002"}}}
G1 = ["lobby", "gate", "square", "yard", "park"]  # config order; the alarm camera, park, is not on the wall
CAMERAS: dict[str, dict[str, Any]] = {
    **{c: {"name": f"{c.title()} camera", "source": f"rtsp://127.0.0.1:9/{c}", "grid_cell": "G1"} for c in G1[:2]},
    "depot": {"name": "Depot camera", "source": "rtsp://127.0.0.1:9/depot", "grid_cell": "G2"},  # not wang's
    **{c: {"name": f"{c.title()} camera", "source": f"rtsp://127.0.0.1:9/{c}", "grid_cell": "G1"} for c in G1[2:]},
}
TILES = "() => [...document.querySelectorAll('#wall .tile')].map(t => t.dataset.camera || null)"


@pytest.fixture
def site(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    with served_site(tmp_path, redis_url, "wallp", CAMERAS, CELLS, ("wang", "operator", "G1", "Wang Wei")) as served:
        yield {"base": served.base, "publish": served.publish}


def park_alert(alert_id: str) -> dict[str, Any]:
    m = alert_msg(alert_id, camera="lobby")
    m["camera"] = {"id": "park", "name": "Park camera"}
    m["grid_cell"] = {"id": "G1", "name": "Xinhua Street", "officer": {"name": "Wang Wei", "phone": "13800000001"}}
    return m


def seconds_until(page: Any, selector: str, shown: Any) -> float:
    """Seconds from a click on ``selector`` in ``page`` until ``shown`` (a locator) is there."""
    t0 = time.monotonic()
    page.click(selector)
    shown.wait_for(timeout=5000)
    return time.monotonic() - t0


def test_push_the_alarm_camera_to_the_wall_and_restore(site: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    base = site["base"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        # the wall on "another PC": its own browser context and log-in as the same user
        wall = browser_login(browser, base, "wang", "/", password=PW)
        wall.goto(base + "/wall")
        wall.locator('#wall .tile[data-camera="lobby"]').wait_for(timeout=10_000)
        assert wall.evaluate(TILES) == ["lobby", "gate", "square", "yard"]  # the user's cells, in config order
        assert wall.locator('#wall .tile[data-camera="depot"]').count() == 0

        room = login(browser, base, "wang")
        site["publish"](park_alert("wp1"))
        room.locator('#alerts li.alert[data-alert-id="wp1"]').click(timeout=10_000)
        room.locator('#detail[data-alert-id="wp1"]').wait_for()
        box = room.locator('[data-testid="wall-push"]')
        box.wait_for(timeout=5000)
        room.locator("#d-wall-tile option").nth(3).wait_for(state="attached", timeout=5000)
        assert room.locator("#d-wall-tile option").nth(1).inner_text() == "tile 2 · Gate camera"
        assert room.locator("#d-wall-restore").is_hidden()
        room.select_option("#d-wall-tile", "2")
        pushed_s = seconds_until(room, "#d-wall-push",
                                 wall.locator('#wall .tile[data-camera="park"][data-pushed="true"]'))
        assert wall.evaluate(TILES) == ["lobby", "park", "square", "yard"]
        assert wall.locator('#wall .tile[data-camera="park"] .restore').is_visible()
        assert room.locator("#d-wall-status").inner_text() == "on wall tile 2"
        assert room.locator("#d-wall-tile option").nth(1).inner_text() == "tile 2 · Park camera · pushed"
        assert room.locator("#d-wall-restore").get_attribute("title") == "restore: Gate camera"
        wall.screenshot(path=str(artefacts() / "wall-pushed.png"))

        restored_s = seconds_until(room, "#d-wall-restore",
                                   wall.locator('#wall .tile[data-camera="gate"][data-pushed="false"]'))
        assert wall.evaluate(TILES) == ["lobby", "gate", "square", "yard"]
        assert room.locator("#d-wall-restore").is_hidden()
        # the push and the restore are on the alert's timeline, in words
        room.reload()
        room.locator('#alerts li.alert[data-alert-id="wp1"]').click(timeout=10_000)
        room.locator('#d-timeline li[data-action="wall_restore"]').wait_for(timeout=5000)
        assert "put Park camera on wall tile 2" in room.locator('#d-timeline li[data-action="wall_push"]').inner_text()
        print(f"push on the wall after {pushed_s:.2f} s, restore after {restored_s:.2f} s")
        assert pushed_s < 5 and restored_s < 5
        # pushed again onto tile 1, restored on the wall itself: the room's tile list follows
        room.locator('#d-wall-tile option[value="1"]').wait_for(state="attached", timeout=5000)
        room.select_option("#d-wall-tile", "1")
        room.click("#d-wall-push")
        wall.locator('#wall .tile[data-camera="park"][data-pushed="true"]').wait_for(timeout=5000)
        wall.locator('#wall .tile[data-camera="park"] .restore').click()
        wall.locator('#wall .tile[data-camera="lobby"][data-pushed="false"]').wait_for(timeout=5000)
        room.locator("#d-wall-tile").focus()
        room.locator('#d-wall-tile option[value="1"]', has_text="tile 1 · Lobby camera").wait_for(
            state="attached", timeout=5000)
        # the wall page opened again (no bookmark) shows the user's wall as it is now
        wall.goto(base + "/wall")
        wall.locator('#wall .tile[data-camera="gate"]').wait_for(timeout=10_000)
        assert wall.evaluate(TILES) == ["lobby", "gate", "square", "yard"]
        browser.close()
