"""Exports in headless Chromium: a real dashboard process and archiver, a real Redis bus,
recordings written by the SegmentWriter.

An operator opens an alert, clicks "Export clip", sees the progress line go to done, downloads the
ZIP and ``pipeline.export.verify`` accepts it; on the camera timeline the recorded range, the gap
of a camera without footage and the new export's hold are drawn, a range dragged across the bar is
exported and downloaded and verified too; the exports page lists both with the protected-storage
figure and releases one.  A Chinese-speaking user sees the page in Chinese.  Screenshots go to
build/test-artifacts/dashboard/.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.export.verify import verify
from tests.e2e.test_dashboard_browser import ARGS, CHROMIUM, PW, artefacts
from tests.support.dashboard import browser_login, recorded_alert_msg, recorded_room
from tests.support.record import T0

pytestmark = [pytest.mark.e2e, pytest.mark.concurrent]


@pytest.fixture
def served(tmp_path: Path, redis_url: str) -> Iterator[dict[str, Any]]:
    # lobby recorded from T0 to T0 + 30 s
    with recorded_room(tmp_path, redis_url, "xb", ("wang", "operator", "G1", "Wang Wei"),
                       ("zhao", "operator", "G1", "Zhao Lei", "zh-CN")) as room:
        yield {"base": room.base, "tmp": tmp_path, "log": room.log, "publish": room.publish}


def login(browser: Any, base: str, name: str, path: str = "/") -> Any:
    return browser_login(browser, base, name, path, password=PW, accept_downloads=True)


def download(page: Any, selector: str, dest: Path) -> Path:
    with page.expect_download(timeout=20_000) as info:
        page.click(selector)
    info.value.save_as(str(dest))
    return dest


def test_export_an_alert_and_a_timeline_range_from_the_page_and_verify_the_zips(served: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    base, tmp, out = served["base"], served["tmp"], artefacts()
    served["publish"](recorded_alert_msg("ex-1"))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = login(browser, base, "wang")
        page.locator('#conn[data-state="live"]').wait_for(timeout=10_000)
        page.click('#alerts li[data-alert-id="ex-1"]')
        page.locator('#detail[data-alert-id="ex-1"]').wait_for()
        assert page.locator("#d-export").inner_text() == "Export clip"
        # every state the progress line shows, recorded in the page as it changes
        page.evaluate("""() => { window.__states = []; const box = document.getElementById('d-export-status');
            new MutationObserver(() => { const s = box.dataset.state; const bar = box.querySelector('progress');
              window.__states.push([s, bar ? Number(bar.value) : null]); })
            .observe(box, {attributes: true, childList: true}); }""")
        page.click("#d-export")
        page.locator("#d-export-status progress.export-bar").wait_for(timeout=10_000)
        page.locator('#d-export-status[data-state="done"] a.export-zip').wait_for(timeout=30_000)
        states = page.evaluate("window.__states")
        assert states[0][0] in ("queued", "running") and states[-1] == ["done", 1], states
        assert "Export ready" in page.locator("#d-export-status").inner_text()
        page.screenshot(path=str(out / "export-alert-done.png"), full_page=True)
        zpath = download(page, "#d-export-status a.export-zip", tmp / "alert-export.zip")
        report = verify(zpath)
        assert report.ok and report.checked_files == 2, report.problems  # lobby.mp4 and manifest.txt
        with zipfile.ZipFile(zpath) as z:
            (mname,) = [n for n in z.namelist() if n.endswith("/manifest.json")]
            manifest = json.loads(z.read(mname))
        assert manifest["alert"]["alert_id"] == "ex-1" and manifest["exported_by"]["user"] == "Wang Wei (wang)"
        assert [c["id"] for c in manifest["cameras"]] == ["lobby"]
        assert manifest["requested"]["start"]["epoch"] == pytest.approx(T0 + 3.0)

        # the camera timeline: lobby recorded T0..T0+30 (and now held by the export), gate never recorded
        page.goto(f"{base}/timeline?start={T0 - 30:.0f}&end={T0 + 60:.0f}&camera=lobby&camera=gate")
        lobby = page.locator('.tl-track[data-camera="lobby"]')
        lobby.locator(".tl-rec").wait_for(timeout=10_000)
        assert lobby.locator(".tl-held").count() >= 1 and lobby.locator('.tl-alert[data-alert-id="ex-1"]').count() == 1
        assert page.locator('.tl-track[data-camera="gate"] .tl-rec').count() == 0
        assert page.locator('.tl-track[data-camera="gate"] .tl-gap').count() >= 1
        box = lobby.bounding_box()
        assert box is not None
        # drag from T0 + 6 s to T0 + 24 s (the window is 90 s wide)
        x = [box["x"] + box["width"] * (36 + s) / 90 for s in (0, 18)]
        page.mouse.move(x[0], box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(x[1], box["y"] + box["height"] / 2, steps=8)
        page.mouse.up()
        sel = page.locator("#tl-selected")
        assert float(sel.get_attribute("data-start")) == pytest.approx(T0 + 6, abs=1.5)
        assert float(sel.get_attribute("data-end")) == pytest.approx(T0 + 24, abs=1.5)
        page.click("#tl-export")
        page.locator('#tl-status[data-state="done"] a.export-zip').wait_for(timeout=30_000)
        page.screenshot(path=str(out / "export-timeline.png"), full_page=True)
        zpath2 = download(page, "#tl-status a.export-zip", tmp / "range-export.zip")
        assert verify(zpath2).ok

        # the exports page: both exports, the protected figure, release of the first
        page.goto(base + "/exports")
        rows = page.locator("#x-exports tbody tr")
        rows.nth(1).wait_for(timeout=10_000)
        assert rows.count() == 2
        figure = page.locator("#x-protected")
        assert int(figure.get_attribute("data-exports-bytes")) > 0 and "Recordings kept" in figure.inner_text()
        page.on("dialog", lambda d: d.accept())
        alert_row = page.locator('#x-exports tbody tr:has-text("ex-1")')
        alert_row.locator("button.x-release").click()
        page.locator('#x-exports tbody tr[data-state="released"]').wait_for(timeout=10_000)
        page.screenshot(path=str(out / "exports-page.png"), full_page=True)

        zh = login(browser, base, "zhao")
        zh.locator('#conn[data-state="live"]').wait_for(timeout=10_000)
        assert zh.locator("#d-export").text_content() == "导出片段"
        zh.goto(base + "/exports")
        zh.locator("#x-exports tbody tr").nth(1).wait_for(timeout=10_000)
        assert zh.locator("h2").first.inner_text() == "受保护存储"
        assert "导出" in zh.locator('nav a[href="/exports"]').inner_text()
        browser.close()
    assert "Traceback" not in served["log"].read_text()
