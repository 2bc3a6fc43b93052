"""Sightings search (研判): people and vehicles seen by the cameras, by plate, label, colour, place and time.

Thin: the query is validated here (bounded strings, finite times), then one call of
``history.sightings.scoped_search``, which keeps the user to the grid cells they see and records the
search with its query in the audit log.  ``/api/sightings/path`` is one plate's sightings across
cameras in time order (a vehicle's path), scoped and audited the same way.

The search page (``/search``) and a sighting's clip page (``/search/clip?id=…&t=…``) are served here, with
what they fetch: a sighting's crop (``/api/sightings/crops/<camera>/<day>/<file>``, scoped like snapshots:
by the camera the resolved file lies under), its clip (cut from the recordings, audited) and the adding of
a sighting to one of the user's cases (``dashboard.services.cases.add_sighting``).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dashboard.clips import ClipError
from dashboard.deps import CurrentUser, DashboardDep, RemoteAddr, current_user, found, refuse
from dashboard.pages import add_pages
from dashboard.services import cases as case_service
from dashboard.services import sightings as sighting_service
from dashboard.services.export_jobs import check_case
from history.sightings import MAX_LIMIT, SightingQuery, colour_name, scoped_search

router = APIRouter(dependencies=[Depends(current_user)])
MAX_EPOCH = 4_102_444_800.0  # 2100: a time after it is a typo
Time = Annotated[float | None, Query(ge=0.0, le=MAX_EPOCH, allow_inf_nan=False)]
Names = Annotated[list[str], Query(max_length=50)]


def _run(d: Any, user: Any, q: SightingQuery, remote: str | None, path: bool = False) -> dict[str, Any]:
    t0 = time.perf_counter()
    with d.engine.begin() as conn:
        rows = scoped_search(conn, d.config(), user, q, remote)
    if path:  # a vehicle's path: oldest first
        rows.sort(key=lambda r: (r["first_time"], r["id"]))
    cams = d.config().cameras
    for r in rows:
        cam = cams.get(r["camera_id"])
        r["camera_name"] = cam.name if cam is not None else r["camera_id"]
        r["crop_url"] = sighting_service.crop_url(r.get("crop_path"))
    return {"sightings": rows, "query_ms": round((time.perf_counter() - t0) * 1000, 1)}


def _query(**kw: Any) -> SightingQuery:
    try:
        if kw.get("colour") is not None:
            colour_name(kw["colour"])  # a colour not in the palette says which are
        return SightingQuery(**kw)
    except ValueError as e:
        raise refuse(400, "bad_query", message=str(e)) from None


@router.get("/api/sightings")
async def sightings(d: DashboardDep, user: CurrentUser, remote: RemoteAddr,
                    plate: Annotated[str | None, Query(min_length=1, max_length=16)] = None,
                    match: Literal["exact", "prefix", "fuzzy"] = "exact",
                    label: Names = [], colour: Annotated[str | None, Query(max_length=16)] = None,  # noqa: B006
                    part: Literal["any", "upper", "lower", "body"] = "any",
                    camera: Names = [], cell: Names = [],  # noqa: B006
                    start: Time = None, end: Time = None,
                    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100) -> dict[str, Any]:
    q = _query(plate=plate, plate_match=match, labels=tuple(label), colour=colour, part=part,
               cameras=tuple(camera), cells=tuple(cell), start=start, end=end, limit=limit)
    return await run_in_threadpool(_run, d, user, q, remote)


@router.get("/api/sightings/path")
async def plate_path(d: DashboardDep, user: CurrentUser, remote: RemoteAddr,
                     plate: Annotated[str, Query(min_length=1, max_length=16)],
                     fuzzy: bool = False, start: Time = None, end: Time = None) -> dict[str, Any]:
    q = _query(plate=plate, plate_match="fuzzy" if fuzzy else "exact", start=start, end=end, limit=500)
    return await run_in_threadpool(_run, d, user, q, remote, True)


# ------------------------------------------------------------------------------------------ the pages

add_pages(router, {"/search": "search.html", "/search/clip": "search-clip.html"})


# ------------------------------------------------------------------------------------------ crops, clips, cases

@router.get("/api/sightings/crops/{rel:path}")
async def crop(rel: str, d: DashboardDep, user: CurrentUser) -> FileResponse:
    """A sighting's crop (JPEG), for users of the camera's grid cell only (the path starts with the camera id)."""
    path = found(await run_in_threadpool(sighting_service.crop_file, d, user, rel))
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


async def _row(d: Any, user: Any, sighting_id: str) -> Any:
    # another cell's sighting answers as one that does not exist
    return found(await run_in_threadpool(sighting_service.sighting_row, d, user, sighting_id))


@router.get("/api/sightings/{sighting_id}/clip")
async def clip_info(sighting_id: str, d: DashboardDep, user: CurrentUser, remote: RemoteAddr) -> dict[str, Any]:
    """The sighting's clip: cut (or found in the cache) now, with where in it the sighting starts."""
    row = await _row(d, user, sighting_id)
    try:
        return await sighting_service.clip_info(d, user, row, remote)
    except ClipError as e:
        raise refuse(404, e.code, detail=str(e)) from None


@router.get("/api/sightings/{sighting_id}/video.mp4")
async def clip_file(sighting_id: str, request: Request, d: DashboardDep, user: CurrentUser) -> FileResponse:
    """The clip file, the version the info named (``v``); byte ranges make it seekable in a ``<video>``."""
    row = await _row(d, user, sighting_id)
    try:
        path = await sighting_service.clip_path(d, row, request.query_params.get("v", ""))
    except ClipError as e:
        raise refuse(404, e.code, detail=str(e)) from None
    return FileResponse(path, media_type="video/mp4", headers={"Cache-Control": "private, no-cache"})


class CaseBody(BaseModel):
    name: str = Field(max_length=80)
    description: str | None = Field(None, max_length=4000)


@router.post("/api/sightings/{sighting_id}/case")
async def add_to_case(sighting_id: str, body: CaseBody, d: DashboardDep, user: CurrentUser,
                      remote: RemoteAddr) -> dict[str, Any]:
    """Link the sighting to the user's case of that name (made when they have none), audited."""
    row = await _row(d, user, sighting_id)
    name = check_case(body.name)
    if name is None:
        raise refuse(400, "bad_name", message="a case needs a name")
    return await run_in_threadpool(case_service.add_sighting, d, user, name, row.sighting_id, body.description,
                                   remote)
