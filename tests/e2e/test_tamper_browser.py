"""Each tamper kind end to end, seen by an operator: `sharpeye run` on five file cameras made from the shared
person clip (one normal, one going dark, one covered by a card, one defocused, one knocked aside), the real
worker's tamper checks on the frames it decodes anyway, the bus, the dashboard and headless Chromium: every
tampered camera's alert appears in the room's list as "camera tamper" with the kind the worker found, and the
normal camera raises nothing.

The arrays-level tests (tests/test_tamper.py) prove the decisions on every kind with the default timings; here
the timings are shortened (for_s 3 s, warm-up 4 s) so the whole chain runs in about a minute.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from pipeline.tools.simulator import free_port
from tests.support.config import write_config
from tests.support.dashboard import browser_login, stop
from tests.support.media import reencode
from tests.support.waits import http_up, wait_for

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "tamper-password-1"
FPS = 10
SIZE = (640, 360)
NORMAL_S = 10.0  # seconds of normal picture first: the checks learn the camera's reference
LENGTH_S = 30.0
pytestmark = pytest.mark.e2e

Transform = Callable[[np.ndarray], np.ndarray]
_SHIFT = np.array([[1, 0, 0.10 * SIZE[0]], [0, 1, 0]], np.float32)
TAMPERING: dict[str, tuple[str, Transform]] = {  # camera id: (the kind it must raise, what happens to the lens)
    "dark1": ("dark", lambda img: (img.astype(np.float32) * 0.02).astype(np.uint8)),
    "card1": ("covered", lambda img: np.full_like(img, 120)),
    "blur1": ("blur", lambda img: cv2.GaussianBlur(img, (0, 0), 4.0)),
    "aside1": ("moved", lambda img: cv2.warpAffine(img, _SHIFT, SIZE, borderMode=cv2.BORDER_REFLECT)),
}


def tampered_clip(src: Path, dest: Path, transform: Transform | None) -> Path:
    """LENGTH_S of the person clip at 640x360, FPS fps (keyframe every 2 s), ``transform`` applied after NORMAL_S."""
    def edit(img: np.ndarray, t: float) -> np.ndarray:
        return transform(img) if transform is not None and t >= NORMAL_S else img
    return reencode(src, dest, LENGTH_S, FPS, SIZE, edit)


@pytest.fixture(scope="module")
def room(tmp_path_factory: pytest.TempPathFactory, person_clip: Path) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("tamperb")
    tamper = {"warmup_s": 4, "interval_s": 0.2, "clear_s": 2,
              **{k: {"for_s": 3} for k in ("dark", "covered", "blur", "moved")}}
    cams: dict[str, dict[str, Any]] = {"normal": {"source": tampered_clip(person_clip, tmp / "normal.mp4", None),
                                                  "detect_fps": 0.5, "tamper": tamper}}
    for cid, (_kind, transform) in TAMPERING.items():
        cams[cid] = {"source": tampered_clip(person_clip, tmp / f"{cid}.mp4", transform), "detect_fps": 0.5,
                     "tamper": tamper}
    cfg = write_config(tmp, cams, data_dir="data", recordings={"enabled": False})
    add = subprocess.run([sys.executable, "-m", "cli.main", "users", "add", "op", "--config", str(cfg),
                          "--role", "operator", "--cells", "G1", "--locale", "en", "--password-stdin"],
                         input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert add.returncode == 0, add.stderr
    port = free_port()
    log = open(tmp / "run.log", "w")
    started = time.time()
    run = subprocess.Popen([sys.executable, "-m", "cli.main", "run", "--config", str(cfg), "--port", str(port)],
                           stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_up(base + "/healthz"), 60, "the dashboard", interval=0.3)
        yield {"base": base, "tmp": tmp, "started": started}
    finally:
        stop(run, signal.SIGINT, 20)
        log.close()


CHECK_TEXT = {"dark": "too dark / blinded", "covered": "covered", "blur": "out of focus", "moved": "turned away"}


def test_each_tamper_kind_shows_in_the_room_list(room: dict[str, Any]) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian chromium not installed at {CHROMIUM} (scripts/setup installs it)")
    from playwright.sync_api import sync_playwright

    base = room["base"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser_login(browser, base, "op", password=PASSWORD)
        seen: dict[str, float] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(seen) < len(TAMPERING):
            for cid in TAMPERING:
                li = page.locator(f'#alerts li[data-camera="{cid}"]')
                want = f"camera tamper · {CHECK_TEXT[TAMPERING[cid][0]]}"  # which check fired, in words
                if cid not in seen and li.count() and li.first.locator(".rule").inner_text() == want:
                    seen[cid] = time.time() - room["started"]
            page.wait_for_timeout(500)
        assert set(seen) == set(TAMPERING), f"alerts in the list for {sorted(seen)} only"
        assert page.locator('#alerts li[data-camera="normal"]').count() == 0  # the normal clip raises nothing
        # the kind the worker found is the one done to each lens (the alert's rule id says it)
        kinds = page.evaluate("() => fetch('/api/alerts').then(r => r.json()).then(d => d.alerts"
                              ".filter(a => a.rule.kind === 'tamper').map(a => [a.camera.id, a.rule.id]))")
        found: dict[str, set[str]] = {}
        for cid, rule_id in kinds:
            found.setdefault(cid, set()).add(rule_id.removeprefix("tamper:"))  # rule id tamper:<kind>
        assert found == {cid: {kind} for cid, (kind, _t) in TAMPERING.items()}, found
        page.locator('#alerts li[data-camera="card1"]').first.click()
        assert "camera tamper" in page.locator("#d-title").inner_text()
        page.screenshot(path=str(room["tmp"] / "tamper-list.png"))
        browser.close()
    print("\nTAMPER first seen in the room list (polled every 0.5 s once the page was open), seconds after "
          f"`sharpeye run` was started (tampering begins at {NORMAL_S:g} s of each file, for_s 3 s): "
          + ", ".join(f"{c} {s:.1f}" for c, s in sorted(seen.items())))
