"""Fixtures of the integration tier: the history database on SQLite and PostgreSQL (``engine``)."""

from tests.support.dashboard import engine, postgres_url  # noqa: F401  (fixtures)
