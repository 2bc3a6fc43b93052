"""The per-cell paging webhook: each dispatch to a cell is POSTed to its paging system, with retries.

``grid_cells.<id>.webhook`` names the URL.  The body is JSON: the alert (what, where, when), the
duty officer, and the officer's one-time link (the paging system sends it to the officer's phone).
A try that fails (connection error, timeout, a status outside 2xx) is retried after
``RETRY_DELAYS_S``; each try is a system row in the alert's timeline, so the room sees whether
the page went out.  Runs after the response, in a worker thread: a slow paging system never
delays the operator's click.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

from sqlalchemy import Engine

from history.audit import record
from pipeline.config import redact_url

log = logging.getLogger("sharpeye.paging")
RETRY_DELAYS_S = (1.0, 4.0, 16.0)  # after the first try: 4 tries in all
TIMEOUT_S = 5.0


def payload(alert: dict[str, Any], officer_link: str | None) -> dict[str, Any]:
    cell = alert["grid_cell"]
    return {"type": "dispatch", "alert_id": alert["alert_id"], "time": alert["dispatch"].get("sent_at"),
            "camera": alert["camera"], "grid_cell": {"id": cell["id"], "name": cell["name"]},
            "officer": cell.get("officer"), "kind": alert["rule"]["kind"], "severity": alert["rule"]["severity"],
            "labels": alert["labels"], "start_time": alert["start_time"], "officer_link": officer_link}


def page_officer(engine: Engine, url: str, alert: dict[str, Any], officer_link: str | None,
                 delays: tuple[float, ...] = RETRY_DELAYS_S) -> bool:
    """POST the dispatch until it is taken (2xx) or the tries run out; True when delivered."""
    body = json.dumps(payload(alert, officer_link), ensure_ascii=False).encode()
    for attempt in range(len(delays) + 1):
        if attempt:
            time.sleep(delays[attempt - 1])
        problem = None
        try:
            req = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json; charset=utf-8",
                                                  "User-Agent": "sharpeye-dashboard"})
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
                status = resp.status
        except urllib.error.HTTPError as e:
            status, problem = e.code, f"HTTP {e.code}"
        except (OSError, ValueError) as e:
            status, problem = 0, str(e)[:200]
        ok = 200 <= status < 300
        with engine.begin() as conn:
            record(conn, "webhook" if ok else "webhook_failed", alert_id=alert["alert_id"],
                   grid_cell_id=alert["grid_cell"]["id"],
                   data={"try": attempt + 1, "status": status, "problem": problem, "url": redact_url(url)})
        if ok:
            return True
        log.warning("paging %s for %s failed (try %d): %s", redact_url(url), alert["alert_id"], attempt + 1, problem)
    return False
