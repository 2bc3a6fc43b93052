"""Reports and the supervisor view: what the room did and how fast.

- :func:`report`: per grid cell over a time range (a shift, a day, a quarter): alerts and incidents (the
  room's items: alerts of one camera and one zone grouped, history/incidents.py) by kind, the outcomes
  incidents were closed with (genuine, false alarm, duplicate, test), time to acknowledge, to sign for,
  to arrive and to resolve (median and 90th percentile, per incident: its later occurrences share its
  workflow, so counting them would count one acknowledgement many times), cells ranked by signing-for
  and feedback speed, and the false-alarm share by camera and by rule (what an engineer tunes next),
  rules by the name operators read.  :func:`report_csv` is the per-cell table as CSV.
- :func:`supervisor`: open incidents (alerts beside them) by state and age and per cell, the overdue ones, the
  load per operator.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from dashboard.context import Dashboard
from dashboard.services.history_search import rule_names
from dashboard.users import User
from history.schema import CLASSIFICATIONS, OPEN_STATES, alerts

DURATIONS = {  # name -> (end column, start column)
    "acknowledge": ("acknowledged_at", "start_time"),
    "sign_for": ("signed_for_at", "dispatched_at"),
    "arrive": ("on_scene_at", "dispatched_at"),
    "feedback": ("feedback_at", "dispatched_at"),
    "resolve": ("closed_at", "start_time"),
}
AGE_BUCKETS = ((300, "lt5m"), (900, "5to15m"), (3600, "15to60m"), (math.inf, "gt60m"))
MAX_RANGE_S = 400 * 86400


class ReportError(ValueError):
    """A report that cannot be made: ``status`` and ``code`` for the answer, the message names the field."""

    def __init__(self, status: int, code: str, message: str = ""):
        super().__init__(message or code)
        self.status, self.code = status, code


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def _stats(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "median_s": percentile(values, 50), "p90_s": percentile(values, 90)}


def _cells_clause(user: User) -> Any:
    return True if user.all_cells() else alerts.c.grid_cell_id.in_(user.cells)


def _is_head(r: Any) -> bool:
    """An incident (its first alert, whose row carries the workflow), not a later occurrence."""
    inc = getattr(r, "incident_id", None)
    return inc is None or inc == r.id


def build_report(rows: Iterable[Any], cell_names: dict[str, str],
                 names: dict[tuple[str, str], str | None] | None = None) -> dict[str, Any]:
    """Aggregate alert rows (with the columns of ``alerts``) into the report; ``names`` maps (camera id,
    rule id) to the rule's configured name (none: operators read the kind's name)."""
    names = names or {}
    per_cell: dict[str, dict[str, Any]] = defaultdict(lambda: {
        "total": 0, "incidents": 0, "by_kind": Counter(), "incidents_by_kind": Counter(), "closed": 0,
        "false_alarms": 0, "by_outcome": Counter(), "incidents_closed": 0, "incident_outcomes": Counter(),
        **{k: [] for k in DURATIONS}})
    by_camera: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_rule: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    rules: dict[str, dict[str, Any]] = {}
    camera_names: dict[str, str] = {}
    for r in rows:
        c = per_cell[r.grid_cell_id]
        cell_names.setdefault(r.grid_cell_id, r.grid_cell_name)
        camera_names[r.camera_id] = r.camera_name
        head = _is_head(r)
        c["total"] += 1
        c["by_kind"][r.kind] += 1
        rkey = f"{r.camera_id}/{r.rule_id}"
        rule = rules.setdefault(rkey, {"camera": r.camera_id, "rule": r.rule_id, "kind": r.kind,
                                       "rule_name": names.get((r.camera_id, r.rule_id)), "alerts": 0,
                                       "incidents": 0, "incident_outcomes": Counter()})
        rule["alerts"] += 1
        if head:
            c["incidents"] += 1
            c["incidents_by_kind"][r.kind] += 1
            rule["incidents"] += 1
            for name, (end, start) in DURATIONS.items():
                e, s = getattr(r, end), getattr(r, start)
                if e is not None and s is not None:
                    c[name].append(max(0.0, e - s))
        if r.classification is not None:
            c["closed"] += 1
            c["by_outcome"][r.classification] += 1  # genuine, false_alarm, duplicate, test
            if head:
                c["incidents_closed"] += 1
                c["incident_outcomes"][r.classification] += 1
                rule["incident_outcomes"][r.classification] += 1
            fa = r.classification == "false_alarm"
            c["false_alarms"] += fa
            for table, key in ((by_camera, r.camera_id), (by_rule, rkey)):
                table[key][0] += 1
                table[key][1] += fa
    cells = []
    for cid, c in sorted(per_cell.items()):
        cells.append({"cell": cid, "name": cell_names.get(cid, cid), "total": c["total"], "incidents": c["incidents"],
                      "by_kind": dict(c["by_kind"]), "incidents_by_kind": dict(c["incidents_by_kind"]),
                      "closed": c["closed"], "false_alarms": c["false_alarms"],
                      "false_alarm_share": c["false_alarms"] / c["closed"] if c["closed"] else None,
                      "by_outcome": dict(c["by_outcome"]), "incidents_closed": c["incidents_closed"],
                      "incident_outcomes": _outcomes(c["incident_outcomes"]),
                      **{k: _stats(c[k]) for k in DURATIONS}})

    def rank(key: str) -> list[dict[str, Any]]:
        timed = [c for c in cells if c[key]["median_s"] is not None]
        return [{"cell": c["cell"], "name": c["name"], "median_s": c[key]["median_s"], "p90_s": c[key]["p90_s"]}
                for c in sorted(timed, key=lambda c: c[key]["median_s"])]

    def shares(table: dict[str, list[int]], label: str) -> list[dict[str, Any]]:
        out = []
        for key, (closed, fa) in table.items():
            item: dict[str, Any] = {"closed": closed, "false_alarms": fa, "share": fa / closed}
            if label == "camera":
                item.update(camera=key, name=camera_names.get(key, key))
            else:
                info = rules[key]
                item.update(camera=info["camera"], name=camera_names.get(info["camera"], info["camera"]),
                            rule=info["rule"], rule_name=info["rule_name"], kind=info["kind"])
            out.append(item)
        return sorted(out, key=lambda x: (-x["share"], -x["closed"]))

    by_rule_list = [{**v, "name": camera_names.get(v["camera"], v["camera"]),
                     "incident_outcomes": _outcomes(v["incident_outcomes"])}
                    for v in sorted(rules.values(), key=lambda v: (-v["incidents"], -v["alerts"], v["camera"]))]
    totals: Counter[str] = Counter()
    for c in cells:
        totals.update(c["incident_outcomes"])
    return {"cells": cells, "rank_sign_for": rank("sign_for"), "rank_feedback": rank("feedback"),
            "false_alarms_by_camera": shares(by_camera, "camera"), "false_alarms_by_rule": shares(by_rule, "rule"),
            "by_rule": by_rule_list, "total": sum(c["total"] for c in cells),
            "incidents": sum(c["incidents"] for c in cells), "incident_outcomes": _outcomes(totals)}


def _outcomes(counts: Counter[str] | dict[str, int]) -> dict[str, int]:
    """Outcome counts in the catalogue's order (genuine, false alarm, duplicate, test), zeros left out."""
    return {k: counts[k] for k in CLASSIFICATIONS if counts.get(k)}


