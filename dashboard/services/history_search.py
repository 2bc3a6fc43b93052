"""History: search every stored alert with the room's filters, plus who acknowledged and who closed it how.

Filters: time range, camera, grid cell, rule (by its id or by the name operators read, ``rules.<id>.name``
of the config), kind, object label, state, severity, owner, outcome (classification: genuine, false alarm,
duplicate, test), who acknowledged, who closed, and free text (camera, cell, rule, people, closing
comment, alert id).  The page keeps them in its URL.

Paging is by key (the last row's start time and id), not by offset, so the hundredth page costs
what the first does; the common filters have an index that starts with them and ends with the start
time (``schema.alerts``), so a page is read in index order and stops after ``limit`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select, tuple_

from dashboard.users import User, list_users
from dashboard.workflow import alert_view
from history.schema import CLASSIFICATIONS, OPEN_STATES, STATES, alerts
from pipeline.config import Config

LIST_COLUMNS = [c for c in alerts.c if c.name != "message"]  # the raw message is not needed for a list
MAX_LIMIT = 200
SEVERITIES = ("low", "medium", "high", "critical")
MAX_TEXT = 200
UNNAMED = "kind:"  # rule=kind:<kind>: the rules without a configured name of that kind (read by the kind's name)


@dataclass(frozen=True)
class Query:
    """One history search; empty fields do not filter."""

    start: float | None = None
    end: float | None = None
    camera: str | None = None
    cell: str | None = None
    rule: str | None = None  # a rule id, the name operators read (every camera's rule of that name), kind:<kind>
    kind: str | None = None
    label: str | None = None
    state: str | None = None  # a state, or "open" for every open one
    severity: str | None = None
    owner: str | None = None  # the owner's display name, or "none" for nobody's
    classification: str | None = None  # the outcome it was closed with
    acknowledged_by: str | None = None  # display name of who acknowledged it
    closed_by: str | None = None  # display name of who closed it
    q: str | None = None  # free text
    before: str | None = None  # the cursor of the previous page
    limit: int = 50


def rule_names(cfg: Config, cameras: list[str] | None = None) -> dict[tuple[str, str], str | None]:
    """(camera id, rule id) -> the rule's configured name (None: operators read its kind's name)."""
    out: dict[tuple[str, str], str | None] = {}
    for cid, cam in cfg.cameras.items():
        if cameras is not None and cid not in cameras:
            continue
        for rid, rule in cam.effective_rules().items():
            out[(cid, rid)] = rule.name
    return out


def _visible(cfg: Config, user: User) -> list[str]:
    return [cid for cid, cam in cfg.cameras.items() if user.sees_cell(cam.grid_cell)]


def _kinds(cfg: Config) -> dict[tuple[str, str], str]:
    return {(cid, rid): str(getattr(rule, "kind", "presence"))
            for cid, cam in cfg.cameras.items() for rid, rule in cam.effective_rules().items()}


def _rule_clause(cfg: Config | None, rule: str) -> Any:
    """Rows of the rule with this id, or of every camera's rule whose configured name it is, or (``kind:<kind>``)
    of every rule without a name of that kind: operators read those by the kind's name."""
    names = rule_names(cfg) if cfg is not None else {}
    if rule.startswith(UNNAMED) and cfg is not None:
        kinds = _kinds(cfg)
        pairs = [k for k, name in names.items() if name is None and kinds[k] == rule[len(UNNAMED):]]
    else:
        pairs = [k for k, name in names.items() if name == rule]
    by_id = alerts.c.rule_id == rule
    if not pairs:
        return by_id  # the rule_id index
    by_name = tuple_(alerts.c.camera_id, alerts.c.rule_id).in_(pairs)
    return or_(by_id, by_name) if any(rid == rule for _, rid in names) else by_name


