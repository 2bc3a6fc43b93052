"""Watchlists (布控) for the dashboard: the routes' one call each, and the mirror the workers match against.

Who may: the ``investigator`` capability, :data:`CAPABILITY_ROLE` and above: engineers and admins (the room's
supervisors): roles nest in one line (operator < engineer < admin) and every page, the users command
and the authorization matrix know those three, so a fourth role would have to slot into that line
(and then engineers would hold it anyway) or break the nesting everything else relies on.  Duty
operators neither see nor change entries: a hit reaches their cell as an alert without the reason.

After every change, and every :data:`MIRROR_EVERY_S` from the dashboard's periodic checks (a bus that
restarted empty gets the entries back), the active entries are written to ``{prefix}:watchlist``.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from dashboard.context import Dashboard
from dashboard.users import User
from history import watchlists as wl
from pipeline.analyse.watchlist import MIRROR_KEY, mirror_json

log = logging.getLogger("sharpeye.dashboard")
MIRROR_EVERY_S = 30.0
CAPABILITY_ROLE = "engineer"  # the investigator capability: create and see watchlists


async def mirror(d: Dashboard) -> int:
    """Write the active entries for the workers; how many."""
    def read() -> list[Any]:
        with d.engine.connect() as conn:
            return wl.active_entries(conn)
    entries = await run_in_threadpool(read)
    await d.redis().set(d.keys.prefix_key(MIRROR_KEY), mirror_json(entries))
    return len(entries)


async def mirror_after_change(d: Dashboard) -> bool:
    """The mirror after a change; a bus down is one warning (the change is in the database, and the periodic
    mirror writes it once the bus is back), not a failed request."""
    try:
        await mirror(d)
        return True
    except (RedisError, OSError, TimeoutError) as e:
        log.warning("watchlist changed but not mirrored to the workers yet (bus unavailable: %s); "
                    "trying again within %.0f s", e, MIRROR_EVERY_S)
        return False


async def listing(d: Dashboard, user: User, include_expired: bool) -> dict[str, Any]:
    def run() -> list[dict[str, Any]]:
        with d.engine.connect() as conn:
            return wl.visible(conn, user, include_expired=include_expired)
    return {"entries": await run_in_threadpool(run)}


async def create(d: Dashboard, user: User, remote: str | None, **fields: Any) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        with d.engine.begin() as conn:
            return wl.create(conn, user, known_cells=d.config().grid_cells.keys(), remote=remote, **fields)
    entry = await run_in_threadpool(run)
    return {**entry, "mirrored": await mirror_after_change(d)}


async def remove(d: Dashboard, user: User, entry_id: int, remote: str | None) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        with d.engine.begin() as conn:
            return wl.remove(conn, user, entry_id, remote)
    entry = await run_in_threadpool(run)
    return {"removed": entry["id"], "entry": entry, "mirrored": await mirror_after_change(d)}