async def report(d: Dashboard, user: User, start: float | None, end: float | None,
                 cell: str | None) -> dict[str, Any]:
    """The report of the user's cells (or the one cell) over [start, end) (default: the last 12 hours).
    Raises ReportError for a bad range or a cell the user does not see."""
    end = time.time() if end is None else end
    start = end - 12 * 3600 if start is None else start
    if not 0 < end - start <= MAX_RANGE_S:
        raise ReportError(400, "bad_query", "start, end: the range must be positive and at most 400 days")
    if cell and not user.sees_cell(cell):
        raise ReportError(404, "not_found")
    cfg = d.config()
    cells = {cid: c.name for cid, c in cfg.grid_cells.items()}
    names = rule_names(cfg)

    def _run() -> dict[str, Any]:
        q = select(*[c for c in alerts.c if c.name != "message"]).where(
            _cells_clause(user), alerts.c.start_time >= start, alerts.c.start_time < end)
        if cell:
            q = q.where(alerts.c.grid_cell_id == cell)
        with d.engine.connect() as conn:
            return build_report(conn.execute(q), cells, names)
    out = await run_in_threadpool(_run)
    out.update(start=start, end=end)
    return out


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.1f}"


def report_csv(rep: dict[str, Any]) -> tuple[str, str]:
    """(file name, CSV text) of the per-cell table (seconds; UTF-8 with BOM so spreadsheet programs read
    the Chinese names)."""
    kinds = sorted({k for c in rep["cells"] for k in c["by_kind"]})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["cell", "name", "alerts", "incidents"] + [f"kind_{k}" for k in kinds]
               + ["closed", "false_alarms", "false_alarm_share", "incidents_closed"]
               + [f"outcome_{k}" for k in CLASSIFICATIONS]
               + [f"{k}_{m}" for k in DURATIONS for m in ("median_s", "p90_s", "n")])
    for c in rep["cells"]:
        w.writerow([c["cell"], c["name"], c["total"], c["incidents"]] + [c["by_kind"].get(k, 0) for k in kinds]
                   + [c["closed"], c["false_alarms"], _num(c["false_alarm_share"]), c["incidents_closed"]]
                   + [c["incident_outcomes"].get(k, 0) for k in CLASSIFICATIONS]
                   + [x for k in DURATIONS for x in (_num(c[k]["median_s"]), _num(c[k]["p90_s"]), c[k]["n"])])
    name = time.strftime("sharpeye-report-%Y%m%d-%H%M.csv", time.gmtime(rep["end"]))
    return name, "\ufeff" + buf.getvalue()


