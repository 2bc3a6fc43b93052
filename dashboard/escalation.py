"""Escalation (升级): each step of an alert not done within its time.

Four steps, each with its own deadline per severity from ``dashboard.escalation``, counted from the
moment the step before it was done:

- ``acknowledge`` (``not_acknowledged``): still ``new`` longer than ``acknowledge_s`` after it started;
- ``signed_for`` (``not_signed_for``): dispatched and not signed for ``sign_for_s`` after it was sent;
- ``on_scene`` (``not_on_scene``): signed for, the officer not on scene ``on_scene_s`` after signing;
- ``feedback`` (``no_feedback``): on scene, no feedback ``feedback_s`` after arriving.

An escalation raises the alert's ``escalation_level`` for the step it waits for (``escalation_step``)
and is a system row in its timeline; the page then moves it up, colours it, sounds again and marks
it overdue naming the late step, and the supervisor view lists it.  Each step escalates again after
each further period (level 2 after twice the time, ...), so an alert left alone keeps climbing; doing
the step (the workflow) sets the level back to 0 and the next step's clock starts.  Only an
incident's first alert escalates (history/incidents.py): its later occurrences share its workflow, and
its deadlines count by the incident's highest severity (a medium intrusion joined by a critical
crowding alert is due as critical), as the room's sound and order do.
The check runs in the dashboard every second; the guard on the row's state, step and level makes it
safe if two dashboards run it at once.

Several dashboard processes (behind a load balancer, one database): only the one holding the
escalation lease in Redis (:class:`EscalationTurn`) runs the check, so N dashboards do not query
the database N times a second.  The lease is an economy, not the safety: with the bus down every
dashboard checks (an alert must escalate even then) and the row guard still escalates each once.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import time
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import Engine, and_, or_, select, update

from dashboard.workflow import alert_view, waiting_step
from history.audit import record
from history.incidents import is_head
from history.schema import alerts, incidents
from history.shelves import Cover
from pipeline.config import Config

log = logging.getLogger("sharpeye.dashboard")
CHECK_EVERY_S = 1.0
TURN_TTL_S = 3.0  # a dead lease holder's checks move to another dashboard within this (plus one check)

# take the lease when free, extend it when ours: one round trip a check
_TAKE_OR_RENEW = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if v then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _limit(times: Any, severity: str) -> float:
    return float(getattr(times, severity, times.medium))


SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


def severity_of(row: Any) -> str:
    """The severity an incident's deadlines count by: the highest of its occurrences (``incident_severity``,
    joined from ``incidents`` by :func:`escalate_due`), never lower than the row's own."""
    m = row._mapping
    own, inc = str(m["severity"]), m.get("incident_severity")
    return str(inc) if inc is not None and SEVERITY_RANK.get(str(inc), 1) > SEVERITY_RANK.get(own, 1) else own


MAX_LEVEL = 1_000  # an escalation level beyond this is a broken time, not an alert left alone


# step waited for -> (its limits in dashboard.escalation, the column its clock starts from, the reason)
STEPS = {"acknowledge": ("acknowledge_s", "start_time", "not_acknowledged"),
         "signed_for": ("sign_for_s", "dispatched_at", "not_signed_for"),
         "on_scene": ("on_scene_s", "signed_for_at", "not_on_scene"),
         "feedback": ("feedback_s", "on_scene_at", "no_feedback")}


def due(cfg: Config, row: Any, now: float) -> tuple[str, int] | None:
    """(reason, new level) when the alert must be escalated now for the step it waits for, else None.

    The level counts the periods since that step's clock started; a level left from an earlier step
    (``escalation_step`` another one) counts as 0.
    Raises ValueError for a row whose times cannot be counted (not finite): the caller marks it and goes on."""
    m = row._mapping
    step = waiting_step(m)
    if step is None:
        return None
    times, since_col, reason = STEPS[step]
    if m[since_col] is None:
        return None
    limit = _limit(getattr(cfg.dashboard.escalation, times), severity_of(row))
    periods = _periods(now - _finite(m[since_col], since_col), limit)
    level = row.escalation_level if m.get("escalation_step") in (None, step) else 0
    if periods > level:
        return reason, min(periods, MAX_LEVEL)
    return None


def _finite(v: Any, field: str) -> float:
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"{field} is {f!r}")
    return f


