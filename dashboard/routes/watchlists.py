"""Watchlists (布控): plates the room wants to hear about, for investigators (engineers and admins).

Thin: the body is validated here (bounded lengths, finite times, the plate against the mainland grammar
so a bad one answers 422 naming ``plate``), the role is the route's dependency, and each route calls
one function of ``dashboard.services.watchlists`` (scope, audit and the workers' mirror are there).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dashboard.deps import DashboardDep, RemoteAddr, current_user, refuse, require_role
from dashboard.pages import page
from dashboard.services import watchlists as svc
from dashboard.users import User
from history.watchlists import WatchlistError
from pipeline.analyse.watchlist import PatternError, parse_pattern

router = APIRouter(dependencies=[Depends(current_user)])
RowId = Annotated[int, PathParam(ge=1, le=2**62)]
MAX_EPOCH = 4_102_444_800.0  # 2100: a time after it is a typo
T = TypeVar("T")
Investigator = Annotated[User, Depends(require_role(svc.CAPABILITY_ROLE))]  # engineers and admins


class EntryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plate: str = Field(min_length=1, max_length=24, description="藏D·T5022, or one ? for a character not known")
    reason: str = Field(min_length=1, max_length=500)
    cells: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1, max_length=256)
    owner: str | None = Field(None, min_length=1, max_length=64)
    expires_at: float | None = Field(None, ge=0, le=MAX_EPOCH, allow_inf_nan=False)

    @field_validator("plate")
    @classmethod
    def _plate(cls, v: str) -> str:
        try:
            parse_pattern(v)
        except PatternError as e:
            raise ValueError(str(e)) from None
        return v


async def _run(call: Awaitable[T]) -> T:
    try:
        return await call
    except WatchlistError as e:
        extra = {"field": e.field} if e.field else {}
        raise refuse(e.status, e.code, message=str(e), **extra) from None


@router.get("/watchlists", include_in_schema=False)
async def watchlists_page(_user: Investigator) -> HTMLResponse:
    """The page (布控): operators get the forbidden page, as for the API."""
    return page("watchlists.html")


@router.get("/api/watchlists")
async def entries(d: DashboardDep, user: Investigator, expired: bool = True) -> dict[str, Any]:
    return await svc.listing(d, user, include_expired=expired)


@router.post("/api/watchlists")
async def add(body: EntryBody, d: DashboardDep, user: Investigator, remote: RemoteAddr) -> dict[str, Any]:
    return await _run(svc.create(d, user, remote, **body.model_dump()))


@router.delete("/api/watchlists/{entry_id}")
async def remove(entry_id: RowId, d: DashboardDep, user: Investigator, remote: RemoteAddr) -> dict[str, Any]:
    return await _run(svc.remove(d, user, entry_id, remote))
