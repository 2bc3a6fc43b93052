"""A worker's finished segments, read-only over HTTP, for the machines that export or cut clips.

When a camera moves between machines its recording is split: each worker keeps the segments it
wrote.  The dashboard (clips, page exports) and ``sharpeye export`` find the missing pieces in the
catalogue (``pipeline/record/announce.py``) and fetch them here:

    GET /segment/<camera>/<segment name>?exp=<epoch s>&sig=<hex>     → 200 the file, or 4xx

Why HTTP on its own port rather than an op of the live seam: the seam is a framed stream protocol
for the dashboard; a segment is a file, and an HTTP GET is what any tool (``curl``) can check.
Why signed requests rather than a bearer token: the site key never crosses the network,
a captured URL fetches only that one file and only for ``SIGN_TTL_S`` seconds.

The fence against reading anything else: the camera id and the name must match their patterns
(``<start>-<duration>.mp4`` of a finished segment; never a ``.part`` file, never a folder), the path
is built from them (``<camera>/<UTC date>/<UTC hour>/<name>``, as the writer names it), resolved,
and must lie under the recordings folder; only regular files are served.  Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from pipeline.config.schema import CAMERA_ID, Config, split_hostport
from pipeline.record.layout import SEGMENT_RE, hour_dir, parse_segment_name

log = logging.getLogger(__name__)

KEY_NAME = Path("cluster") / "segment.key"
SIGN_TTL_S = 300.0  # a signed URL is good this long (clocks of a site are NTP-synchronised within seconds)
CHUNK = 1 << 20
_CAMERA = re.compile(CAMERA_ID.rstrip("$").lstrip("^"))


class SegmentRefused(ValueError):
    """A request that names no finished segment of this worker (bad name, outside the folder, not there)."""


def key_path(cfg: Config) -> Path:
    """The site key's file: ``cluster.segment_key_file`` (relative to the config's folder), else
    ``<data_dir>/cluster/segment.key``.  Every process that signs or checks reads it from here."""
    name = cfg.cluster.segment_key_file
    if name is None:
        return cfg.data_path() / KEY_NAME
    p = Path(name).expanduser()
    return p if p.is_absolute() else (cfg.base_dir() / p).resolve()


def load_or_create_key(path: str | Path) -> bytes:
    """The site's key (32 random bytes, base64 in a 0600 file ``path``), made on first use.

    Every machine of a site needs the same file (copy it, as the Redis password is copied); a
    machine with another key is refused (403) and says so in its log.
    """
    path = Path(path)
    try:
        return base64.b64decode(path.read_text().strip(), validate=True)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    try:
        os.link(tmp, path)  # never replaces a key another process made meanwhile
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return base64.b64decode(path.read_text().strip(), validate=True)


def _message(camera: str, name: str, exp: int) -> bytes:
    return f"GET\n{camera}\n{name}\n{exp}".encode()


def signed_path(key: bytes, camera: str, name: str, now: float | None = None) -> str:
    """The request path (with its expiry and signature) that fetches one segment."""
    exp = int((time.time() if now is None else now) + SIGN_TTL_S)
    sig = hmac.new(key, _message(camera, name, exp), hashlib.sha256).hexdigest()
    return f"/segment/{quote(camera, safe='')}/{quote(name, safe='')}?exp={exp}&sig={sig}"


def expiry_problem(exp: int, ttl_s: float, now: float | None = None) -> str | None:
    """Why a signature's expiry time (epoch seconds) is not good now: past, or further ahead than one signed now
    (``ttl_s``) allowing 60 s of clock skew between hosts; None when it is good."""
    t = time.time() if now is None else now
    if exp < t:
        return "expired"
    if exp > t + ttl_s + 60:
        return "expiry too far ahead"
    return None


def check_signature(key: bytes, camera: str, name: str, exp: str, sig: str, now: float | None = None) -> str | None:
    """None when the signature holds and has not expired, else why not."""
    try:
        e = int(exp)
    except ValueError:
        return "bad expiry"
    if problem := expiry_problem(e, SIGN_TTL_S, now):
        return problem
    want = hmac.new(key, _message(camera, name, e), hashlib.sha256).hexdigest()
    return None if hmac.compare_digest(want, sig) else "bad signature"


def catalogue_signature(key: bytes, camera: str, start: float, end: float, size: int, name: str, sha256: str,
                        worker: str, token: int | None, address: str) -> str:
    """HMAC of a catalogue row as its worker announced it: a process that can write to the bus but has
    no site key cannot add a row that sends a fetcher elsewhere or vouches for other bytes."""
    text = "\n".join([camera, f"{start:.3f}", f"{end:.3f}", str(size), name, sha256, worker,
                      "" if token is None else str(token), address])
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def segment_relpath(camera: str, name: str) -> Path:
    """``<camera>/<date>/<hour>/<name>`` of a finished segment; SegmentRefused when a name is not one of ours."""
    if not _CAMERA.fullmatch(camera):
        raise SegmentRefused(f"camera id {camera!r} is not valid")
    parsed = parse_segment_name(name) if SEGMENT_RE.fullmatch(name) else None
    if parsed is None:
        raise SegmentRefused(f"{name!r} is not the name of a finished segment")
    return hour_dir(Path(), camera, parsed[0]) / name


def segment_file(recordings_dir: Path, camera: str, name: str) -> Path:
    """The finished segment ``name`` of ``camera`` under ``recordings_dir``; SegmentRefused for anything else."""
    rel = segment_relpath(camera, name)
    base = Path(recordings_dir).resolve()
    path = (base / rel).resolve()
    if not path.is_relative_to(base) or path == base:
        raise SegmentRefused(f"{camera}/{name} would leave the recordings folder")
    if not path.is_file():
        raise SegmentRefused(f"no segment {camera}/{name} here")
    return path


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        log.debug("segment server: " + format, *args)

    def _refuse(self, code: int, why: str) -> None:
        body = (why + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        srv = self.server.owner
        url = urlsplit(self.path)
        parts = url.path.split("/")
        if len(parts) != 4 or parts[0] != "" or parts[1] != "segment":
            self._refuse(404, "not found")
            return
        camera, name = unquote(parts[2]), unquote(parts[3])
        q = parse_qs(url.query)
        exp, sig = (q.get("exp") or [""])[0], (q.get("sig") or [""])[0]
        if not sig:
            srv.refused += 1
            self._refuse(401, "a signed request is needed (exp, sig)")
            return
        why = check_signature(srv.key, camera, name, exp, sig)
        if why is not None:
            srv.refused += 1
            log.warning("segment server: refused %s/%s from %s: %s (is the site key %s the same on every "
                        "machine?)", camera[:64], name[:64], self.client_address[0], why, srv.key_file)
            self._refuse(403, why)
            return
        try:
            path = segment_file(srv.recordings_dir, camera, name)
            f = open(path, "rb")
        except SegmentRefused as e:
            self._refuse(404, str(e))
            return
        except OSError as e:  # deleted by retention between the check and the open
            self._refuse(404, f"cannot read {camera}/{name}: {e.strerror}")
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if self.command == "HEAD":
                return
            try:
                shutil.copyfileobj(f, self.wfile, CHUNK)
            except OSError:
                return  # the fetcher left; it verifies the size anyway
        srv.served += 1


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: SegmentServer


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


def bind_address(listen: str, index: int = 0) -> tuple[str, int]:
    """(host, port) a server of worker process ``index`` binds for a ``host:port`` setting: port 0 stays
    0 (a free port), a fixed port is process 0's and process I takes port + I (several worker processes
    of one machine share the config)."""
    host, port = split_hostport(listen)
    return host, (port + index if port else 0)


def advertised_host(bound_host: str, advertise_host: str | None) -> str:
    """The host other machines dial: ``cluster.advertise_host`` (or ``--advertise-host``), else the bound
    host, or this machine's name when bound to every interface."""
    if advertise_host:
        return advertise_host.strip("[]")
    return socket.gethostname() if bound_host in ("", "0.0.0.0", "::") else bound_host


