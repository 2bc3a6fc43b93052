"""The search page (研判) in headless Chromium, on sightings the real pipeline made from real footage.

Three cameras run in one real worker (file sources at real-time pace, the real detector, tracker and
sightings stage, plates read on the checkpoint camera, recordings on), the archiver stores the sightings,
a dashboard process serves the page:

* ``carpark``: the shared car-park clip (seconds 10-22, played at half speed so its one vehicle track is
  long enough to confirm; YOLOX-Nano calls the car seen from above a bus);
* ``street``: the shared person clip (the first 24 s; people walking in);
* ``checkpoint``: the shared truck photo with the shared blue plate (藏D·T5022) pasted on its front, driving
  down a road: neither shared clip has a readable plate, and the plate photo alone is a bumper no detector
  calls a vehicle.

An operator searches a colour + kind and finds the car-park and street sightings, searches the plate with
one character wrong and finds the checkpoint's, opens the clip (the URL names the time, the video plays
from it), adds the sighting to a case (the case lists it), and follows the plate's path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import av
import cv2
import numpy as np
import pytest
import redis as redis_lib
from sqlalchemy import select

from history import open_database
from history.schema import actions
from history.sightings import SightingQuery, search
from pipeline.analyse.sightings import STREAM
from pipeline.config import load_config
from tests.e2e.test_dashboard_browser import ARGS, CHROMIUM, PW, _user, artefacts
from tests.support.config import write_config
from tests.support.dashboard import browser_login, served_dashboard
from tests.support.media import reencode
from tests.unit.analyse.plate_clips import BLUE, TRUCK, photo

pytestmark = pytest.mark.e2e
PLATE = "藏DT5022"
FRAMES = {"carpark": 150, "street": 240, "checkpoint": 90}  # frames in each camera's clip


def write_frames(dest: Path, frames: Iterator[np.ndarray], fps: int) -> Path:
    """H.264 (no B-frames, a keyframe every second) of ``frames`` at ``fps``."""
    with av.open(str(dest), "w") as out:
        st = None
        for n, img in enumerate(frames):
            if st is None:
                st = out.add_stream("libx264", rate=fps)
                st.width, st.height, st.pix_fmt = img.shape[1], img.shape[0], "yuv420p"
                st.codec_context.options = {"bf": "0", "preset": "veryfast", "x264-params": f"keyint={fps}:scenecut=0"}
                st.time_base = Fraction(1, fps)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts = n
            for pkt in st.encode(frame):
                out.mux(pkt)
        assert st is not None
        for pkt in st.encode(None):
            out.mux(pkt)
    return dest


def carpark_clip(src: Path, dest: Path) -> Path:
    """Seconds 10-22 of the car-park clip (12.5 fps), every frame kept and played at 6 fps: half speed."""
    def frames() -> Iterator[np.ndarray]:
        with av.open(str(src)) as c:
            v = c.streams.video[0]
            for f in c.decode(v):
                t = float(f.pts * v.time_base)
                if 10.0 <= t < 22.0:
                    yield f.to_ndarray(format="bgr24")
                elif t >= 22.0:
                    return
    return write_frames(dest, frames(), 6)


def checkpoint_clip(dest: Path) -> Path:
    """1280x720 at 10 fps: 1 s of empty road, the plated truck driving down for 5 s, 3 s of empty road."""
    truck = cv2.resize(photo(TRUCK)[40:290, 60:280], None, fx=2.0, fy=2.0, interpolation=cv2.INTER_AREA)
    plate = photo(BLUE)[130:345, 200:590]
    plate = cv2.resize(plate, (200, round(200 * plate.shape[0] / plate.shape[1])), interpolation=cv2.INTER_AREA)
    y0, x0 = truck.shape[0] - plate.shape[0] - 10, (truck.shape[1] - plate.shape[1]) // 2
    truck[y0:y0 + plate.shape[0], x0:x0 + plate.shape[1]] = plate
    road = np.full((720, 1280, 3), (60, 62, 64), np.uint8)

    def frames() -> Iterator[np.ndarray]:
        for i in range(90):
            f = road.copy()
            if 10 <= i < 60:
                y = 40 + 2 * (i - 10)
                f[y:y + truck.shape[0], 400:400 + truck.shape[1]] = truck
            yield f
    return write_frames(dest, frames(), 10)


@pytest.fixture
def site(tmp_path: Path, redis_url: str, car_clip: Path, person_clip: Path) -> Iterator[dict[str, Any]]:
    from pipeline.runtime.worker import Worker

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian chromium not installed at {CHROMIUM} (scripts/setup installs it)")
    clips = {"carpark": carpark_clip(car_clip, tmp_path / "carpark.mp4"),
             "street": reencode(person_clip, tmp_path / "street.mp4", 24.0, 10, (640, 360), tune="zerolatency"),
             "checkpoint": checkpoint_clip(tmp_path / "checkpoint.mp4")}
    prefix = f"sb{time.monotonic_ns()}"
    cfg_path = write_config(tmp_path, {
        "carpark": {"name": "Car park", "source": clips["carpark"], "detect_fps": 6, "loop": False,
                    "sightings": {"every_s": 5, "min_duration_s": 0.5}},
        "street": {"name": "Street", "source": clips["street"], "detect_fps": 5, "loop": False,
                   "sightings": {"every_s": 5}},
        "checkpoint": {"name": "Checkpoint", "source": clips["checkpoint"], "detect_fps": 5, "loop": False,
                       "sightings": {"every_s": 5, "min_duration_s": 0.5, "plates": True}}},
        data_dir="data", timezone="Asia/Shanghai", bus={"prefix": prefix}, recordings={"segment_s": 4})
    cfg = load_config(cfg_path)
    _user(cfg_path, "wang", "operator", "G1", "Wang Wei")
    with served_dashboard(cfg_path, redis_url, prefix, tmp_path) as room:
        worker = Worker(cfg, redis_url)
        worker.start()
        try:  # each clip played through at real-time pace (the longest is 25 s), then its last tracks end
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and any(
                    rt.source.stats.packets < FRAMES[cid] - 2 for cid, rt in worker.cameras.items()):
                time.sleep(0.5)
            time.sleep(3)
            counts = {cid: rt.counters() for cid, rt in worker.cameras.items()}
        finally:
            worker.stop()  # the open segments are finished
        sent = [json.loads(f[b"json"]) for _, f in redis_lib.Redis.from_url(redis_url).xrange(f"{prefix}:{STREAM}")]
        print(f"\nworker: {counts}; sightings sent {[(m['camera'], m['label']) for m in sent]}")
        engine = open_database(cfg)
        want = {"carpark": SightingQuery(cameras=("carpark",), labels=("car", "bus", "truck")),
                "street": SightingQuery(cameras=("street",), labels=("person",)),
                "checkpoint": SightingQuery(plate=PLATE)}
        found: dict[str, list[dict[str, Any]]] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(found) < len(want):
            found = {k: rows for k, q in want.items() if (rows := search(engine, q))}
            time.sleep(0.5)
        assert len(found) == len(want), (found, (tmp_path / "archiver.log").read_text()[-2000:])
        yield {"base": room.base, "found": found, "engine": engine, "cfg": cfg}
        engine.dispose()


def search_for(page: Any, plate: str = "", match: str = "exact", labels: tuple[str, ...] = (), colour: str = "",
               part: str = "any") -> list[dict[str, Any]]:
    page.fill("#s-plate", plate)
    page.select_option("#s-match", match)
    for box in page.locator(".s-label").all():
        box.set_checked(box.get_attribute("value") in labels)
    page.select_option("#s-colour", colour)
    page.select_option("#s-part", part)
    page.evaluate("document.getElementById('s-results').dataset.state = ''")
    page.click("#s-go")
    page.locator('#s-results[data-state="done"]').wait_for(state="attached", timeout=10_000)
    return list(page.evaluate("window.__search.rows"))


def top_colour(row: dict[str, Any], part: str) -> str:
    return str(row["colours"][part][0]["name"])


def test_search_by_colour_kind_and_plate_opens_the_clip_and_adds_to_a_case(site: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    base, found, out = site["base"], site["found"], artefacts()
    car, person, plated = found["carpark"][0], found["street"][0], found["checkpoint"][0]
    print(f"\nsightings: car park {[(r['label'], r['body_colour']) for r in found['carpark']]}, street "
          f"{[(r['upper_colour'], r['lower_colour']) for r in found['street']]}, checkpoint "
          f"{[(r['label'], r['plate'], r['plate_confidence']) for r in found['checkpoint']]}")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser_login(browser, base, "wang", password=PW)
        page.click('#nav a[href="/search"]')
        page.wait_for_url(base + "/search")
        page.locator(".s-label").first.wait_for(timeout=10_000)
        assert page.title() == "Search (sightings)"

        # colour + kind: the car park's vehicle by its body colour, the street's people by their upper body
        rows = search_for(page, labels=("car", "bus", "truck"), colour=top_colour(car, "body"), part="body")
        assert car["sighting_id"] in {r["sighting_id"] for r in rows}
        hit = page.locator(f'.s-hit[data-sighting="{car["sighting_id"]}"]')
        assert hit.locator(".s-cam").inner_text() == "Car park"
        assert page.locator(f'.s-track[data-camera="carpark"] img[data-sighting="{car["sighting_id"]}"]').count() == 1
        assert hit.locator("img").evaluate("i => i.complete && i.naturalWidth > 0")  # the crop is served
        rows = search_for(page, labels=("person",), colour=top_colour(person, "upper"), part="upper")
        assert {r["camera_id"] for r in rows} == {"street"}
        assert person["sighting_id"] in {r["sighting_id"] for r in rows}
        # both at once: the two kinds and any colour, every camera's sightings on the timeline
        rows = search_for(page, labels=("person", "car", "bus", "truck"))
        assert {"carpark", "street"} <= {r["camera_id"] for r in rows}
        page.screenshot(path=str(out / "search-colour-kind.png"), full_page=True)

        # a plate with one wrong character (the last 2 read as 3, the province as 川)
        for typed in ("藏D·T5023", "川DT5022"):
            rows = search_for(page, plate=typed, match="fuzzy")
            assert [r["camera_id"] for r in rows] and {r["plate"] for r in rows} == {PLATE}, (typed, rows)
        assert search_for(page, plate="藏D·T5023", match="exact") == []
        assert search_for(page, plate="藏DT", match="prefix")
        rows = search_for(page, plate="藏D·T5023", match="fuzzy")
        hit = page.locator(f'.s-hit[data-sighting="{plated["sighting_id"]}"]')
        assert "藏D·T5022" in hit.locator(".s-plate").inner_text()
        page.screenshot(path=str(out / "search-plate.png"), full_page=True)

        # the plate's path across cameras, in time order
        hit.locator(".s-path-btn").click()
        page.locator("#s-path-list li").first.wait_for(timeout=10_000)
        assert page.locator("#s-path-list li").evaluate_all("ls => ls.map(l => l.dataset.camera)") == \
            ["checkpoint"] * len(found["checkpoint"])

        # add it to a case: the case lists it
        page.fill("#s-case", "C-plate")
        hit.locator(".s-add").click()
        page.locator(f'#s-case-list li[data-case="C-plate"] .s-case-sighting[data-sighting="{plated["sighting_id"]}"]'
                     ).wait_for(timeout=10_000)
        assert "C-plate" in page.locator("#s-case-status").inner_text()
        cases = page.evaluate("fetch('/api/cases').then(r => r.json())")
        assert [c["sightings"] for c in cases if c["name"] == "C-plate"] == [[plated["sighting_id"]]]

        # the export link names the camera and the time
        q = parse_qs(urlsplit(hit.locator(".s-export").get_attribute("href")).query)
        assert q["camera"] == ["checkpoint"] and float(q["start"][0]) <= plated["first_time"] <= float(q["end"][0])

        # open the clip: the URL names the time, the video plays from it
        hit.locator(".s-open").click()
        page.wait_for_url("**/search/clip?**")
        t = float(parse_qs(urlsplit(page.url).query)["t"][0])
        assert t == pytest.approx(plated["first_time"], abs=0.01)
        page.wait_for_function("() => window.__search.clip && document.getElementById('c-video').readyState >= 1",
                               timeout=30_000)
        clip = page.evaluate("window.__search.clip")
        page.wait_for_function(
            f"() => Math.abs(document.getElementById('c-video').currentTime - {t - clip['clip_start']}) < 0.6",
            timeout=10_000)
        assert clip["clip_start"] <= t <= clip["clip_end"]
        assert page.locator("#c-title").inner_text().startswith("Checkpoint · ")
        page.screenshot(path=str(out / "search-clip.png"), full_page=True)
        browser.close()

    # every search was recorded with its query
    with site["engine"].connect() as conn:
        recs = conn.execute(select(actions.c.data).where(actions.c.action == "sightings_search")).all()
    logged = [json.loads(r.data) for r in recs]
    assert any(q.get("plate") == "藏D·T5023" and q.get("plate_match") == "fuzzy" for q in logged)
    assert any(q.get("colour") == top_colour(car, "body") for q in logged)
