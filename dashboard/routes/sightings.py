"""Sightings search (研判): people and vehicles seen by the cameras, by plate, label, colour, place and time.

Thin: the query is validated here (bounded strings, finite times), then one call of
``history.sightings.scoped_search``, which keeps the user to the grid cells they see and records the
search with its query in the audit log.  ``/api/sightings/path`` is one plate's sightings across
cameras in time order (a vehicle's path), scoped and audited the same way.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from dashboard.deps import CurrentUser, DashboardDep, RemoteAddr, current_user, refuse
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
