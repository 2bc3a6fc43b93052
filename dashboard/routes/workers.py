"""Workers (工作节点): the engineer's page of which worker runs which camera now, and each camera's moves.

The look-ups (the cluster's keys in the bus, read on the Redis clock) are ``dashboard.services.cluster``'s;
this module checks the role and answers.  A user sees the cameras, owners and moves of their own grid
cells only.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from dashboard.deps import DashboardDep, EngineerUser, current_user
from dashboard.pages import page
from dashboard.services import cluster
from dashboard.services.responses import Reply

router = APIRouter(dependencies=[Depends(current_user)])

MOVES_DEFAULT = 50  # moves a page asks for by default
MOVES_MAX = 1000


class WorkersOut(Reply):
    enabled: bool
    now: float
    ttl_s: float
    workers: list[dict[str, Any]]
    cameras: list[dict[str, Any]]


class MovesOut(Reply):
    camera: str | None
    moves: list[dict[str, Any]]


@router.get("/workers", include_in_schema=False)
async def workers_page(_user: EngineerUser) -> HTMLResponse:
    return page("workers.html")


@router.get("/api/workers", response_model=WorkersOut)
async def workers(d: DashboardDep, user: EngineerUser) -> dict[str, Any]:
    """Live workers (capacity, load, last heartbeat, cameras held) and each visible camera's owner."""
    return await cluster.workers_view(d, user)


@router.get("/api/workers/moves", response_model=MovesOut)
async def moves(d: DashboardDep, user: EngineerUser, camera: str | None = Query(None, max_length=200),
                limit: int = Query(MOVES_DEFAULT, ge=1, le=MOVES_MAX)) -> dict[str, Any]:
    """The newest moves (camera, from, to, token, time, reason), newest first; ``camera`` for one camera's."""
    return await cluster.moves_view(d, user, camera, limit)
