"""Segments another machine holds, fetched into a local cache so the cutter can read them like its own.

When a camera moved between workers (cluster ownership), its recording of a range is split over their
disks.  :class:`SegmentFetcher` completes a camera's local segment list for a range: it asks the
catalogue (``lookup``, given by the caller: the dashboard's history database; this module knows
no database) which segments exist, keeps the local ones, and fetches each missing one from the
worker that holds it (``pipeline/record/serve.py``: a signed GET) into
``<data_dir>/cache/segments/<camera>/<date>/<hour>/<name>``, checking its size and sha256 before
it is used.  The cut code is unchanged: it reads local files.

A segment that cannot be fetched (its worker is down, the key differs, the file was deleted by
its retention, the bytes do not match) is left out and said in ``notes``; the time it covered is a
hole in the export like any other, and the manifest lists it.  Copies in the cache are kept
``CACHE_KEEP_S`` after their last use and then deleted by the next fetch.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import http.client
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.record.layout import Gap, SegmentInfo
from pipeline.record.serve import (
    SegmentRefused,
    catalogue_signature,
    load_or_create_key,
    segment_relpath,
    signed_path,
)

log = logging.getLogger(__name__)

CACHE_DIR = Path("cache") / "segments"  # under data_dir
CACHE_KEEP_S = 24 * 3600.0
TIMEOUT_S = 30.0
OVERLAP_S = 0.05  # a catalogue row this close to a segment already chosen is the same time recorded twice


@dataclass(frozen=True)
class RemoteSegment:
    """One catalogue row: a finished segment and the worker that holds it."""

    camera: str
    start: float
    end: float
    name: str
    bytes: int
    worker: str
    address: str
    sha256: str | None = None
    token: int | None = None
    sig: str | None = None  # the worker's HMAC of the row with the site key

    def signed_by(self, key: builtins.bytes) -> bool:  # (``bytes`` is a field here)
        want = catalogue_signature(key, self.camera, self.start, self.end, self.bytes, self.name, self.sha256 or "",
                                   self.worker, self.token, self.address)
        return bool(self.sig) and hmac.compare_digest(want, self.sig or "")


Lookup = Callable[[str, float, float], Sequence[RemoteSegment]]


class FetchError(Exception):
    pass


class SegmentFetcher:
    """Completes a camera's local segments for a range from the catalogue; ``origin`` says who held each copy."""

    def __init__(self, data_dir: str | Path, lookup: Lookup, key: bytes | None = None, timeout_s: float = TIMEOUT_S,
                 key_file: str | Path | None = None):
        """``key`` or ``key_file`` (the config's, ``pipeline.record.serve.key_path``): the site key, read on
        first use."""
        if key is None and key_file is None:
            raise ValueError("a fetcher needs the site key or its file (cluster.segment_key_file)")
        self.data_dir = Path(data_dir)
        self.cache = self.data_dir / CACHE_DIR
        self.lookup = lookup
        self._key = key
        self.key_file = Path(key_file) if key_file is not None else None
        self.timeout_s = timeout_s
        self.origin: dict[Path, RemoteSegment] = {}  # cached copy → where it came from
        self.notes: dict[str, list[str]] = {}  # camera → sentences for the manifest
        self.moves: dict[str, list[Gap]] = {}  # camera → the holes where its recording passed between machines
        self.fetched = 0
        self.fetched_bytes = 0
        self.reused = 0

    @property
    def key(self) -> bytes:
        if self._key is None:
            assert self.key_file is not None
            self._key = load_or_create_key(self.key_file)
        return self._key

    def complete(self, camera: str, start: float, end: float, local: Sequence[SegmentInfo]) -> list[SegmentInfo]:
        """``local`` plus fetched copies of the catalogue's segments covering time the local ones do not."""
        try:
            rows = list(self.lookup(camera, start, end))
        except Exception as e:  # the database is down: the export still has the local recordings
            self._note(camera, f"the recording catalogue could not be read ({e}): only this machine's "
                               "recordings are exported")
            return list(local)
        chosen: list[SegmentInfo] = list(local)
        # the newest owner first where two claim the same time (a recording under a stale token)
        for row in sorted(rows, key=lambda r: (-(r.token or 0), r.start)):
            if row.end <= start or row.start >= end or _covered(chosen, row):
                continue
            if not row.signed_by(self.key):
                self._note(camera, f"segment {row.name} ({row.start:.3f} to {row.end:.3f}) announced for worker "
                                   f"{row.worker} is not signed with this site's key: not fetched")
                log.warning("camera %s: %s", camera, self.notes[camera][-1])
                continue
            try:
                info = self._get(row)
            except FetchError as e:
                self._note(camera, f"segment {row.name} ({row.start:.3f} to {row.end:.3f}) held by worker "
                                   f"{row.worker} at {row.address} could not be fetched: {e}")
                log.warning("camera %s: %s", camera, self.notes[camera][-1])
                continue
            chosen.append(info)
        chosen.sort(key=lambda s: s.start)
        self._hand_overs(camera, chosen)
        self._prune()
        return chosen

    def holder(self, seg: SegmentInfo) -> str:
        row = self.origin.get(seg.path)
        return f"worker {row.worker}" if row is not None else "this machine"

    def _hand_overs(self, camera: str, segs: Sequence[SegmentInfo]) -> None:
        """Where the recording passes from one machine to another, say so (the hole there is the move's)."""
        self.moves[camera] = []
        for a, b in zip(segs, segs[1:]):
            if self.holder(a) != self.holder(b):
                self._note(camera, f"recorded by {self.holder(a)} up to {a.end:.3f}, by {self.holder(b)} from "
                                   f"{b.start:.3f} (the camera moved; {max(0.0, b.start - a.end):.3f} s between)")
                if b.start - a.end > OVERLAP_S:  # listed however short: the file's clock jumps there
                    self.moves[camera].append(Gap(a.end, b.start, f"camera moved from {self.holder(a)} to "
                                                                  f"{self.holder(b)}: not recorded meanwhile"))

    def _note(self, camera: str, text: str) -> None:
        self.notes.setdefault(camera, []).append(text)

    def _get(self, row: RemoteSegment) -> SegmentInfo:
        """The segment in the cache (fetched now unless a verified copy is there)."""
        try:
            dest = self.cache / segment_relpath(row.camera, row.name)
        except SegmentRefused as e:
            raise FetchError(f"the catalogue names no valid segment: {e}") from None
        if dest.is_file() and dest.stat().st_size == row.bytes:
            os.utime(dest)  # a copy verified when it was fetched; in use again
            self.reused += 1
        else:
            self._fetch(row, dest)
        info = SegmentInfo(row.camera, row.start, row.end, dest, row.bytes)
        self.origin[dest] = row
        return info

    def _fetch(self, row: RemoteSegment, final: Path) -> None:
        folder = final.parent
        folder.mkdir(parents=True, exist_ok=True)
        part = folder / f".{row.name}.{os.getpid()}.{threading.get_ident()}.part"
        u = urlsplit(row.address)
        if u.scheme != "http" or not u.hostname:
            raise FetchError(f"the worker's address {row.address!r} is not http://host:port")
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=self.timeout_s)
        digest = hashlib.sha256()
        got = 0
        try:
            conn.request("GET", signed_path(self.key, row.camera, row.name))
            resp = conn.getresponse()
            if resp.status != 200:
                raise FetchError(f"HTTP {resp.status}: {resp.read(300).decode(errors='replace').strip()}")
            with open(part, "wb") as f:
                while chunk := resp.read(1 << 20):
                    digest.update(chunk)
                    f.write(chunk)
                    got += len(chunk)
        except (OSError, http.client.HTTPException) as e:
            part.unlink(missing_ok=True)
            raise FetchError(f"{type(e).__name__}: {e}") from None
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        finally:
            conn.close()
        if got != row.bytes:
            part.unlink(missing_ok=True)
            raise FetchError(f"got {got} bytes, the catalogue says {row.bytes}")
        if row.sha256 and digest.hexdigest() != row.sha256:
            part.unlink(missing_ok=True)
            raise FetchError(f"sha256 {digest.hexdigest()} differs from the catalogue's {row.sha256}")
        os.replace(part, final)
        self.fetched += 1
        self.fetched_bytes += got
        log.info("camera %s: fetched segment %s (%d bytes) from worker %s", row.camera, row.name, got, row.worker)

    def _prune(self) -> None:
        """Copies unused for a day go (the workers keep the originals); empty folders with them."""
        if not self.cache.is_dir():
            return
        cutoff = time.time() - CACHE_KEEP_S
        for cam in self.cache.iterdir():
            for path in cam.glob("*/*/*.mp4"):
                try:
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                except OSError:
                    continue
            for hour in sorted(cam.glob("*/*"), reverse=True):
                try:
                    hour.rmdir()
                    hour.parent.rmdir()
                except OSError:
                    continue

    def clear(self) -> None:
        """Remove the whole cache (tests, and an operator freeing space)."""
        shutil.rmtree(self.cache, ignore_errors=True)


def _covered(chosen: Sequence[SegmentInfo], row: RemoteSegment) -> bool:
    """Whether a segment already chosen overlaps the row (the same time is never cut twice)."""
    return any(s.start < row.end - OVERLAP_S and row.start < s.end - OVERLAP_S for s in chosen)


def relative_name(path: Path, roots: Sequence[Path]) -> str:
    """A segment's path as the manifest shows it: relative to the recordings or the fetch cache."""
    for root in roots:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            continue
    return path.name
