"""Sightings in the history database (SQLite and a real PostgreSQL): upsert, every search, a plate's
path across cameras, retention with the crops on disk."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, func, select

from history import open_database
from history.schema import sightings
from history.sightings import (
    SightingQuery,
    colour_name,
    plate_distance,
    plate_key,
    plate_path,
    purge,
    row_of,
    save_crop,
    search,
    store,
)
from pipeline.analyse.colours import ColourShare
from pipeline.analyse.plates import PlateRead
from pipeline.analyse.sightings import Sighting
from tests.support.dashboard import fresh_pg_database, postgres_url  # noqa: F401  (fixture)

T0 = 1_780_000_000.0


def sighting(n: int, camera: str, label: str, t: float, plate: str | None = None, upper: str | None = None,
             lower: str | None = None, body: str | None = None, final: bool = True, dur: float = 10.0) -> Sighting:
    colours = {}
    if label == "person":
        colours = {"upper": [ColourShare(upper or "grey", 0.7)], "lower": [ColourShare(lower or "black", 0.8)]}
    else:
        colours = {"body": [ColourShare(body or "white", 0.6)]}
    read = PlateRead(plate, 0.93, "blue") if plate else None
    crop = np.full((40, 30, 3), 128, np.uint8)
    return Sighting(f"{camera}:{int(t * 1000)}:{n}", camera, n, label, t, t + dur, t + 1, (1, 2, 31, 42),
                    (640, 360), crop, colours, "left_to_right", read, final, 20)


@pytest.fixture
def filled(engine: Engine) -> Engine:
    rows = [
        sighting(1, "gate", "car", T0, plate="藏D·T5022", body="orange"),
        sighting(2, "street", "car", T0 + 300, plate="藏D·T5022", body="orange"),
        sighting(3, "carpark", "car", T0 + 900, plate="冀D·T5022", body="orange"),  # province misread
        sighting(4, "carpark", "car", T0 + 950, plate="京A·12345", body="white"),
        sighting(5, "street", "truck", T0 + 1000, plate="藏D·T5023", body="blue"),
        sighting(6, "gate", "person", T0 + 100, upper="red", lower="blue"),
        sighting(7, "street", "person", T0 + 200, upper="white", lower="red"),
        sighting(8, "carpark", "person", T0 + 5000, upper="red", lower="black"),
        sighting(9, "gate", "bicycle", T0 + 50, body="red"),
    ]
    cells = {"gate": "G-01", "street": "G-01", "carpark": "G-02"}
    with engine.begin() as conn:
        for s in rows:
            assert store(conn, row_of(s, cells[s.camera], f"{s.camera}/x/{s.track_id}.jpg")) is True
    return engine


def ids(rows: list[dict]) -> list[int]:
    return [r["track_id"] for r in rows]


def test_a_track_written_again_updates_its_row(engine: Engine) -> None:
    first = sighting(1, "gate", "car", T0, final=False, dur=60)
    with engine.begin() as conn:
        assert store(conn, row_of(first, "G-01", "gate/a.jpg"))
        later = sighting(1, "gate", "car", T0, plate="藏D·T5022", final=True, dur=95)
        assert store(conn, row_of(later, "G-01", None)) is False
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sightings)).scalar() == 1
        row = conn.execute(select(sightings)).mappings().one()
    assert row["final"] and row["last_time"] == T0 + 95 and row["plate"] == "藏DT5022"
    assert row["crop_path"] == "gate/a.jpg"  # an update without a new crop keeps the old one
    assert row["plate_front"] == "藏DT5" and row["plate_back"] == "022"


def test_plate_exact_prefix_fuzzy_and_unknown_character(filled: Engine) -> None:
    assert ids(search(filled, SightingQuery(plate="藏D·T5022"))) == [2, 1]
    assert ids(search(filled, SightingQuery(plate="藏dt5022"))) == [2, 1]
    assert ids(search(filled, SightingQuery(plate="藏D·T50", plate_match="prefix"))) == [5, 2, 1]
    assert ids(search(filled, SightingQuery(plate="京", plate_match="prefix"))) == [4]
    fuzzy = search(filled, SightingQuery(plate="藏D·T5022", plate_match="fuzzy"))
    assert ids(fuzzy) == [5, 3, 2, 1]  # 藏D·T5023 and 冀D·T5022 are one character away
    assert {r["track_id"]: r["plate_distance"] for r in fuzzy} == {5: 1, 3: 1, 2: 0, 1: 0}
    assert ids(search(filled, SightingQuery(plate="?D·T5022"))) == [3, 2, 1]
    assert ids(search(filled, SightingQuery(plate="藏D·T502?"))) == [5, 2, 1]
    assert ids(search(filled, SightingQuery(plate="?D·T502?", plate_match="fuzzy"))) == [5, 3, 2, 1]
    assert search(filled, SightingQuery(plate="粤B·00000", plate_match="fuzzy")) == []
    assert search(filled, SightingQuery(plate="藏D·T5022"))[0]["plate_text"] == "藏D·T5022"


def test_label_colour_part_camera_cell_and_time(filled: Engine) -> None:
    assert ids(search(filled, SightingQuery(labels=("person",), colour="红"))) == [8, 7, 6]
    assert ids(search(filled, SightingQuery(labels=("person",), colour="red", part="upper"))) == [8, 6]
    assert ids(search(filled, SightingQuery(colour="红色", part="lower"))) == [7]
    assert ids(search(filled, SightingQuery(colour="red"))) == [8, 7, 6, 9]
    assert ids(search(filled, SightingQuery(labels=("car", "truck"), colour="orange"))) == [3, 2, 1]
    assert ids(search(filled, SightingQuery(cameras=("gate",)))) == [6, 9, 1]
    assert ids(search(filled, SightingQuery(cells=("G-02",)))) == [8, 4, 3]
    # a range touching a sighting finds it: 6 runs T0+100..T0+110
    assert ids(search(filled, SightingQuery(start=T0 + 105, end=T0 + 250))) == [7, 6]
    assert ids(search(filled, SightingQuery(labels=("car",), limit=2))) == [4, 3]
    page1 = search(filled, SightingQuery(limit=4))
    page2 = search(filled, SightingQuery(limit=4, before=(page1[-1]["first_time"], page1[-1]["id"])))
    assert ids(page1) + ids(page2) == [8, 5, 4, 3, 2, 7, 6, 9]
    row = search(filled, SightingQuery(labels=("person",), colour="red", part="upper", limit=1))[0]
    assert row["colours"]["upper"][0] == {"name": "red", "zh": "红", "share": 0.7}
    assert row["box"] == [1, 2, 31, 42] and row["crop_path"] == "carpark/x/8.jpg"


def test_plate_path_across_cameras_in_time_order(filled: Engine) -> None:
    path = plate_path(filled, "藏D·T5022")
    assert [(r["camera_id"], r["first_time"] - T0) for r in path] == [("gate", 0), ("street", 300)]
    fuzzy = plate_path(filled, "藏D·T5022", fuzzy=True)
    assert [r["camera_id"] for r in fuzzy] == ["gate", "street", "carpark", "street"]


def test_retention_per_camera_deletes_rows_and_crops(filled: Engine, tmp_path: Path) -> None:
    root = tmp_path / "sightings"
    s = sighting(20, "gate", "car", T0 - 10 * 86400, plate="藏D·T5022")
    rel = save_crop(root, s)
    assert (root / rel).is_file() and rel.startswith("gate/")
    with filled.begin() as conn:
        store(conn, row_of(s, "G-01", rel))
    # carpark keeps 0.01 days, the others 3: at T0 + 1 day only carpark's (ended ~T0+960..5010) go, and the old one
    n = purge(filled, {"carpark": 0.01}, 3.0, now=T0 + 86400, crops_root=root)
    assert n == 4
    assert not (root / rel).exists()
    left = search(filled, SightingQuery(limit=100))
    assert sorted(ids(left)) == [1, 2, 5, 6, 7, 9]


@pytest.mark.parametrize(("q", "msg"), [
    ({"limit": 0}, "limit"), ({"plate_match": "regex"}, "plate_match"), ({"part": "hat"}, "part"),
    ({"start": 10.0, "end": 5.0}, "before start"), ({"plate": " · "}, "empty"),
])
def test_bad_queries_say_what_is_wrong(q: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        SightingQuery(**q)


def test_helpers() -> None:
    assert plate_key("藏d·t5022") == "藏DT5022"
    assert colour_name("灰") == "grey" and colour_name("Gray") == "grey"
    with pytest.raises(ValueError, match="palette"):
        colour_name("pink")
    assert plate_distance("藏DT5022", "?DT5022") == 0 and plate_distance("藏DT5022", "藏DT502") == float("inf")
    assert SightingQuery(plate="x", colour="red").describe() == {"plate": "x", "plate_match": "exact",
                                                                 "colour": "red", "part": "any", "limit": 100}


def test_archiver_stores_sightings_from_the_bus(redis_url: str, tmp_path: Path) -> None:
    """Workers send each sighting on {prefix}:sightings; the archiver stores it once, updates it when
    the track is written again, skips a malformed entry and acknowledges everything."""
    import json
    import threading

    import redis as redis_lib

    from history.sightings import SightingArchiver
    from pipeline.analyse.sightings import STREAM

    eng = open_database(url=f"sqlite:///{tmp_path / 'h.sqlite'}")
    r = redis_lib.Redis.from_url(redis_url)
    prefix = f"t{abs(hash(str(tmp_path))) % 10**9}"
    stream = f"{prefix}:{STREAM}"
    first = sighting(1, "gate", "car", T0, plate="藏D·T5022", final=False, dur=60)
    final = sighting(1, "gate", "car", T0, plate="藏D·T5022", final=True, dur=80)
    person = sighting(2, "gate", "person", T0 + 5, upper="red", lower="blue")
    for s in (first, person):
        r.xadd(stream, {"json": json.dumps({**s.to_dict(), "grid_cell": "G-01", "crop_path": s.crop_name()})})
    r.xadd(stream, {"json": "{not json"})
    old = sighting(9, "gate", "car", time.time() - 5 * 86400)  # past the 3 days kept: expired by the archiver
    with eng.begin() as conn:
        store(conn, row_of(old, "G-01", None))
    arch = SightingArchiver(eng, r, prefix, consumer="test", default_days=3.0)
    arch.next_purge = 0.0
    stop = threading.Event()
    th = threading.Thread(target=arch.run, args=(stop,), daemon=True)
    th.start()
    try:
        deadline = time.monotonic() + 20
        while arch.stored < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        r.xadd(stream, {"json": json.dumps({**final.to_dict(), "grid_cell": "G-01", "crop_path": None})})
        while arch.duplicates < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        th.join(5)
    assert arch.stored == 2 and arch.duplicates == 1 and arch.malformed == 1 and arch.purged == 1
    rows = search(eng, SightingQuery(plate="藏D·T5022"))
    assert len(rows) == 1 and rows[0]["final"] and rows[0]["last_time"] == T0 + 80
    assert rows[0]["crop_path"] == first.crop_name() and rows[0]["grid_cell_id"] == "G-01"
    assert ids(search(eng, SightingQuery(labels=("person",), colour="红"))) == [2]
    assert r.xpending(stream, "archiver")["pending"] == 0
    eng.dispose()


class _User:
    def __init__(self, cells: set[str] | None) -> None:
        self.cells = cells
        self.id = 7
        self.username = "wang"
        self.display_name = "Wang"

    def sees_cell(self, cell: str | None) -> bool:
        return self.cells is None or cell in self.cells

    def all_cells(self) -> bool:
        return self.cells is None


def test_a_users_search_sees_only_their_cells_and_is_audited(filled: Engine) -> None:
    from types import SimpleNamespace

    from history.schema import actions
    from history.sightings import scoped_search

    cfg = SimpleNamespace(grid_cells={"G-01": {}, "G-02": {}, "G-03": {}})
    with filled.begin() as conn:
        mine = scoped_search(conn, cfg, _User({"G-02"}), SightingQuery(plate="藏D·T5022", plate_match="fuzzy"),
                             remote="10.0.0.5")
        asked_other = scoped_search(conn, cfg, _User({"G-02"}), SightingQuery(cells=("G-01",)))
        chief = scoped_search(conn, cfg, _User(None), SightingQuery(plate="藏D·T5022", plate_match="fuzzy"))
    assert ids(mine) == [3] and asked_other == [] and ids(chief) == [5, 3, 2, 1]
    with filled.connect() as conn:
        logged = conn.execute(select(actions).where(actions.c.action == "sightings_search")
                              .order_by(actions.c.id)).mappings().all()
    assert len(logged) == 3 and logged[0]["username"] == "wang" and logged[0]["remote"] == "10.0.0.5"
    data = json.loads(logged[0]["data"])
    assert data["plate"] == "藏D·T5022" and data["plate_match"] == "fuzzy" and data["cells"] == ["G-02"]
    assert data["results"] == 1
