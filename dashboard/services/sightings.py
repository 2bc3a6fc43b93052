"""The search page's look-ups besides the search itself: a sighting's crop, its clip, the sighting as a row.

Scopes as everywhere: a sighting is the user's when its grid cell is one they see (the camera's cell
when the row has none); another cell's sighting answers exactly as one that does not exist.  The
crop files lie under ``<data_dir>/sightings/<camera>/<day>/``; a crop path is joined through
:func:`dashboard.files.safe_join` and its scope is the camera the resolved file really lies under,
as for snapshots.  The clip is the alert clip's cutting (``dashboard.clips``: stream copy of the
recorded segments, seekable, cached) aimed at the sighting's time, and each opening is audited.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from dashboard.clips import Clip, cached_clip, cut_clip
from dashboard.context import Dashboard
from dashboard.files import UnsafePath, first_part, safe_join
from dashboard.services.live import finish_open_segment
from dashboard.users import User
from history.audit import record
from history.catalogue import dashboard_fetcher
from history.schema import sightings
from pipeline.record.catalog import Recordings

PRE_S = 5.0  # the clip starts this long before the sighting's first time
POST_S = 3.0  # and ends this long after its last
RECENT_S = 120.0  # a sighting that ended this recently may lie in the camera's open segment


def crops_root(d: Dashboard) -> Path:
    return d.data_dir / "sightings"


def crop_file(d: Dashboard, user: User, rel: str) -> Path | None:
    """A sighting crop's path, for users of the camera's grid cell only; None when not found or not theirs.

    Not audited one by one: the crops come back with a search, which is."""
    root = crops_root(d)
    try:
        path = safe_join(root, rel)
        cam = d.config().cameras.get(first_part(root, path))
    except UnsafePath:
        return None
    if cam is None or not user.sees_cell(cam.grid_cell) or path.suffix.lower() != ".jpg":
        return None
    return path


def cell_of(d: Dashboard, row: Any) -> str | None:
    """The sighting's grid cell: its own, else its camera's (a camera moved since keeps its old rows' cell)."""
    if row.grid_cell_id:
        return str(row.grid_cell_id)
    cam = d.config().cameras.get(row.camera_id)
    return cam.grid_cell if cam is not None else None


def sighting_row(d: Dashboard, user: User, sighting_id: str) -> Any:
    """The sighting's row, or None when there is none or it is of a cell the user may not see."""
    if not 0 < len(sighting_id) <= 160:
        return None
    with d.engine.connect() as conn:
        row = conn.execute(select(sightings).where(sightings.c.sighting_id == sighting_id)).first()
    if row is None or not user.sees_cell(cell_of(d, row)):
        return None
    return row


def view(d: Dashboard, row: Any) -> dict[str, Any]:
    """A sighting as the pages show it (the search's fields, the camera's name, the crop's URL)."""
    cam = d.config().cameras.get(row.camera_id)
    out = {k: v for k, v in row._mapping.items() if k not in ("colours", "box")}
    out["colours"] = json.loads(row.colours or "{}")
    out["camera_name"] = cam.name if cam is not None else row.camera_id
    out["crop_url"] = crop_url(row.crop_path)
    if row.plate:
        out["plate_text"] = f"{row.plate[:2]}·{row.plate[2:]}"
    return out


def crop_url(rel: str | None) -> str | None:
    return f"/api/sightings/crops/{rel}" if rel else None


def _window(row: Any) -> tuple[float, float]:
    return float(row.first_time) - PRE_S, float(row.last_time) + POST_S


def _cut(d: Dashboard, row: Any) -> Clip:
    start, end = _window(row)
    return cut_clip(d.data_dir / d.config().recordings.dir, d.data_dir / "cache" / "clips", row.camera_id,
                    f"sighting:{row.sighting_id}", start, end, end > time.time(), dashboard_fetcher(d))


async def clip_info(d: Dashboard, user: User, row: Any, remote: str | None) -> dict[str, Any]:
    """The sighting's clip (from a little before it appeared to a little after it left), cut or found in the
    cache, with where in the clip the sighting starts; the opening is audited.

    Raises :class:`dashboard.clips.ClipError` when nothing of that time is recorded."""
    start, end = _window(row)
    rec_dir = d.data_dir / d.config().recordings.dir

    def _needs_finish() -> bool:
        segs = Recordings(rec_dir).segments(row.camera_id, start, end)
        return end > time.time() - RECENT_S and (not segs or segs[-1].end < end - 0.05)
    if await run_in_threadpool(_needs_finish):
        await finish_open_segment(d, row.camera_id)  # the clip then reaches the sighting's end
    clip = await run_in_threadpool(_cut, d, row)
    cell = cell_of(d, row)

    def _audit() -> None:
        with d.engine.begin() as conn:
            record(conn, "view_sighting_clip", user_id=user.id, username=user.username, grid_cell_id=cell,
                   data={"sighting": row.sighting_id, "camera": row.camera_id, "start": clip.start,
                         "end": clip.end}, remote=remote)
    await run_in_threadpool(_audit)
    return {"sighting": view(d, row), "window": [start, end], "clip_start": clip.start, "clip_end": clip.end,
            "duration": clip.duration, "offset": float(row.first_time) - clip.start, "gaps": clip.gaps,
            "url": f"/api/sightings/{row.sighting_id}/video.mp4?v={clip.version}"}


async def clip_path(d: Dashboard, row: Any, version: str) -> Path:
    """The clip file: the cached version the info named, else cut now (raises ClipError)."""
    found = cached_clip(d.data_dir / "cache" / "clips", row.camera_id, f"sighting:{row.sighting_id}", version)
    if found is not None:
        return Path(found)
    return Path((await run_in_threadpool(_cut, d, row)).path)
