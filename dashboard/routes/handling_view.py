"""The handling view's own routes: whom an alert can be forwarded to, and the notices a forward or a takeover
left for the user (the page also gets them at once as ``notice`` events of ``/api/stream``).

Each checks its input and calls one function of ``dashboard.services.handling_view``; an alert outside the
user's cells answers as an unknown one.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from dashboard.deps import CurrentUser, DashboardDep, current_user, found, refuse
from dashboard.services import handling_view as handling
from dashboard.services.responses import Reply

router = APIRouter(dependencies=[Depends(current_user)])
STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")


class RecipientsOut(Reply):
    alert_id: str
    grid_cell: str
    users: list[dict[str, Any]]


class NoticesOut(Reply):
    notices: list[dict[str, Any]]
    cursor: str


@router.get("/api/alerts/{alert_id}/recipients", response_model=RecipientsOut)
async def recipients(alert_id: str, d: DashboardDep, user: CurrentUser) -> dict[str, Any]:
    """The colleagues who may see the alert's cell, those on duty (logged in) first."""
    return found(await handling.recipients(d, user, alert_id))


@router.get("/api/notices", response_model=NoticesOut)
async def notices(d: DashboardDep, user: CurrentUser,
                  after: Annotated[str | None, Query(max_length=41)] = None) -> dict[str, Any]:
    """Alerts forwarded to the user or taken from them, after the actions-stream id ``after`` (default: the
    last hour), with the cursor to ask from next."""
    if after is not None and not STREAM_ID.fullmatch(after):
        raise refuse(400, "bad_cursor")
    return await handling.notices(d, user, after)
