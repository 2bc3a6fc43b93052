"""Path traversal and NUL against every route that serves a file: never another cell's byte, never a 500.

As the operator of cell B (camera ``square``) the six forms that reached cell A's snapshots (``lobby``) are
sent exactly as written (no client-side tidying, as ``curl --path-as-is``), plus NUL in several places,
to the snapshot route, the static route and every other route that serves a file (exports, cases, clips,
the officer's snapshot).  The audit row of a refused request must not name cell A either.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.responses import FileResponse, StreamingResponse

from dashboard.files import UnsafePath, first_part, parts, safe_join
from tests.support.dashboard import api_routes
from tests.support.security_room import DAY, Room

OTHER = f"lobby/{DAY}/lobby-1.jpg"  # cell A's snapshot
TRAVERSALS = [  # from the issue, with cell B's camera as the first part
    f"square/../{OTHER}",
    f"square/%2e%2e/{OTHER}",
    f"square/..%2f{OTHER}",
    f"square%2f..%2f{OTHER.replace('/', '%2f')}",
    f"square/x/../../{OTHER}",
    f"square/.%2e/{OTHER}",
    f"square/%2E%2E/{OTHER}",
    f"square/%252e%252e/{OTHER}",  # double encoding
    f"square/..%5c{OTHER}",
]
NULS = ["lobby/%00", f"square/{DAY}/square-1.jpg%00", "%00/../lobby", f"{OTHER}%00.jpg"]


@pytest.fixture
def room(tmp_path: Path, redis_url: str) -> Iterator[Room]:
    r = Room(tmp_path, redis_url)
    yield r
    r.close()


# every route that answers with a file, and the path it is probed through ({p} is the probe)
FILE_ROUTES = {
    "/snapshots/{rel:path}": "/snapshots/{p}",
    "/static/{rel:path}": "/static/{p}",
    "/api/exports/{job_id}/download": "/api/exports/{p}/download",
    "/api/exports/{job_id}/files/{name}": "/api/exports/job1/files/{p}",
    "/api/cases/{name}/download": "/api/cases/{p}/download",
    "/api/clips/{alert_id}/video.mp4": "/api/clips/{p}/video.mp4",
    "/api/o/{token}/snapshot": "/api/o/{p}/snapshot",
    "/api/sightings/crops/{rel:path}": "/api/sightings/crops/{p}",
    "/api/sightings/{sighting_id}/video.mp4": "/api/sightings/{p}/video.mp4",
}


def test_the_safe_join_refuses_every_form() -> None:
    for bad in ("../x", "a/../b", "a/./b", "a//b", "/etc/passwd", "a\\..\\b", "a\x00b", "a/%2e%2e/b", "a%2fb",
                "a/%00", "", "a/", "x" * 2000):
        with pytest.raises(UnsafePath):
            parts(bad)
    assert parts("lobby/2026-12-07/a.jpg") == ("lobby", "2026-12-07", "a.jpg")


def test_the_safe_join_stays_under_its_root_through_links(tmp_path: Path) -> None:
    root = tmp_path / "snapshots"
    (root / "square").mkdir(parents=True)
    (tmp_path / "outside.jpg").write_bytes(b"x")
    (root / "square" / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    (root / "square" / "ok.jpg").write_bytes(b"y")
    with pytest.raises(UnsafePath):
        safe_join(root, "square/link.jpg")  # a link out of the root is refused
    p = safe_join(root, "square/ok.jpg")
    assert first_part(root, p) == "square"
    with pytest.raises(UnsafePath):
        safe_join(root, "square/missing.jpg")


def test_every_file_route_is_probed(room: Room) -> None:
    """A new route that returns a file must be added to FILE_ROUTES (and so probed below)."""
    app = room.app.app  # type: ignore[attr-defined]  (inside the security-header wrapper)
    files = set()
    for r in api_routes(app.routes):  # type: ignore[attr-defined]
        ret = str(getattr(r.endpoint, "__annotations__", {}).get("return", ""))
        if any(t.__name__ in ret for t in (FileResponse, StreamingResponse)) or "snapshot" in r.path \
                or r.path.endswith(("/download", ".mp4")) or "{rel:path}" in r.path or "/files/" in r.path:
            files.add(r.path)
    files -= {"/api/stream", "/api/exports/{job_id}/events", "/api/reports.csv", "/api/audit.csv"}  # not files
    assert files <= set(FILE_ROUTES), f"file routes not probed: {sorted(files - set(FILE_ROUTES))}"


@pytest.mark.parametrize("probe", TRAVERSALS)
def test_traversal_to_another_cells_snapshot_is_refused(room: Room, probe: str) -> None:
    b = room.as_("opB")
    status, body = room.asgi("GET", f"/snapshots/{probe}", cookie=b.cookie())
    assert 400 <= status < 500, (probe, status)
    assert b"CELL-A-EVIDENCE" not in body
    assert not any(r["action"] == "view_snapshot" for r in room.audit_rows())
    # the same forms on every other file route: 4xx, no cell-A byte, never a 500
    for route in FILE_ROUTES.values():
        status, body = room.asgi("GET", route.format(p=probe), cookie=b.cookie())
        assert 400 <= status < 500, (route, probe, status)
        assert b"CELL-A-EVIDENCE" not in body and b"Traceback" not in body


def test_own_snapshot_is_served_and_audited_with_the_camera_of_the_file(room: Room) -> None:
    b = room.as_("opB")
    status, body = room.asgi("GET", f"/snapshots/{room.snap['square']}", cookie=b.cookie())
    assert status == 200 and b"CELL-B-EVIDENCE" in body
    status, _ = room.asgi("GET", f"/snapshots/{room.snap['lobby']}", cookie=b.cookie())
    assert status == 404  # out of scope: as for a file that does not exist
    status, _ = room.asgi("GET", f"/snapshots/square/{DAY}/nothing.jpg", cookie=b.cookie())
    assert status == 404
    views = [r for r in room.audit_rows() if r["action"] == "view_snapshot"]
    assert [(v["grid_cell_id"], v["username"]) for v in views] == [("G2", "opB")]


@pytest.mark.parametrize("probe", NULS)
def test_nul_in_a_path_is_a_4xx(room: Room, probe: str) -> None:
    b = room.as_("opB")
    for route in [*FILE_ROUTES.values(), "/api/alerts/{p}", "/api/cameras/{p}"]:
        status, body = room.asgi("GET", route.format(p=probe), cookie=b.cookie())
        assert 400 <= status < 500, (route, probe, status)
        assert b"CELL-A-EVIDENCE" not in body
    for raw in ("/static/login.js%00.html", "/static/%00", "/%00"):
        status, _ = room.asgi("GET", raw)
        assert 400 <= status < 500, (raw, status)
