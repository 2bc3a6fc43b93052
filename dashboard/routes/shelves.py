"""Shelves (屏蔽): a camera, or one rule of it, whose alerts are stored and listed but do not ring or escalate
until the shelf expires or a supervisor lifts it.

Thin: each route validates its body and calls one function of ``dashboard.services.shelves``, which checks
the grid-cell scope (a camera or shelf outside the user's cells answers 404 like an unknown one).  Any user
shelves the cameras of their own cells; lifting early is for supervisors (engineer and admin).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from dashboard.deps import CurrentUser, DashboardDep, EngineerUser, RemoteAddr, current_user, refuse
from dashboard.services import shelves as svc
from dashboard.services.responses import Reply
from history.shelves import MAX_REASON, MAX_S, MIN_S, ShelfError

router = APIRouter(dependencies=[Depends(current_user)])
ShelfId = Annotated[int, PathParam(ge=1, le=2**62)]


class ShelfBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    camera: str = Field(min_length=1, max_length=64)
    rule: str | None = Field(None, max_length=64, description="one rule of the camera; none: every alert of it")
    reason: str = Field(min_length=1, max_length=MAX_REASON)
    minutes: float = Field(ge=MIN_S / 60, le=MAX_S / 60, allow_inf_nan=False)


class ShelfOut(Reply):
    shelf: dict[str, Any]


class ShelvesOut(Reply):
    shelves: list[dict[str, Any]]
    now: float
    can_lift: bool


@router.get("/api/shelves", response_model=ShelvesOut)
async def list_shelves(d: DashboardDep, user: CurrentUser, history: bool = False) -> dict[str, Any]:
    """The shelves of the user's cells holding now or ended this shift; ``history`` (supervisors): a week back."""
    return await svc.listing(d, user, history)


@router.post("/api/shelves", response_model=ShelfOut)
async def shelve(body: ShelfBody, d: DashboardDep, user: CurrentUser, remote: RemoteAddr) -> dict[str, Any]:
    """Shelve a camera of the user's cells (or one of its rules) for ``minutes`` with a reason; audited."""
    try:
        return {"shelf": await svc.create(d, user, body.camera, body.rule, body.reason, body.minutes, remote)}
    except ShelfError as e:
        raise refuse(e.status, e.code, **e.extra) from None


@router.post("/api/shelves/{shelf_id}/lift", response_model=ShelfOut)
async def lift(shelf_id: ShelfId, d: DashboardDep, user: EngineerUser, remote: RemoteAddr) -> dict[str, Any]:
    """End a shelf now (supervisors); audited."""
    try:
        return {"shelf": await svc.lift(d, user, shelf_id, remote)}
    except ShelfError as e:
        raise refuse(e.status, e.code, **e.extra) from None
