"""The handling policy's automatic steps as the dashboard runs them: once a second, beside escalation (the
dashboard holding the escalation turn), incidents whose condition cleared are closed and new ones of an
auto-acknowledged rule acknowledged, as the system (``history.handling``), then pushed to every page."""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import Engine, select

from dashboard.workflow import alert_view
from history import handling
from history.schema import alerts
from pipeline.config import Config

log = logging.getLogger("sharpeye.dashboard")


def auto_steps(engine: Engine, cfg: Config, now: float | None = None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Do the steps due now, each in its own transaction; (alert, audit row) for each, to be pushed."""
    now = time.time() if now is None else now
    with engine.connect() as conn:
        rows = handling.candidates(conn)
    out = []
    for row in rows:
        try:
            with engine.begin() as conn:
                act = handling.auto_step(conn, cfg, row, now)
                if act is not None:
                    out.append((alert_view(conn.execute(select(alerts).where(alerts.c.id == row.id)).one()), act))
        except Exception:  # noqa: BLE001 - one broken row must not stop the others
            log.exception("automatic handling step of alert %s (camera %s) failed", row.id, row.camera_id)
    return out