async def supervisor(d: Dashboard, user: User) -> dict[str, Any]:
    """Open incidents (the room's items: an alert and its later occurrences are one) by state and age and per
    grid cell, with the open alerts beside them; the overdue incidents; each operator's load this shift.

    An occurrence carries its incident's workflow (history/incidents.py), so counting alert rows would count
    one thing to handle as many: every count here is of incidents, ``alerts`` the rows behind them."""
    from dashboard.workflow import alert_view, overdue_step

    now = time.time()
    since = now - 12 * 3600
    cfg = d.config()

    def _run() -> dict[str, Any]:
        with d.engine.connect() as conn:
            open_rows = conn.execute(select(alerts).where(_cells_clause(user), alerts.c.state.in_(OPEN_STATES))
                                     .order_by(alerts.c.start_time)).all()
            closed = conn.execute(select(alerts.c.id, alerts.c.incident_id, alerts.c.owner_name).where(
                _cells_clause(user), alerts.c.closed_at >= since, alerts.c.owner_name.is_not(None))).all()
        by_alerts: Counter[str] = Counter(r.incident_id or r.id for r in open_rows)
        heads = [r for r in open_rows if _is_head(r)]
        by_state = {s: {b: 0 for _, b in AGE_BUCKETS} for s in OPEN_STATES}
        cells: dict[str, dict[str, Any]] = {
            cid: {"cell": cid, "name": c.name, "incidents": 0, "alerts": 0, "unacknowledged": 0, "overdue": 0}
            for cid, c in cfg.grid_cells.items() if user.sees_cell(cid)}
        load: dict[str, dict[str, int]] = defaultdict(lambda: {"open": 0, "closed_this_shift": 0})
        overdue = []
        for r in heads:
            age = now - r.start_time
            bucket = next(b for limit, b in AGE_BUCKETS if age < limit)
            by_state[r.state][bucket] += 1
            cell = cells.setdefault(r.grid_cell_id, {"cell": r.grid_cell_id, "name": r.grid_cell_name, "incidents": 0,
                                                     "alerts": 0, "unacknowledged": 0, "overdue": 0})
            cell["incidents"] += 1
            cell["alerts"] += by_alerts[r.id]
            cell["unacknowledged"] += r.state == "new"
            if r.owner_name:
                load[r.owner_name]["open"] += 1
            if overdue_step(r._mapping):  # late for the step it waits for (acknowledge, 签收, 到场, 反馈)
                cell["overdue"] += 1
                overdue.append(dict(alert_view(r), alerts=by_alerts[r.id]))
        for r in closed:
            if _is_head(r):
                load[r.owner_name]["closed_this_shift"] += 1
        return {"by_state": by_state, "overdue": overdue, "open": len(heads), "open_alerts": len(open_rows),
                "by_cell": sorted(cells.values(), key=lambda c: (-c["incidents"], c["cell"])),
                "load": [{"operator": k, **v} for k, v in sorted(load.items(), key=lambda kv: -kv[1]["open"])]}
    return await run_in_threadpool(_run)
