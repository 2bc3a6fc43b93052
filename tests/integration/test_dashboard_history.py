"""History database and archiver: migrations on SQLite and a real PostgreSQL, the append-only audit
log, and the archiver as a Redis consumer group that loses nothing across a kill -9."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest
import redis
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.exc import DatabaseError

from history import open_database
from history.archiver import Archiver
from history.consumer import GROUP
from history.db import database_url
from history.schema import actions, alert_messages, alerts, camera_events, metadata
from pipeline.config import load_config
from pipeline.publish import bus
from tests.support.dashboard import (
    alert_msg,
    camera_msg,
    fresh_pg_database,
    postgres_url,  # noqa: F401  (fixture)
    spawn,
    stop,
    write_dashboard_config,
)


def test_migrations_build_exactly_the_schema_module(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == [], f"schema.py and the migrations differ: {diff}"
        heads = set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
        assert heads == {"0007"}  # the newest migration is applied
    open_database(url=engine.url.render_as_string(hide_password=False)).dispose()  # a second start is a no-op


def test_sqlite_default_lives_under_data_dir_in_wal_mode(tmp_path: Path) -> None:
    cfg = load_config(write_dashboard_config(tmp_path))
    assert database_url(cfg) == f"sqlite:///{tmp_path / 'data' / 'history.sqlite'}"
    eng = open_database(cfg)
    with eng.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    assert (tmp_path / "data" / "history.sqlite").exists()


def test_audit_log_refuses_update_and_delete(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(actions).values(time=time.time(), action="login", username="wang"))
    for stmt in (actions.update().values(note="forged"), actions.delete()):
        with pytest.raises(DatabaseError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(stmt)
    with engine.connect() as conn:
        assert conn.execute(select(actions.c.note)).all() == [(None,)]


def _publish(r: redis.Redis[bytes], keys: bus.BusKeys, msg: dict[str, object]) -> str:
    return bus.publish_event(r, keys, msg, maxlen=1_000_000)


def test_archiver_folds_updates_into_one_alert_and_skips_redelivered_duplicates(
        engine: Engine, redis_url: str) -> None:
    r = bus.connect(redis_url)
    keys = bus.BusKeys(f"hist{time.monotonic_ns()}")
    t0 = time.time()
    _publish(r, keys, alert_msg("a1", "new", t0, snapshot="snapshots/lobby/x/a.jpg"))
    _publish(r, keys, alert_msg("a1", "update", t0 + 1, labels=("person", "car"), start=t0))
    _publish(r, keys, alert_msg("a1", "update", t0 + 1, labels=("person", "car"), start=t0))  # same content again
    _publish(r, keys, dict(alert_msg("a2", "new", t0 + 2, camera="square"), id="m-1"))
    _publish(r, keys, dict(alert_msg("a2", "new", t0 + 2, camera="square"), id="m-1"))  # same id again
    _publish(r, keys, alert_msg("a1", "end", t0 + 3, start=t0))
    _publish(r, keys, camera_msg("gate", "offline", t0 + 4))
    _publish(r, keys, camera_msg("gate", "online", t0 + 9))
    arch = Archiver(engine, r, keys, consumer="t")
    arch.ensure_group()
    arch.step()  # own pending list: empty
    while arch.step(block_ms=10):
        pass
    assert (arch.stored, arch.duplicates) == (6, 2)
    with engine.connect() as conn:
        a1 = conn.execute(select(alerts).where(alerts.c.id == "a1")).one()
        assert a1.phase == "end" and a1.end_time == pytest.approx(t0 + 3, abs=0.01)
        assert a1.snapshot_path == "snapshots/lobby/x/a.jpg"  # the end message has no snapshot: the row keeps it
        assert a1.state == "new" and a1.grid_cell_id == "G1" and a1.camera_id == "lobby"
        assert a1.start_time == pytest.approx(t0, abs=0.01)
        n = conn.execute(select(func.count()).select_from(alert_messages).where(alert_messages.c.alert_id == "a1"))
        assert n.scalar() == 3
        assert conn.execute(select(alerts.c.grid_cell_id).where(alerts.c.id == "a2")).scalar() == "G2"
        cams = conn.execute(select(camera_events.c.phase).order_by(camera_events.c.time)).scalars().all()
        assert cams == ["offline", "online"]
    assert r.xpending(keys.events, GROUP)["pending"] == 0


def test_entries_left_pending_by_a_dead_consumer_are_claimed(engine: Engine, redis_url: str) -> None:
    r = bus.connect(redis_url)
    keys = bus.BusKeys(f"claim{time.monotonic_ns()}")
    for i in range(5):
        _publish(r, keys, alert_msg(f"c{i}", "new", 1000.0 + i))
    dead = Archiver(engine, r, keys, consumer="dead")
    dead.ensure_group()
    r.xreadgroup(GROUP, "dead", {keys.events: ">"}, count=3)  # read, then "crashed" before storing
    arch = Archiver(engine, r, keys, consumer="alive", claim_idle_ms=0)
    assert arch.claim() == 3
    arch.pending_first = False
    arch.step(block_ms=10)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(alerts)).scalar() == 5
    assert r.xpending(keys.events, GROUP)["pending"] == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_archiver_killed_mid_stream_and_restarted_loses_nothing(
        backend: str, tmp_path: Path, redis_url: str, request: pytest.FixtureRequest) -> None:
    prefix = f"kill{time.monotonic_ns()}"
    extra = f"bus: {{prefix: {prefix}}}"
    if backend == "postgresql":
        db = fresh_pg_database(request.getfixturevalue("postgres_url"), f"kill{time.monotonic_ns() % 10**9}")
        extra += f"\ndashboard: {{database_url: '{db}'}}"
    cfg_path = write_dashboard_config(tmp_path, extra)
    cfg = load_config(cfg_path)
    r = bus.connect(redis_url)
    keys = bus.BusKeys(prefix)
    log = tmp_path / "archiver.log"
    total = 3000
    published = threading.Event()

    def publisher() -> None:
        t0 = 1_800_000_000.0
        for i in range(total):
            _publish(r, keys, alert_msg(f"k{i // 3}", ("new", "update", "end")[i % 3], t0 + i, start=t0 + i - i % 3))
            if i % 5 == 0:
                time.sleep(0.01)  # about 6 s in all: the kill lands mid-stream
        published.set()

    proc = spawn("history.archiver", "--config", str(cfg_path), "--redis", redis_url, log=log)
    th = threading.Thread(target=publisher)
    th.start()
    engine = open_database(cfg)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until it is archiving, then kill it mid-stream
            with engine.connect() as conn:
                if conn.execute(select(func.count()).select_from(alert_messages)).scalar() > 300:
                    break
            time.sleep(0.05)
        stop(proc, signal.SIGKILL)
        killed_at = r.xlen(keys.events)
        assert killed_at < total, "the publisher finished before the kill: the test proves nothing"
        published.wait(60)
        th.join()
        url_file = tmp_path / "redis-url"  # as `sharpeye run` hands the URL over: a file, not the command line
        url_file.write_text(redis_url + "\n")
        proc = spawn("history.archiver", "--config", str(cfg_path), "--redis-url-file", str(url_file), log=log)
        deadline = time.monotonic() + 60
        n = 0
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                n = conn.execute(select(func.count()).select_from(alert_messages)).scalar()
            if n >= total:
                break
            time.sleep(0.1)
        time.sleep(0.5)
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(alert_messages)).scalar() == total
            assert conn.execute(select(func.count()).select_from(alerts)).scalar() == total // 3
            ended = conn.execute(select(func.count()).select_from(alerts).where(alerts.c.phase == "end")).scalar()
            assert ended == total // 3
            raw = conn.execute(select(alert_messages.c.message).limit(1)).scalar()
            assert json.loads(raw)["schema"] == "sharpeye.event/1"
        assert r.xpending(keys.events, GROUP)["pending"] == 0
        print(f"{backend}: killed after {killed_at} of {total} messages; all {total} archived once after restart")
        assert stop(proc) == 0, log.read_text()[-3000:]
    finally:
        stop(proc)
        published.wait(60)
        engine.dispose()
