"""One export, start to finish: :func:`run_export` is the entry point the command line and the page call.

    result = run_export(cfg, ExportRequest(["gate", "lobby"], start, end, precise=True), user="wang.wei")

Order of work, and why:

1. check every name (camera ids, case name) and the range, and find the segments: a request with
   no recording at all fails here (``ExportError`` code 2), before anything is written;
2. take a *pending* hold on those segments (holds.json), so retention cannot delete them while
   they are read;
3. stream-copy each camera into ``<folder>/<camera>.mp4`` (cameras in parallel, one thread each
   up to the number of cores); sha256 of each file is computed on another thread meanwhile;
4. write the manifest (txt, json, sig), turn the pending hold into the segments actually used,
   add the export to its case, and ZIP when asked.

A full disk at any step removes everything this export wrote (the partial file first), releases
its hold and raises ``ExportError`` saying so.  A corrupt segment is skipped and listed; a camera
without recordings in the range is listed with its gaps and exports no file.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import datetime as dt
import getpass
import importlib.metadata
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipeline.config import Config
from pipeline.config.secrets import scrub
from pipeline.export import cases, holds, signing
from pipeline.export.cut import CameraCut, cut_camera
from pipeline.export.fetch import SegmentFetcher, relative_name
from pipeline.export.manifest import SCHEMA, hash_path, render_text, signing_block, write_signed
from pipeline.export.paths import UnsafeName, check_camera_id, exports_root, inside
from pipeline.export.times import both, compact_utc, iso_local, iso_utc, zone_name
from pipeline.record.catalog import Recordings
from pipeline.record.layout import Gap, SegmentInfo
from pipeline.record.segments import is_disk_full

log = logging.getLogger(__name__)

MAX_RANGE_S = 7 * 86400.0  # a week of one camera is ~300 GB at 4 Mbit/s: anything longer is a typing error
GAP_JOIN_S = 1.0


class ExportError(Exception):
    """An export that could not be made; ``code`` is the command's exit status (2: bad request / nothing
    recorded, 1: failed while writing)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@dataclass
class ExportRequest:
    cameras: list[str]
    start: float
    end: float
    out_dir: Path | None = None  # the folder exports are made in (default <data_dir>/exports)
    precise: bool = False
    zip: bool = False
    case: str | None = None
    case_description: str | None = None
    alert: dict[str, Any] | None = None  # the alert the export was made for (AlertClip.summary())
    # the case's folder under <exports>/cases when not its name: a page user's own case (cases.owned_dir)
    case_dir: str | None = None


@dataclass
class ExportResult:
    id: str
    folder: Path  # removed after zipping when ``zip_path`` is set and there is no case
    zip_path: Path | None
    manifest: dict[str, Any]
    cuts: list[CameraCut]
    warnings: list[str] = field(default_factory=list)
    case_folder: Path | None = None
    case_zip: Path | None = None
    seconds: float = 0.0  # wall time the export took

    @property
    def path(self) -> Path:
        """What to hand over: the ZIP when there is one, else the folder."""
        return self.zip_path or self.folder


