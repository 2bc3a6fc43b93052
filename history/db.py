"""Connecting to the history database and bringing its schema up to date.

SQLite under the data directory by default (WAL, so the archiver writes while the
dashboard reads), PostgreSQL when ``dashboard.database_url`` names one.  ``migrate`` runs
the Alembic migrations shipped in this package; every process that opens the database
calls it, under a lock (a file lock for SQLite, an advisory lock for PostgreSQL) so two
processes starting together do not both create the tables.
"""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path
from typing import Any

logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines at every start tell an operator nothing
from sqlalchemy import Connection, Engine, Table, create_engine, event, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from pipeline.config import Config  # noqa: E402

log = logging.getLogger("sharpeye.history")
MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_NAME = "history.sqlite"
PG_LOCK_KEY = 0x5E4E7E  # advisory lock id for migrations


def database_url(cfg: Config) -> str:
    """The configured URL, else SQLite at ``<data_dir>/history.sqlite``."""
    if cfg.dashboard.database_url:
        return cfg.dashboard.database_url
    return f"sqlite:///{cfg.data_path() / SQLITE_NAME}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # safe with WAL: a crash loses at most the last commits, never the file
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def create(url: str) -> Engine:
    """An engine with the settings each backend needs (no migrations)."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        eng = create_engine(u, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(eng, "connect", _sqlite_pragmas)
        return eng
    return create_engine(u, pool_pre_ping=True, pool_size=5, max_overflow=10)


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest migration (idempotent, safe from several processes)."""
    from alembic import command  # here, not at the top: commands that never open the database start faster
    from alembic.config import Config as AlembicConfig

    acfg = AlembicConfig()
    acfg.set_main_option("script_location", str(MIGRATIONS))
    if engine.dialect.name == "sqlite":
        db = engine.url.database
        lock_path = Path(f"{db}.migrate.lock") if db and db != ":memory:" else None
        lock = open(lock_path, "w") if lock_path else None
        try:
            if lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
            with engine.begin() as conn:
                acfg.attributes["connection"] = conn
                command.upgrade(acfg, "heads")  # parallel branches from one base are fine
        finally:
            if lock:
                fcntl.flock(lock, fcntl.LOCK_UN)
                lock.close()
        return
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})
        acfg.attributes["connection"] = conn
        command.upgrade(acfg, "heads")  # parallel branches from one base are fine


def open_database(cfg: Config | None = None, url: str | None = None, upgrade: bool = True) -> Engine:
    """The engine for the config's (or the given) database, migrated to the current schema."""
    if url is None:
        assert cfg is not None, "give a config or a URL"
        url = database_url(cfg)
    eng = create(url)
    if upgrade:
        migrate(eng)
    log.debug("history database %s", eng.url.render_as_string(hide_password=True))
    return eng


def insert_ignore(conn: Connection, table: Table, values: dict[str, Any], key: str = "dedupe_key") -> bool:
    """INSERT unless a row with the same ``key`` exists; True when a row was added.

    Redelivered bus messages (after a crash, before the XACK) land here twice: the second is a no-op.
    """
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        stmt = pg_insert(table).values(**values).on_conflict_do_nothing(index_elements=[key])
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert
        stmt = sqlite_insert(table).values(**values).on_conflict_do_nothing(index_elements=[key])
    return conn.execute(stmt.returning(text("1"))).first() is not None  # rowcount is unreliable here
