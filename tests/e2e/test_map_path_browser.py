"""A vehicle's path on the grid map, in headless Chromium: one plate seen by four cameras (two of the operator's
cell with positions, one of another cell, one of the operator's cell without a position); from the search page's
"same plate across cameras" the map link opens the map with the plate and the time range filled, and the map
draws the operator's stops numbered in time order (1 → 2) with a line between them and each stop's time, lists
the stop without a position beside the map, and shows nothing of the other cell's camera.  A real dashboard
process, the archiver, a real Redis bus and SQLite; the sightings written straight into the history database."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

import pytest

from history import open_database
from history.sightings import row_of, store
from pipeline.config import load_config
from tests.e2e.test_dashboard_browser import ARGS, artefacts
from tests.integration.test_sightings_store import sighting
from tests.support.config import write_config
from tests.support.dashboard import (
    CHROMIUM,
    DASHBOARD_CAMERAS,
    DASHBOARD_CELLS,
    add_login,
    browser_login,
    served_dashboard,
)

pytestmark = [pytest.mark.e2e, pytest.mark.concurrent]
PLATE = "藏D·T5022"
TZ = ZoneInfo("Asia/Shanghai")
CAMERAS = {**DASHBOARD_CAMERAS,  # lobby (100,150) and gate (300,50) in G1, square (550,150) in G2
           "yard": {"name": "Back yard", "source": "rtsp://127.0.0.1:9/yard", "grid_cell": "G1"}}  # no position


@pytest.fixture(params=["zh-CN", "en"])
def site(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian chromium not installed at {CHROMIUM} (scripts/setup installs it)")
    prefix = f"mpath{time.monotonic_ns()}"
    cfg = write_config(tmp_path, CAMERAS, grid_cells=DASHBOARD_CELLS, data_dir="data", timezone="Asia/Shanghai",
                       bus={"prefix": prefix}, alerts={"incident_window_s": 0})
    add_login(cfg, "wang", "operator", "G1", "王伟", request.param)
    t0 = float(int(time.time()) - 3600)
    cells = {"lobby": "G1", "gate": "G1", "square": "G2", "yard": "G1"}
    engine = open_database(load_config(cfg))
    with engine.begin() as conn:
        for s in (sighting(1, "gate", "car", t0 + 300, plate=PLATE, body="blue"),  # written out of order
                  sighting(2, "lobby", "car", t0, plate=PLATE, body="blue"),
                  sighting(3, "square", "car", t0 + 600, plate=PLATE, body="blue"),  # another cell's
                  sighting(4, "yard", "car", t0 + 900, plate=PLATE, body="blue"),
                  sighting(5, "gate", "car", t0 + 120, plate="京A·12345", body="white")):  # another plate
            store(conn, row_of(s, cells[s.camera], None))
    engine.dispose()
    with served_dashboard(cfg, redis_url, prefix, tmp_path) as served:
        yield {"base": served.base, "t0": t0, "locale": request.param}


def clock(t: float) -> str:
    return dt.datetime.fromtimestamp(t, TZ).strftime("%H:%M:%S")


def test_the_path_of_a_plate_is_drawn_on_the_map_in_time_order_within_the_users_cells(site: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    base, t0 = site["base"], site["t0"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser_login(browser, base, "wang")
        missing: list[str] = []
        page.on("console", lambda m: missing.append(m.text) if "missing message" in m.text else None)

        # the search page: the plate's path in time order, and its map link with the plate and time range
        page.goto(f"{base}/search?plate={PLATE}")
        page.locator(".s-hit .s-path-btn").first.click()
        page.locator("#s-path:not([hidden]) #s-path-list li").first.wait_for(timeout=10_000)
        assert page.locator("#s-path-list li").evaluate_all("els => els.map(e => e.dataset.camera)") == [
            "lobby", "gate", "yard"]
        href = page.get_attribute("#s-path-map", "href") or ""
        q = parse_qs(urlparse(href).query)
        assert urlparse(href).path == "/map" and q["plate"] == [PLATE.replace("·", "")]  # as stored
        assert float(q["start"][0]) <= t0 and float(q["end"][0]) >= t0 + 900 + 10  # the path's whole span

        # the map: stops 1 and 2 at lobby and gate, joined by an arrow, each with its time; no trace of square
        page.click("#s-path-map")
        page.wait_for_url(f"{base}/map?*", timeout=10_000)
        stops = page.locator("#plan .path-stop")
        stops.nth(1).wait_for(timeout=10_000)
        page.wait_for_timeout(300)
        drawn = stops.evaluate_all("""els => els.map(e => [e.dataset.stop, e.dataset.camera,
            e.querySelector('.n').textContent, e.querySelector('.t').textContent])""")
        assert drawn == [["1", "lobby", "1", clock(t0)], ["2", "gate", "2", clock(t0 + 300)]]
        lines = page.locator("#plan line.path-line")
        assert lines.count() == 1
        assert (lines.get_attribute("data-from"), lines.get_attribute("data-to")) == ("1", "2")
        assert lines.get_attribute("marker-end") == "url(#path-arrow)"
        # the line runs from the lobby's stop towards the gate's (plan y grows north, SVG y down)
        x1, y1, x2, y2 = (float(lines.get_attribute(a) or "nan") for a in ("x1", "y1", "x2", "y2"))
        assert 100 < x1 < x2 < 300 and -150 < y1 < y2 < -50
        assert page.locator('#plan [data-camera="square"]').count() == 0  # another cell's camera: not drawn
        assert page.locator('#plan .camera[data-camera="lobby"]').count() == 1  # the map itself still there

        # beside the map: every stop in time order, the one without a position listed as not on the map
        listed = page.locator("#m-path-list li").evaluate_all(
            "els => els.map(e => [e.dataset.stop, e.dataset.camera, e.dataset.onMap])")
        assert listed == [["1", "lobby", "true"], ["2", "gate", "true"], ["3", "yard", "false"]]
        off = page.locator("#m-path-off:not([hidden]) #m-path-off-list li")
        assert off.count() == 1 and off.get_attribute("data-stop") == "3"
        assert "Back yard" in off.inner_text() and clock(t0 + 900) in off.inner_text()
        side = page.locator("#m-path").inner_text()
        assert ("不在地图上" if site["locale"] == "zh-CN" else "not on the map") in side
        assert PLATE in side and "Station square" not in side
        assert "[mappath." not in side and missing == []
        page.screenshot(path=str(artefacts() / f"map-path-{site['locale']}.png"), full_page=True)
        browser.close()
