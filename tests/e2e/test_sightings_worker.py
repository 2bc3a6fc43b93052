"""Sightings on the real worker: the person clip as a file source, the real detector and tracker, the
sightings stage on the detect thread and its loop writing crops and sending records on the bus; the
archiver stores them and a search finds them."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis as redis_lib

from history import open_database
from history.sightings import SightingArchiver, SightingQuery, search
from pipeline.analyse.sightings import STREAM
from pipeline.config import load_config
from tests.support.config import write_config
from tests.support.media import reencode

# little CPU, timings bounded by seconds: scripts/test runs it beside the timed e2e tests
pytestmark = pytest.mark.beside

LENGTH = 24.0


@pytest.fixture(scope="module")
def people_clip(tmp_path_factory: pytest.TempPathFactory, person_clip: Path) -> Path:
    path = tmp_path_factory.mktemp("sightings") / "people.mp4"
    return reencode(person_clip, path, LENGTH, 10, (640, 360), tune="zerolatency")


def test_worker_sends_sightings_the_archiver_stores_them(tmp_path: Path, people_clip: Path, redis_url: str) -> None:
    from pipeline.runtime.worker import Worker

    prefix = f"sight-{uuid.uuid4().hex[:8]}"
    path = write_config(tmp_path, {"lobby": {"source": people_clip, "detect_fps": 5, "loop": False,
                                             "sightings": {"every_s": 5}}},
                        data_dir="data", bus={"prefix": prefix}, recordings={"enabled": False})
    cfg = load_config(path)
    r = redis_lib.Redis.from_url(redis_url)
    worker = Worker(cfg, redis_url)
    worker.start()
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < LENGTH + 20 and r.xlen(f"{prefix}:{STREAM}") < 3:
            time.sleep(0.5)
        rt = worker.cameras["lobby"]
        detect_s = rt.stage_s["detect"] + rt.stage_s["track"]
        stage_s = rt.stage_s["sightings"]
    finally:
        worker.stop()
    entries = r.xrange(f"{prefix}:{STREAM}")
    assert len(entries) >= 3, entries
    msgs = [json.loads(f[b"json"]) for _, f in entries]
    assert {m["label"] for m in msgs} == {"person"}
    assert all(m["grid_cell"] == cfg.cameras["lobby"].grid_cell for m in msgs)
    for m in msgs:
        assert m["crop_path"] and (cfg.data_path() / "sightings" / m["crop_path"]).is_file()
        assert m["colours"]["upper"] and m["colours"]["lower"]
    print(f"\nworker: sightings stage {1000 * stage_s:.1f} ms CPU beside detect+track {1000 * detect_s:.0f} ms "
          f"({100 * stage_s / detect_s:.1f} %), {len(msgs)} records")
    assert stage_s < 0.1 * detect_s

    eng = open_database(url=f"sqlite:///{tmp_path / 'h.sqlite'}")
    arch = SightingArchiver(eng, r, prefix, consumer="test")
    stop = threading.Event()
    th = threading.Thread(target=arch.run, args=(stop,), daemon=True)
    th.start()
    try:
        deadline = time.monotonic() + 20
        while arch.stored + arch.duplicates < len(entries) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        th.join(5)
    rows = search(eng, SightingQuery(labels=("person",), cameras=("lobby",)))
    assert len(rows) == len({m["sighting_id"] for m in msgs})
    assert all(r_["crop_path"] for r_ in rows)
    eng.dispose()
