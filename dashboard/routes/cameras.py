"""Cameras: the live list (operators, their cells only), one camera, the map and the engineer's health page.

The look-ups are ``dashboard.services.cameras``'; a camera outside the user's cells is answered 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from dashboard.deps import CurrentUser, DashboardDep, EngineerUser, current_user, found
from dashboard.pages import page
from dashboard.services import cameras as camera_service
from dashboard.services.responses import Reply

router = APIRouter(dependencies=[Depends(current_user)])


class CameraOut(Reply):
    id: str
    name: str
    enabled: bool
    grid_cell: dict[str, Any]
    state: str
    online: bool


class MapOut(Reply):
    cells: list[dict[str, Any]]
    cameras: list[dict[str, Any]]


@router.get("/api/cameras", response_model=list[CameraOut])
async def cameras(d: DashboardDep, user: CurrentUser) -> list[dict[str, Any]]:
    return await camera_service.user_cameras(d, user)


@router.get("/api/cameras/{camera_id}", response_model=CameraOut)
async def camera(camera_id: str, d: DashboardDep, user: CurrentUser) -> dict[str, Any]:
    return found(await camera_service.camera_detail(d, user, camera_id))


@router.get("/engineer", include_in_schema=False)
async def engineer_page(_user: EngineerUser) -> HTMLResponse:
    return page("engineer.html")


@router.get("/api/health", response_model=list[CameraOut])
async def health(d: DashboardDep, user: EngineerUser) -> list[dict[str, Any]]:
    """Every visible camera with its configuration, counters and owner worker (the engineer page)."""
    return await camera_service.health(d, user)


@router.get("/map", include_in_schema=False)
async def map_page() -> HTMLResponse:
    return page("map.html")


@router.get("/api/map", response_model=MapOut)
async def grid_map(d: DashboardDep, user: CurrentUser) -> dict[str, Any]:
    """The user's grid cells (outline, duty officer, open alerts now) and cameras (position, online)."""
    return await camera_service.grid_map(d, user)