class ProgressSink(Protocol):
    """Told the total bytes of recordings to read, then each chunk read; the CLI draws a bar from it."""

    def start(self, total_bytes: int, cameras: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def stage(self, text: str) -> None: ...


class NoProgress:
    def start(self, total_bytes: int, cameras: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def stage(self, text: str) -> None:
        pass


def software_version() -> str:
    try:
        return importlib.metadata.version("sharpeye")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def os_user() -> str:
    """The operating-system user running the command (what the command line records as "who")."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def run_export(cfg: Config, req: ExportRequest, user: str, via: str = "command line",
               progress: ProgressSink | None = None, now: Callable[[], float] = time.time,
               fetcher: SegmentFetcher | None = None) -> ExportResult:
    """Make one export (see the module docstring); raises ExportError with a sentence and an exit code.

    ``fetcher`` (cluster): segments of the range that other machines hold are fetched into a local
    cache first (pipeline/export/fetch.py); the cut reads local files either way."""
    t_start = time.monotonic()
    progress = progress or NoProgress()
    tz = cfg.tzinfo()
    data = cfg.data_path()
    rec_dir = data / cfg.recordings.dir
    cams = _check_request(cfg, req, rec_dir)
    catalog = Recordings(rec_dir)
    plan = {c: catalog.segments(c, req.start, req.end) for c in cams}
    if fetcher is not None:
        plan = {c: fetcher.complete(c, req.start, req.end, plan[c]) for c in cams}
    if not any(plan.values()):
        gaps = {c: catalog.gaps(c, req.start, req.end) for c in cams}
        why = "; ".join(f"{c}: " + (", ".join(sorted({g.reason for g in gaps[c]})) or "not recorded") for c in cams)
        raise ExportError(f"nothing recorded between {iso_local(req.start, tz)} and {iso_local(req.end, tz)} "
                          f"({iso_utc(req.start)} to {iso_utc(req.end)}) for {', '.join(cams)} ({why})", 2)

    created = now()
    export_id = f"{compact_utc(created)}-{secrets.token_hex(3)}"
    root = Path(req.out_dir) if req.out_dir is not None else exports_root(data)
    try:
        base = cases.case_folder(root, req.case, req.case_dir) if req.case else Path(root).resolve()
        folder = inside(base, export_id)
    except UnsafeName as e:
        raise ExportError(str(e), 2) from None
    key = signing.load_or_create_key(data)  # before writing anything: a key problem must not leave files
    try:
        folder.mkdir(parents=True)
    except OSError as e:
        if is_disk_full(e):
            raise ExportError(f"disk full: the export folder cannot be made under {folder.parent}; nothing was "
                              f"written ({e})", 1) from None
        raise
    try:
        holds.put(data, export_id, [holds.HeldRange(c, s[0].start, s[-1].end) for c, s in plan.items() if s],
                  pending=True, user=user, path=str(folder), case=req.case_dir or req.case)
        cuts, hashes = _cut_all(cfg, req, cams, plan, rec_dir, folder, progress)
        progress.stage("manifest")
        for cut in cuts:
            cut.notes += fetcher.notes.get(cut.camera, []) if fetcher is not None else []
        doc = _manifest(cfg, req, export_id, created, user, via, cuts, catalog, key, fetcher)
        doc = write_signed(folder, "manifest", doc, render_text(doc), key, hashes)
        holds.put(data, export_id, [holds.HeldRange(c.camera, c.used[0].start, c.used[-1].end)
                                    for c in cuts if c.used],
                  pending=False, user=user, path=str(folder), case=req.case_dir or req.case,
                  alert=(req.alert or {}).get("alert_id"))
    except BaseException as e:
        shutil.rmtree(folder, ignore_errors=True)
        holds.release(data, export_id)
        if is_disk_full(e):
            raise ExportError(f"disk full while writing the export under {folder.parent}: the partial file and "
                              f"this export's folder were removed, nothing was exported ({e})", 1) from None
        raise
    result = ExportResult(export_id, folder, None, doc, cuts)
    if req.case:
        result.case_folder = _add_to_case(data, root, req, doc, export_id, key, tz, user, folder)
    if req.zip:
        progress.stage("zip")
        _zip(result, data, req, user)
    result.warnings = _warnings(doc)
    result.seconds = time.monotonic() - t_start
    log.info("export %s: %s in %.2f s", export_id, ", ".join(c.camera for c in cuts), result.seconds)
    return result


CASE_FILES = ("case.txt", "case.json", "case.sig")


def _add_to_case(data: Path, root: Path, req: ExportRequest, doc: dict[str, Any], export_id: str, key: Any,
                 tz: dt.tzinfo | None, user: str, folder: Path) -> Path:
    """Add the written export to its case; a full disk on the way puts the case back as it was.

    The case's three files are rewritten one after the other (and the index after them), so a
    failure half way would leave a case that no longer verifies: the previous bytes are kept in
    memory (a few kB) and written back once this export's folder is removed, which frees the room.
    """
    assert req.case is not None
    case_dir = folder.parent
    old = {n: (case_dir / n).read_bytes() for n in CASE_FILES if (case_dir / n).is_file()}
    try:
        return cases.add_export(data, root, req.case, doc, export_id, key, tz, user, req.case_description,
                                req.case_dir)
    except OSError as e:
        if not is_disk_full(e):
            raise
        shutil.rmtree(folder, ignore_errors=True)
        holds.release(data, export_id)
        for n in CASE_FILES:
            (case_dir / f"{n}.tmp").unlink(missing_ok=True)
            if n in old:
                (case_dir / n).write_bytes(old[n])
            else:
                (case_dir / n).unlink(missing_ok=True)
        if not old:
            with contextlib.suppress(OSError):
                case_dir.rmdir()  # a case this export was creating: nothing of it is left
        raise ExportError(f"disk full while adding the export to case {req.case!r} under {case_dir.parent}: its "
                          "partial files and this export's folder were removed, nothing was exported; the case is "
                          f"as it was ({e})", 1) from None


def _zip(result: ExportResult, data: Path, req: ExportRequest, user: str) -> None:
    """The export's ZIP (its folder is then removed), or with a case the whole case's ZIP (folders kept)."""
    try:
        if result.case_folder is not None:
            result.case_zip = cases.zip_folder(result.case_folder,
                                               result.case_folder.with_name(result.case_folder.name + ".zip"))
            return
        result.zip_path = cases.zip_folder(result.folder, result.folder.with_name(result.folder.name + ".zip"))
    except OSError as e:
        if is_disk_full(e):
            raise ExportError(f"disk full while writing the ZIP: the partial ZIP was removed; the export itself is "
                              f"complete in {result.case_folder or result.folder}", 1) from None
        raise
    shutil.rmtree(result.folder)
    holds.put(data, result.id, [holds.HeldRange(c.camera, c.used[0].start, c.used[-1].end)
                                for c in result.cuts if c.used],
              pending=False, user=user, path=str(result.zip_path), case=req.case_dir or req.case,
              alert=(req.alert or {}).get("alert_id"))


def _check_request(cfg: Config, req: ExportRequest, rec_dir: Path) -> list[str]:
    if not req.cameras:
        raise ExportError("no camera given: name at least one (--camera ID)", 2)
    if not req.end > req.start:
        raise ExportError("the end of the range must be after its start", 2)
    if req.end - req.start > MAX_RANGE_S:
        raise ExportError(f"the range is {(req.end - req.start) / 86400:.1f} days long; at most "
                          f"{MAX_RANGE_S / 86400:.0f} days can be exported at once", 2)
    cams: list[str] = []
    for c in req.cameras:
        try:
            check_camera_id(c)
            inside(rec_dir, c)
        except UnsafeName as e:
            raise ExportError(str(e), 2) from None
        if c not in cfg.cameras and not (rec_dir / c).is_dir():
            raise ExportError(f"camera {c!r} is not in the config and has no recordings under {rec_dir}", 2)
        if c not in cams:
            cams.append(c)
    return cams


def _cut_all(cfg: Config, req: ExportRequest, cams: list[str], plan: dict[str, list[SegmentInfo]], rec_dir: Path,
             folder: Path, progress: ProgressSink) -> tuple[list[CameraCut], dict[str, dict[str, Any]]]:
    """Every camera's file, cameras in parallel threads; each file hashed on a thread as soon as it is written."""
    total = sum(s.bytes for segs in plan.values() for s in segs)
    progress.start(total, len(cams))
    lock = threading.Lock()

    def advance(n: int) -> None:
        with lock:
            progress.advance(n)

    workers = max(1, min(len(cams), os.cpu_count() or 1))
    with cf.ThreadPoolExecutor(workers, thread_name_prefix="export") as pool, \
            cf.ThreadPoolExecutor(workers, thread_name_prefix="export-hash") as hasher:
        futures = {c: pool.submit(cut_camera, rec_dir, c, req.start, req.end, folder, req.precise, advance, plan[c])
                   for c in cams}
        cuts: list[CameraCut] = []
        hash_futures: dict[str, cf.Future[dict[str, Any]]] = {}
        error: BaseException | None = None
        for c in cams:
            try:
                cut = futures[c].result()
            except BaseException as e:  # keep waiting for the others, so none writes after the cleanup
                error = error or e
                continue
            cuts.append(cut)
            for f in cut.files:
                hash_futures[f.path.name] = hasher.submit(hash_path, f.path)
        if error is not None:
            raise error
        return cuts, {name: fut.result() for name, fut in hash_futures.items()}


def _manifest(cfg: Config, req: ExportRequest, export_id: str, created: float, user: str, via: str,
              cuts: list[CameraCut], catalog: Recordings, key: Any,
              fetcher: SegmentFetcher | None = None) -> dict[str, Any]:
    tz = cfg.tzinfo()
    rec_dir = catalog.dir
    roots = [rec_dir] + ([fetcher.cache] if fetcher is not None else [])
    origin = fetcher.origin if fetcher is not None else {}
    cameras = []
    for cut in cuts:
        cam_cfg = cfg.cameras.get(cut.camera)
        gaps = _gaps(cut, catalog, req.start, req.end, bool(origin),
                     fetcher.moves.get(cut.camera, []) if fetcher is not None else [])
        cameras.append({
            "id": cut.camera,
            "name": cam_cfg.name if cam_cfg else f"{cut.camera} (no longer in the config)",
            "grid_cell": cam_cfg.grid_cell if cam_cfg else None,
            "source": scrub(cam_cfg.source) if cam_cfg else None,
            "record_source": scrub(cam_cfg.record_source) if cam_cfg and cam_cfg.record_source else None,
            "actual": ({"start": both(cut.start, tz), "end": both(cut.end, tz),
                        "start_offset_s": round(cut.start - req.start, 3)}
                       if cut.start is not None and cut.end is not None else None),
            "files": [{"name": f.path.name, "frames": f.frames, "duration_s": round(f.duration_s, 3),
                       "codec": f.codec, "width": f.width, "height": f.height,
                       "start": both(f.start, tz), "end": both(f.end, tz),
                       "reencoded_frames": f.reencoded_frames} for f in cut.files],
            "gaps": [{"start": both(g.start, tz), "end": both(g.end, tz), "seconds": round(g.end - g.start, 3),
                      "reason": g.reason} for g in gaps],
            "segments": [{"path": relative_name(s.path, roots), "start": round(s.start, 3),
                          "end": round(s.end, 3), **_source_hash(cut, s),
                          **({"held_by": origin[s.path].worker} if s.path in origin else {})} for s in cut.used],
            "skipped_segments": [{"path": relative_name(s.path, roots), "start": round(s.start, 3),
                                  "end": round(s.end, 3), "reason": s.reason,
                                  **({"sha256": s.sha256, "bytes": s.bytes} if s.sha256 else {})}
                                 for s in cut.skipped],
            "notes": cut.notes,
        })
    return {
        "schema": SCHEMA,
        "id": export_id,
        "created": both(created, tz),
        "exported_by": {"user": user, "via": via, "host": socket.gethostname()},
        "software": {"name": "sharpeye", "version": software_version()},
        "model": {"name": cfg.model.name, "providers": list(cfg.model.providers)},
        "time_zone": zone_name(tz),
        "requested": {"start": both(req.start, tz), "end": both(req.end, tz),
                      "seconds": round(req.end - req.start, 3)},
        "precise": req.precise,
        "case": req.case,
        "alert": req.alert,
        "cameras": cameras,
        "timeline": "each file's time 0 is its first frame (actual.start); a hole in the recording is a jump of "
                    "the same length in the file's clock",
        "signature": signing_block(key),
    }


def _source_hash(cut: CameraCut, seg: SegmentInfo) -> dict[str, Any]:
    """A used segment's size and sha256 as the cut read them (the catalogue's size when, oddly, none was taken)."""
    h = cut.hashes.get(seg.path)
    return {"bytes": h.bytes, "sha256": h.sha256} if h is not None else {"bytes": seg.bytes}


def _gaps(cut: CameraCut, catalog: Recordings, start: float, end: float, fetched: bool = False,
          moves: list[Gap] | None = None) -> list[Gap]:
    """The holes of the range: recorded gaps with their reasons, skipped corrupt segments, unrecorded time,
    and (cluster) where the camera moved between machines."""
    out = list(catalog.gaps(cut.camera, start, end, GAP_JOIN_S))
    if fetched:  # this machine's "not recorded" holes may be time another machine recorded: computed below
        out = [g for g in out if g.reason != "not recorded"]
    out += [Gap(max(g.start, start), min(g.end, end), g.reason) for g in moves or [] if g.start < end and g.end > start]
    out += [Gap(max(s.start, start), min(s.end, end), f"corrupt segment skipped ({s.reason})") for s in cut.skipped]
    covered = sorted([(max(s.start, start), min(s.end, end)) for s in cut.used] + [(g.start, g.end) for g in out])
    t = start
    for s, e in covered:  # what neither a segment nor a gap covers (the segment still being written)
        if s - t > GAP_JOIN_S:
            out.append(Gap(t, s, "not recorded"))
        t = max(t, e)
    if end - t > GAP_JOIN_S:
        out.append(Gap(t, end, "not on disk yet (still being recorded) or not recorded"))
    return sorted(out, key=lambda g: g.start)


def _warnings(doc: dict[str, Any]) -> list[str]:
    out = []
    for cam in doc["cameras"]:
        if not cam["files"]:
            out.append(f"{cam['id']}: nothing recorded in the range: no file")
        for g in cam["gaps"]:
            out.append(f"{cam['id']}: gap {g['start']['local']} to {g['end']['local']} ({g['seconds']:.1f} s): "
                       f"{g['reason']}")
        for s in cam["skipped_segments"]:
            out.append(f"{cam['id']}: corrupt segment skipped: {s['path']}: {s['reason']}")
        out += [f"{cam['id']}: {n}" for n in cam["notes"]]
    return out
