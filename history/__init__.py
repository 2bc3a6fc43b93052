"""History database: schema (``schema``), migrations (``migrations/``) and connections (``db``)."""

from history.db import database_url, migrate, open_database

__all__ = ["database_url", "migrate", "open_database"]
