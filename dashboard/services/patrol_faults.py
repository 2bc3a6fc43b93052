"""The patrol fault checks as the dashboard runs them: cameras the workers report offline (from the camera
states on the bus) and cameras a tamper alert has held, for longer than ``dashboard.fault_after_s``, go on
the fault list (``history.patrol.check_faults``).  Run every ``CHECK_EVERY_S`` by the dashboard process
that holds the escalation turn, and again whenever a fault list is read (so a page never lags a check).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from dashboard.context import Dashboard
from history import patrol
from pipeline.publish import bus

CHECK_EVERY_S = 30.0


async def offline_since(d: Dashboard) -> dict[str, float]:
    """Cameras the workers report not online, with when their picture stopped (last frame, else the state change)."""
    statuses = bus.parse_statuses(await d.redis().hgetall(d.keys.cameras))
    return {cid: (st.last_frame_time or st.since or st.updated) for cid, st in statuses.items() if not st.online}


async def check(d: Dashboard) -> int:
    """One pass of the offline and tamper checks; how many faults were added."""
    offline = await offline_since(d)

    def _tx() -> int:
        with d.engine.begin() as conn:
            return patrol.check_faults(conn, d.config(), offline)
    return await run_in_threadpool(_tx)