def _like(text: str) -> str:
    return "%" + text.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search(conn: Any, user: User, query: Query, cfg: Config | None = None) -> dict[str, Any]:
    """One page of alerts, newest first, and the cursor of the next page (None at the end).

    Raises ValueError naming the field for a value it cannot search by (an unknown state, severity or
    outcome, a broken cursor)."""
    q = select(*LIST_COLUMNS)
    if not user.all_cells():
        q = q.where(alerts.c.grid_cell_id.in_(user.cells))
    if query.start is not None:
        q = q.where(alerts.c.start_time >= query.start)
    if query.end is not None:
        q = q.where(alerts.c.start_time < query.end)
    for col, value in ((alerts.c.camera_id, query.camera), (alerts.c.grid_cell_id, query.cell),
                       (alerts.c.kind, query.kind), (alerts.c.acknowledged_by, query.acknowledged_by),
                       (alerts.c.closed_by, query.closed_by)):
        if value:
            q = q.where(col == value)
    if query.rule:
        q = q.where(_rule_clause(cfg, query.rule))
    if query.state == "open":
        q = q.where(alerts.c.state.in_(OPEN_STATES))
    elif query.state:
        if query.state not in STATES:
            raise ValueError(f"state: unknown state {query.state!r}")
        q = q.where(alerts.c.state == query.state)
    if query.severity:
        if query.severity not in SEVERITIES:
            raise ValueError(f"severity: unknown severity {query.severity!r}")
        q = q.where(alerts.c.severity == query.severity)
    if query.classification:
        if query.classification not in CLASSIFICATIONS:
            raise ValueError(f"classification: unknown outcome {query.classification!r}")
        q = q.where(alerts.c.classification == query.classification)
    if query.owner == "none":
        q = q.where(alerts.c.owner_name.is_(None))
    elif query.owner:
        q = q.where(alerts.c.owner_name == query.owner)
    if query.label:
        q = q.where(alerts.c.labels.like(f"%,{query.label.replace('%', '').replace('_', '')},%"))
    text = (query.q or "").strip()
    if len(text) > MAX_TEXT:
        raise ValueError(f"q: at most {MAX_TEXT} characters")
    if text:
        pattern = _like(text)
        cols = (alerts.c.id, alerts.c.camera_id, alerts.c.camera_name, alerts.c.grid_cell_name, alerts.c.rule_id,
                alerts.c.kind, alerts.c.labels, alerts.c.owner_name, alerts.c.acknowledged_by, alerts.c.closed_by,
                alerts.c.close_comment)
        clauses = [func.lower(c).like(pattern, escape="\\") for c in cols]
        if cfg is not None:  # the rule names operators read are in the config, not the row
            named = [k for k, name in rule_names(cfg).items() if name and text.casefold() in name.casefold()]
            if named:
                clauses.append(tuple_(alerts.c.camera_id, alerts.c.rule_id).in_(named))
        q = q.where(or_(*clauses))
    if query.before:
        try:
            bt_s, bid = query.before.split("|", 1)
            bt = float(bt_s)
        except ValueError:
            raise ValueError("before: bad cursor") from None
        q = q.where(tuple_(alerts.c.start_time, alerts.c.id) < tuple_(bt, bid))  # a range on the indexes
    limit = max(1, min(query.limit, MAX_LIMIT))
    rows = conn.execute(q.order_by(alerts.c.start_time.desc(), alerts.c.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = f"{rows[-1].start_time!r}|{rows[-1].id}" if more and rows else None
    names = rule_names(cfg) if cfg is not None else {}
    views = []
    for r in rows:
        v = alert_view(r)
        v["rule"]["name"] = v["rule"]["name"] or names.get((r.camera_id, r.rule_id))
        views.append(v)
    return {"alerts": views, "next": nxt}


def choices(cfg: Config, engine: Any, user: User) -> dict[str, Any]:
    """What the history page's menus offer: the rules of the user's cameras by the name operators read
    (one entry per name, with the rule ids it stands for; the rules without a name one entry per kind,
    ``kind:<kind>``, which the page shows by the kind's name), and
    the people who may have acknowledged or closed an alert of the user's cells."""
    by_value: dict[str, dict[str, Any]] = {}
    cams = _visible(cfg, user)
    kinds = _kinds(cfg)
    for (cid, rid), name in sorted(rule_names(cfg, cams).items()):
        kind = kinds[(cid, rid)]
        value = name or f"{UNNAMED}{kind}"
        item = by_value.setdefault(value, {"value": value, "name": name, "kind": kind, "ids": [], "cameras": []})
        if rid not in item["ids"]:
            item["ids"].append(rid)
        item["cameras"].append(cid)
    people = sorted({u.display_name for u in list_users(engine)
                     if u.all_cells() or user.all_cells() or set(u.cells) & set(user.cells)})
    for item in by_value.values():
        item["ids"].sort()
    return {"rules": sorted(by_value.values(), key=lambda r: (r["name"] is None, r["value"])), "people": people,
            "classifications": list(CLASSIFICATIONS), "severities": list(SEVERITIES)}
