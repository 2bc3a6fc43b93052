"""The video wall's state per user: read it, set layout and cameras, push a camera onto a tile, restore it.

Thin: each route validates its body and calls one function of ``dashboard.services.wall``, which checks
the grid-cell scope (a camera or alert out of scope answers 404 like an unknown one) and writes the audit
log.  There is no user in any path or body: a wall belongs to the user whose session calls.  The wall
page itself (``/wall``) is served with the live routes.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from dashboard.deps import CurrentUser, DashboardDep, RemoteAddr, current_user, service_call
from dashboard.services import wall as svc
from dashboard.services.responses import Reply

router = APIRouter(dependencies=[Depends(current_user)])
CameraId = Annotated[str, Field(min_length=1, max_length=64)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LayoutBody(Body):
    layout: int = Field(ge=1, le=svc.MAX_TILES)
    cameras: list[CameraId | None] = Field(max_length=svc.MAX_TILES, description="tile by tile; null: empty")


class PushBody(Body):
    tile: int = Field(ge=1, le=svc.MAX_TILES, description="1-based tile of the wall")
    camera: str | None = Field(None, min_length=1, max_length=64, description="default: the alert's camera")
    alert_id: str | None = Field(None, min_length=1, max_length=128, description="the alarm pushed from the room")


class RestoreBody(Body):
    tile: int = Field(ge=1, le=svc.MAX_TILES)


class WallOut(Reply):
    layout: int
    version: int
    tiles: list[dict[str, Any]]


@router.get("/api/wall", response_model=WallOut)
async def get_wall(d: DashboardDep, user: CurrentUser) -> dict[str, Any]:
    """This user's wall: layout, version (polled by the page) and each tile's camera."""
    return await service_call(svc.wall, d, user)


@router.put("/api/wall", response_model=WallOut)
async def put_wall(body: LayoutBody, d: DashboardDep, user: CurrentUser) -> dict[str, Any]:
    """Set the layout and the cameras tile by tile (null: an empty tile)."""
    return await service_call(svc.set_wall, d, user, body.layout, body.cameras)


@router.post("/api/wall/push", response_model=WallOut)
async def push(body: PushBody, d: DashboardDep, user: CurrentUser, remote: RemoteAddr) -> dict[str, Any]:
    """Put a camera (or an alert's camera) on one tile; the tile remembers what it showed (audited)."""
    return await service_call(svc.push, d, user, body.tile, body.camera, body.alert_id, remote)


@router.post("/api/wall/restore", response_model=WallOut)
async def restore(body: RestoreBody, d: DashboardDep, user: CurrentUser, remote: RemoteAddr) -> dict[str, Any]:
    """Put back the camera a pushed tile showed before the push (audited)."""
    return await service_call(svc.restore, d, user, body.tile, remote)