def host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class SegmentServer:
    """Serves this worker's finished segments to holders of the site key; ``address`` is what it announces."""

    def __init__(self, recordings_dir: str | Path, key_file: str | Path, listen: str = "127.0.0.1:0",
                 advertise_host: str | None = None, index: int = 0):
        self.recordings_dir = Path(recordings_dir)
        self.listen = listen  # cluster.segment_listen
        self.advertise_host = advertise_host  # cluster.advertise_host / --advertise-host
        self.index = index  # the worker process's shard index on its machine (fixed port + index)
        self.key_file = Path(key_file)
        self.key = b""
        self.address = ""
        self.served = 0
        self.refused = 0
        self._http: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Listen; returns the announced ``http://host:port``.  Raises OSError when the port cannot be bound."""
        self.key = load_or_create_key(self.key_file)
        host, port = bind_address(self.listen, self.index)
        http = (_HTTPServer6 if ":" in host else _HTTPServer)((host, port), _Handler)
        http.owner = self
        self._http = http
        bound = http.server_address[1]
        self.address = f"http://{host_in_url(advertised_host(host, self.advertise_host))}:{bound}"
        self._thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="segment-server", daemon=True)
        self._thread.start()
        log.info("segment server: %s on %s:%d serves %s", self.address, host, bound, self.recordings_dir)
        return self.address

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None
