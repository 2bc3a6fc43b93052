"""Zone and line editor: engineers draw a camera's zones, lines and masks on its picture.

Who may: engineers and admins (operators get 403, page and API), for the cameras of their grid
cells only (404 otherwise, as for every camera route); every save is in the audit log
(``edit_zones``) with the camera, the geometry before and after, and the diff of the file.

The text editing is ``pipeline.config.edit``'s (comments and every other camera kept byte for byte);
reading, validating (``sharpeye check``'s validator) and replacing the file, the picture and the
preview are ``dashboard.services.zones``'.  Lost updates are refused: the page loads the file's
sha256 (``version``) and sends it back; a file changed in between answers 409, an edit that does not
pass ``sharpeye check`` 422 with the ``FILE:LINE: path: message`` problems, leaving the file untouched.

**Preview.**  ``/api/zones/<camera>/detections`` gives the worker's newest detections and the camera's
rules with their defaults resolved; the page tests each rule against them with the shapes as drawn,
saved or not (zones.js ``matchRules``: the per-object tests of ``pipeline.analyse.rules`` redone in
the page, since the dashboard imports no analysis code).  Timing (inertia, dwell, for_s) and
schedules are not judged from one frame; the page says so.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from pydantic import Field

from dashboard.deps import DashboardDep, EngineerUser, RemoteAddr, refuse
from dashboard.pages import page
from dashboard.services import zones as zone_service
from dashboard.services.responses import Reply
from dashboard.services.zones import Refused
from pipeline.config.edit import GeometryEdit

router = APIRouter()


class GeometryIn(GeometryEdit):
    version: str = Field(min_length=64, max_length=64, description="sha256 of the file the page loaded.")


class ZoneCamerasOut(Reply):
    file: str
    cameras: list[dict[str, Any]]


class GeometryOut(Reply):
    camera: dict[str, Any]
    file: str
    version: str


class PictureOut(Reply):
    source: str
    image: str | None


class SavedOut(Reply):
    changed: bool
    version: str
    diff: str
    backup: str | None
    geometry: dict[str, Any]


@router.get("/zones", include_in_schema=False)
async def zones_page(_user: EngineerUser) -> HTMLResponse:
    return page("zones.html")


@router.get("/api/zones", response_model=ZoneCamerasOut)
async def zone_cameras(d: DashboardDep, user: EngineerUser) -> dict[str, Any]:
    """The cameras this engineer may edit (from the file on disk: disabled ones too)."""
    try:
        return await zone_service.editable_cameras(d, user)
    except Refused as e:
        raise refuse(e.status, e.code, **e.extra) from None


@router.get("/api/zones/{camera_id}", response_model=GeometryOut)
async def camera_geometry(camera_id: str, d: DashboardDep, user: EngineerUser) -> dict[str, Any]:
    """The camera's zones, lines and masks as in the file now, its rules (what the zones are for) and the
    file's version for the save."""
    try:
        return await zone_service.camera_geometry(d, user, camera_id)
    except Refused as e:
        raise refuse(e.status, e.code, **e.extra) from None


@router.get("/api/zones/{camera_id}/frame", response_model=PictureOut)
async def camera_frame(camera_id: str, d: DashboardDep, user: EngineerUser, remote: RemoteAddr) -> dict[str, Any]:
    """A picture to draw on: live (the worker's seam), else the newest alert snapshot, else none."""
    try:
        return await zone_service.frame(d, user, camera_id, remote)
    except Refused as e:
        raise refuse(e.status, e.code, **e.extra) from None


@router.get("/api/zones/{camera_id}/detections", response_model=PictureOut)
async def camera_detections(camera_id: str, d: DashboardDep, user: EngineerUser, remote: RemoteAddr,
                            picture: bool = False) -> dict[str, Any]:
    """The worker's newest detections on the camera (live seam overlay) and its rules with defaults resolved:
    the page tests each rule against them with the geometry being drawn (not yet saved).

    ``picture``: also a live JPEG taken at the same moment (both asked of the worker at once, a
    fraction of a second apart), so the boxes are drawn on the picture they belong to.
    """
    try:
        return await zone_service.detections(d, user, camera_id, picture, remote)
    except Refused as e:
        raise refuse(e.status, e.code, **e.extra) from None


@router.post("/api/zones/{camera_id}", response_model=SavedOut)
async def save_zones(camera_id: str, geo: GeometryIn, d: DashboardDep, user: EngineerUser,
                     remote: RemoteAddr) -> dict[str, Any]:
    """Save the camera's geometry into the config file: 200 saved (or unchanged), 409 the file changed since
    it was loaded, 422 the result does not pass ``sharpeye check`` (``problems``: FILE:LINE lines)."""
    for kind, items in (("zone", geo.zones), ("line", geo.lines)):
        names = [i.name for i in items]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise refuse(400, "duplicate_name", kind=kind, names=dup)
    try:
        saved = await zone_service.save(d, user, camera_id, geo, geo.version, remote)
    except Refused as e:
        raise refuse(e.status, e.code, **e.extra) from None
    return {"changed": saved.changed, "version": saved.version, "diff": saved.diff, "backup": saved.backup,
            "geometry": saved.after}