def _periods(elapsed: float, limit: float) -> int:
    return int(min(elapsed // limit, MAX_LEVEL)) if math.isfinite(elapsed) else MAX_LEVEL


# rows that failed, by (id, version, level): each is logged and marked once, then skipped until it changes
_failed: set[tuple[str, int, int]] = set()


def _mark_failed(engine: Engine, row: Any, err: Exception, now: float) -> None:
    """Log one broken row once and leave an audit row on its timeline; never raises."""
    key = (row.id, row.version, row.escalation_level)
    if key in _failed:
        return
    _failed.add(key)
    log.error("escalation skipped alert %s (camera %s): %s: %s; the other alerts go on",
              row.id, getattr(row, "camera_id", "?"), type(err).__name__, err)
    try:
        with engine.begin() as conn:
            record(conn, "escalation_failed", alert_id=row.id, grid_cell_id=row.grid_cell_id,
                   data={"error": f"{type(err).__name__}: {str(err)[:200]}"}, at=now)
    except Exception:  # the database itself refuses: the log line above is the mark
        log.exception("could not mark alert %s as failing escalation", row.id)


def _escalate_one(engine: Engine, cfg: Config, row: Any, now: float) -> tuple[dict[str, Any], dict[str, Any]] | None:
    d = due(cfg, row, now)
    if d is None:
        return None
    reason, level = d
    with engine.begin() as conn:  # one transaction per alert: one bad row cannot roll back the others
        # guarded by the state and level seen, not the version: an escalation must never make an
        # operator's click on the same alert fail as stale
        step = waiting_step(row._mapping)
        res = conn.execute(update(alerts).where(alerts.c.id == row.id, alerts.c.state == row.state,
                                                alerts.c.dispatch_step.is_not_distinct_from(row.dispatch_step),
                                                alerts.c.escalation_level == row.escalation_level)
                           .values(escalation_level=level, escalated_at=now, escalation_step=step))
        if res.rowcount != 1:
            return None  # an operator acted at this very moment, or another dashboard escalated it
        act = record(conn, "escalate", alert_id=row.id, grid_cell_id=row.grid_cell_id, from_state=row.state,
                     to_state=row.state, data={"level": level, "reason": reason, "step": step,
                                               "severity": severity_of(row)}, at=now)
        fresh = conn.execute(select(alerts).where(alerts.c.id == row.id)).one()
        return alert_view(fresh), act


def escalate_due(engine: Engine, cfg: Config, now: float | None = None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Escalate what is overdue now; returns (alert, timeline row) for each, to be pushed to the pages.

    Each alert is escalated in its own transaction; a row that fails (a time that is not a number, a
    level the database refuses) is logged once, marked on its timeline and skipped, and the check goes on
    with the others."""
    now = time.time() if now is None else now
    esc = cfg.dashboard.escalation

    def shortest(times: str) -> float:
        t = getattr(esc, times)
        return float(min(t.low, t.medium, t.high, t.critical))
    out = []
    with engine.connect() as conn:
        rows = conn.execute(select(alerts, incidents.c.severity.label("incident_severity"))
                            .outerjoin(incidents, incidents.c.id == alerts.c.id).where(is_head(), or_(
            and_(alerts.c.state == "new", alerts.c.start_time <= now - shortest("acknowledge_s")),
            *[and_(alerts.c.state == "dispatched", alerts.c.dispatch_step == done,
                   alerts.c[STEPS[step][1]] <= now - shortest(STEPS[step][0]))
              for done, step in (("sent", "signed_for"), ("signed_for", "on_scene"), ("on_scene", "feedback"))]
        ))).all()
        cover = Cover.load(conn, now) if rows else None
    for row in rows:
        if cover is not None and cover.of(row.camera_id, row.rule_id, row.start_time) is not None:
            continue  # shelved (history/shelves.py): stored and shown, but it does not escalate
        if (row.id, row.version, row.escalation_level) in _failed:
            continue
        try:
            done = _escalate_one(engine, cfg, row, now)
        except Exception as e:  # noqa: BLE001 - isolate the row, whatever broke it
            _mark_failed(engine, row, e, now)
            continue
        if done is not None:
            out.append(done)
    return out


class EscalationTurn:
    """Whether this dashboard process runs the escalation check now: it holds ``key`` in Redis.

    ``key`` is ``P:escalation:lease`` (docs/events.md), its value the holder's ``<host>:<pid>:<random>``."""

    def __init__(self, key: str, me: str | None = None, ttl_s: float = TURN_TTL_S):
        self.key = key
        self.me = me or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.ttl_ms = max(1, int(ttl_s * 1000))

    async def mine(self, redis: Any) -> bool:
        """True when this process holds (or just took) the lease, or when the bus does not answer."""
        try:
            return bool(await redis.eval(_TAKE_OR_RENEW, 1, self.key, self.me, self.ttl_ms))
        except (RedisError, OSError):
            return True  # the row guard keeps each escalation single; escalating matters more than economy

    async def release(self, redis: Any) -> None:
        """A dashboard stopping hands the check over at once instead of after the TTL."""
        try:
            await redis.eval(_RELEASE, 1, self.key, self.me)
        except (RedisError, OSError):
            pass
