"""Triage of the room's list: filters, the order an operator works in, and bulk handling.

The room's items (one per incident, ``GET /api/alerts``) are filtered by state, severity, camera,
grid cell, owner, rule (by its id or the name operators read), classification and free text, and sorted
by priority — overdue first, then unacknowledged, then by severity — then by age (oldest first: the
one waiting longest is handled first), or by age alone (newest first, as the live list shows).
A page keeps the same parameters in its URL, so a filtered view can be reloaded or sent.

Bulk handling acknowledges or closes several items at once, each in its own transaction through the
workflow (an item another operator handles, or already closed, is skipped and counted), and pushes
each result to every open page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from dashboard.context import Dashboard
from dashboard.users import User
from dashboard.workflow import Request as ActionRequest
from dashboard.workflow import WorkflowError, apply
from history.schema import CLASSIFICATIONS, OPEN_STATES

SEVERITY_RANK = {"critical": 3, "high": 2, "medium": 1, "low": 0}
SORTS = ("priority", "age")
BULK_ACTIONS = ("acknowledge", "close")
MAX_BULK = 500


@dataclass(frozen=True)
class Filters:
    """What the operator narrowed the list to; empty fields do not filter."""

    state: str | None = None  # a state, or "open" for every open one
    severity: str | None = None
    camera: str | None = None
    cell: str | None = None
    owner: str | None = None  # an owner's display name, or "none" for nobody's
    rule: str | None = None  # a rule id or the name operators read (rules.<id>.name)
    classification: str | None = None
    q: str | None = None  # free text: camera, cell, rule, owner, comment, alert ids
    sort: str = "age"

    def matches(self, a: dict[str, Any]) -> bool:
        occ = a.get("occurrences") or {}
        rule = a.get("rule") or {}
        if self.state and not (a.get("state") in OPEN_STATES if self.state == "open" else a.get("state") == self.state):
            return False
        if self.severity and (occ.get("severity") or rule.get("severity")) != self.severity:
            return False
        if self.camera and (a.get("camera") or {}).get("id") != self.camera:
            return False
        if self.cell and (a.get("grid_cell") or {}).get("id") != self.cell:
            return False
        owner = (a.get("owner") or {}).get("name")
        if self.owner and (owner is not None if self.owner == "none" else owner != self.owner):
            return False
        if self.rule:
            rules = [rule, *[{"id": r.get("rule_id"), "kind": r.get("kind")} for r in occ.get("reasons") or []]]
            if not any(self.rule in (r.get("id"), r.get("name")) for r in rules):
                return False
        if self.classification and a.get("classification") != self.classification:
            return False
        return not self.q or self.q.casefold() in _text(a)


def _text(a: dict[str, Any]) -> str:
    cam, cell, rule = a.get("camera") or {}, a.get("grid_cell") or {}, a.get("rule") or {}
    parts = [cam.get("name"), cam.get("id"), cell.get("name"), rule.get("name"), rule.get("id"), rule.get("kind"),
             (a.get("owner") or {}).get("name"), a.get("close_comment"), *(a.get("labels") or []),
             *((a.get("occurrences") or {}).get("alert_ids") or [a.get("alert_id")])]
    return " ".join(str(p) for p in parts if p).casefold()


def priority(a: dict[str, Any]) -> tuple[int, int, int, float]:
    """Sort key: overdue first, then still new, then the higher severity, then the oldest."""
    sev = (a.get("occurrences") or {}).get("severity") or (a.get("rule") or {}).get("severity")
    is_open = a.get("state") in OPEN_STATES
    return (0 if is_open and a.get("overdue") else 1, 0 if a.get("state") == "new" else 1 if is_open else 2,
            -SEVERITY_RANK.get(str(sev), 1), float(a.get("start_time") or 0.0))


def triage(items: list[dict[str, Any]], f: Filters) -> list[dict[str, Any]]:
    """The items the filters let through, in the chosen order."""
    out = [a for a in items if f.matches(a)]
    if f.sort == "priority":
        out.sort(key=priority)
    else:
        out.sort(key=lambda a: a.get("start_time") or 0.0, reverse=True)
    return out


async def bulk(d: Dashboard, user: User, ids: list[str], action: str, classification: str | None,
               note: str | None, remote: str | None) -> dict[str, Any]:
    """Acknowledge or close the given items; each is its own workflow action.  Raises WorkflowError for a
    request that cannot apply to any item (unknown action, close without classification or comment)."""
    if action not in BULK_ACTIONS:
        raise WorkflowError("unknown_action", 400)
    if action == "close" and classification not in CLASSIFICATIONS:
        raise WorkflowError("classification_required", 400)
    if action == "close" and not (note or "").strip():
        raise WorkflowError("comment_required", 400)
    req = ActionRequest(action, note=note, classification=classification)

    def _run() -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], dict[str, str]]:
        done, skipped = [], {}
        for aid in dict.fromkeys(ids[:MAX_BULK]):
            try:
                with d.engine.begin() as conn:
                    done.append(apply(conn, aid, user, req, remote))
            except WorkflowError as e:
                skipped[aid] = e.code
        return done, skipped
    done, skipped = await run_in_threadpool(_run)
    for alert, act in done:
        await d.push_action(alert, act)
    return {"done": [a["alert_id"] for a, _ in done], "skipped": skipped}


async def room_list(d: Dashboard, user: User, limit: int, f: Filters) -> dict[str, Any]:
    """The room's list (``services.alerts.alert_list``: one item per incident) filtered and sorted, with the
    count of items per state and severity before filtering (the filter buttons show them)."""
    from dashboard.services.alerts import alert_list

    out = await alert_list(d, user, limit)
    items = out["alerts"]
    counts: dict[str, dict[str, int]] = {"state": {}, "severity": {}}
    for a in items:
        st = str(a.get("state"))
        sev = str((a.get("occurrences") or {}).get("severity") or (a.get("rule") or {}).get("severity"))
        counts["state"][st] = counts["state"].get(st, 0) + 1
        counts["severity"][sev] = counts["severity"].get(sev, 0) + 1
    out["alerts"] = triage(items, f)
    out["counts"] = counts
    return out
