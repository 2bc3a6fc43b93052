"""Escalation (升级): alerts nobody acknowledged, and dispatches nobody signed for, within their time.

Two stages, each with a time per severity from ``dashboard.escalation``:

- ``not_acknowledged``: still ``new`` longer than ``acknowledge_s`` after it started;
- ``not_signed_for``: dispatched (step ``sent``) and not signed for ``sign_for_s`` after it was sent.

An escalation raises the alert's ``escalation_level`` and is a system row in its timeline; the
page then moves it up, colours it, sounds again and marks it overdue, and the supervisor view
lists it.  Each stage escalates again after each further period (level 2 after twice the time, ...),
so an alert left alone keeps climbing.  The check runs in the dashboard every second; the
guard on the row's state and level makes it safe if two dashboards run it at once.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, and_, or_, select, update

from dashboard.audit import record
from dashboard.history.schema import alerts
from dashboard.workflow import alert_view
from pipeline.config import Config

CHECK_EVERY_S = 1.0


def _limit(times: Any, severity: str) -> float:
    return float(getattr(times, severity, times.medium))


def due(cfg: Config, row: Any, now: float) -> tuple[str, int] | None:
    """(reason, new level) when the alert must be escalated now, else None."""
    esc = cfg.dashboard.escalation
    if row.state == "new":
        limit = _limit(esc.acknowledge_s, row.severity)
        periods = int((now - row.start_time) // limit)
        if periods > row.escalation_level:
            return "not_acknowledged", periods
    elif row.state == "dispatched" and row.dispatch_step == "sent" and row.dispatched_at is not None:
        limit = _limit(esc.sign_for_s, row.severity)
        periods = int((now - row.dispatched_at) // limit)
        since_dispatch = 0 if row.escalated_at is None or row.escalated_at < row.dispatched_at else \
            int((row.escalated_at - row.dispatched_at) // limit)
        if periods > since_dispatch:
            return "not_signed_for", row.escalation_level + periods - since_dispatch
    return None


def escalate_due(engine: Engine, cfg: Config, now: float | None = None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Escalate what is overdue now; returns (alert, timeline row) for each, to be pushed to the pages."""
    now = time.time() if now is None else now
    esc = cfg.dashboard.escalation
    shortest_ack = min(esc.acknowledge_s.low, esc.acknowledge_s.medium, esc.acknowledge_s.high,
                       esc.acknowledge_s.critical)
    shortest_sign = min(esc.sign_for_s.low, esc.sign_for_s.medium, esc.sign_for_s.high, esc.sign_for_s.critical)
    out = []
    with engine.begin() as conn:
        rows = conn.execute(select(alerts).where(or_(
            and_(alerts.c.state == "new", alerts.c.start_time <= now - shortest_ack),
            and_(alerts.c.state == "dispatched", alerts.c.dispatch_step == "sent",
                 alerts.c.dispatched_at <= now - shortest_sign)))).all()
        for row in rows:
            d = due(cfg, row, now)
            if d is None:
                continue
            reason, level = d
            # guarded by the state and level seen, not the version: an escalation must never make an
            # operator's click on the same alert fail as stale
            res = conn.execute(update(alerts).where(alerts.c.id == row.id, alerts.c.state == row.state,
                                                    alerts.c.escalation_level == row.escalation_level)
                               .values(escalation_level=level, escalated_at=now))
            if res.rowcount != 1:
                continue  # an operator acted at this very moment, or another dashboard escalated it
            act = record(conn, "escalate", alert_id=row.id, grid_cell_id=row.grid_cell_id, from_state=row.state,
                         to_state=row.state, data={"level": level, "reason": reason}, at=now)
            fresh = conn.execute(select(alerts).where(alerts.c.id == row.id)).one()
            out.append((alert_view(fresh), act))
    return out
