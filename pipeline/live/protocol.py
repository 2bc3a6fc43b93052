"""The live seam between a stream worker and the dashboard: endpoint files, message framing, a small client.

Standard library only: the dashboard imports this module (as it imports ``pipeline.publish.bus``),
never the worker's code.  The full description, with an example session, is in docs/live.md.

* Each worker listens on a loopback TCP port and writes ``<data_dir>/run/live/shard<N>.json``
  (mode 0600, folder 0700): ``{"host", "port", "token", "pid", "shard"}``.  Whoever can read the
  file may watch; a connection without the token is refused.
* A request is one JSON line: ``{"token": ..., "op": "stream", "camera": ID, "stream": "sub"|"main",
  "format": "fmp4"|"jpeg"}``, ``{"token": ..., "op": "stats"}`` or ``{"token": ..., "op": "finish",
  "camera": ID, "wait_s": 2.0}`` (finish the camera's open recording segment at its next keyframe, so
  the clip of an open alert reaches about now; answered ``A {"recorded_to": epoch s | null}``).
* Every answer is a sequence of messages ``KIND (1 byte) | LENGTH (4 bytes, big endian) | PAYLOAD``.
  Kinds: ``A`` accepted (JSON), ``H`` hello (JSON: codec, size, stream; again whenever a new
  timeline starts), ``I`` init segment, ``F`` fragment (moof+mdat, one frame), ``O`` overlay (JSON:
  media time and objects), ``J`` JPEG picture, ``S`` stats (JSON), ``E`` error (JSON ``{"code"}``,
  then the connection closes).
* A worker that does not run the camera answers ``E {"code": "not_here"}``; the client tries the
  next endpoint.
* Across machines (``cluster.enabled``): a worker also announces its seam in Redis,
  ``P:cluster:live`` (hash, worker id → JSON ``{"host", "port", "shard", "pid", "at"}``), bound on
  ``cluster.live_listen``.  A dashboard of another machine cannot read the endpoint file, so it
  finds the camera's owner from the lease key and signs each request with the site key instead of
  the token: ``"auth": {"exp", "nonce", "sig"}``, ``sig`` = HMAC-SHA256 of
  ``live\n<worker id>\n<op>\n<camera>\n<exp>\n<nonce>``.  The worker accepts a signature once
  (nonce) until ``exp`` (at most ``AUTH_TTL_S`` ahead); the key never crosses the network and a
  captured request opens nothing again.  One reader per camera serves every viewer; the worker starts producing when the
  first viewer arrives and stops a few seconds after the last one left.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import secrets
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.record.serve import expiry_problem

ACCEPTED = b"A"
HELLO = b"H"
INIT = b"I"
FRAGMENT = b"F"
OVERLAY = b"O"
JPEG = b"J"
STATS = b"S"
ERROR = b"E"
KINDS = frozenset({ACCEPTED, HELLO, INIT, FRAGMENT, OVERLAY, JPEG, STATS, ERROR})
JSON_KINDS = frozenset({ACCEPTED, HELLO, OVERLAY, STATS, ERROR})
HEADER = struct.Struct(">cI")
MAX_MESSAGE = 32 * 2**20  # a 4K keyframe is a few MB; anything bigger is a broken peer
MAX_REQUEST = 4096
STREAMS = ("sub", "main")
FORMATS = ("fmp4", "jpeg")
AUTH_TTL_S = 30.0  # a signed request is good this long (a site's clocks agree within seconds: NTP)


class LiveError(Exception):
    """The seam refused or failed; ``code`` is what the dashboard reports (not_here, unavailable, ...)."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


def endpoint_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / "run" / "live"


def endpoint_file(data_dir: str | Path, shard: int) -> Path:
    return endpoint_dir(data_dir) / f"shard{shard}.json"


@dataclass(frozen=True)
class Endpoint:
    """Where a worker's seam listens and how to be let in: the local file's ``token``, or (``key`` set:
    a worker of another machine, found in Redis) requests signed with the site key for ``worker``."""

    host: str
    port: int
    token: str
    shard: int
    pid: int
    key: bytes | None = None
    worker: str = ""


def cluster_key(prefix: str) -> str:
    """The Redis hash of announced seams: worker id → JSON ``{"host", "port", "shard", "pid", "at"}``."""
    return f"{prefix}:cluster:live"


def announcement(host: str, port: int, shard: int, pid: int, at: float | None = None) -> str:
    return json.dumps({"host": host, "port": port, "shard": shard, "pid": pid,
                       "at": round(time.time() if at is None else at, 3)}, separators=(",", ":"))


def announced(worker: str, raw: bytes | str | None, key: bytes) -> Endpoint | None:
    """The endpoint a worker announced (``cluster_key``), to be dialled with signed requests; None if unreadable."""
    if raw is None:
        return None
    try:
        d = json.loads(raw)
        return Endpoint(str(d["host"]), int(d["port"]), "", int(d.get("shard", 0)), int(d.get("pid", 0)),
                        key=key, worker=worker)
    except (ValueError, KeyError, TypeError):
        return None


def _auth_message(worker: str, op: str, camera: str, exp: int, nonce: str) -> bytes:
    return f"live\n{worker}\n{op}\n{camera}\n{exp}\n{nonce}".encode()


def sign_request(key: bytes, worker: str, op: str, camera: str, now: float | None = None) -> dict[str, Any]:
    """The ``auth`` of one request to ``worker``: good once, for ``AUTH_TTL_S`` seconds."""
    exp = int((time.time() if now is None else now) + AUTH_TTL_S)
    nonce = secrets.token_hex(16)
    sig = hmac.new(key, _auth_message(worker, op, camera, exp, nonce), hashlib.sha256).hexdigest()
    return {"exp": exp, "nonce": nonce, "sig": sig}


def check_request(key: bytes, worker: str, op: str, camera: str, auth: Any, now: float | None = None) -> str | None:
    """None when ``auth`` is a good signature of this request for this worker, not expired; else why not.
    (Whether its nonce was seen before is the server's to check.)"""
    if not isinstance(auth, dict):
        return "no auth"
    try:
        exp, nonce, sig = int(auth["exp"]), str(auth["nonce"]), str(auth["sig"])
    except (KeyError, TypeError, ValueError):
        return "bad auth"
    if problem := expiry_problem(exp, AUTH_TTL_S, now):
        return problem
    if not 16 <= len(nonce) <= 64:
        return "bad nonce"
    want = hmac.new(key, _auth_message(worker, op, camera, exp, nonce), hashlib.sha256).hexdigest()
    return None if hmac.compare_digest(want, sig) else "bad signature"


def endpoints(data_dir: str | Path) -> list[Endpoint]:
    """Every worker endpoint written under ``data_dir`` (stale ones are found out on connecting)."""
    out = []
    for path in sorted(endpoint_dir(data_dir).glob("shard*.json")):
        try:
            d = json.loads(path.read_text())
            out.append(Endpoint(str(d["host"]), int(d["port"]), str(d["token"]), int(d["shard"]), int(d["pid"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being replaced, or not ours
    return out


def write_endpoint(data_dir: str | Path, ep: Endpoint) -> Path:
    """Write an endpoint file 0600 in a 0700 folder, atomically (a reader never sees half a token)."""
    folder = endpoint_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    path = endpoint_file(data_dir, ep.shard)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"host": ep.host, "port": ep.port, "token": ep.token, "shard": ep.shard, "pid": ep.pid}, f)
    os.replace(tmp, path)
    return path


def pack(kind: bytes, payload: bytes) -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def pack_json(kind: bytes, obj: Any) -> bytes:
    return pack(kind, json.dumps(obj, separators=(",", ":")).encode())


def request_line(ep: Endpoint, **req: Any) -> bytes:
    if ep.key is not None:
        auth = sign_request(ep.key, ep.worker, str(req.get("op", "stream")), str(req.get("camera", "")))
        return json.dumps({"auth": auth, **req}).encode() + b"\n"
    return json.dumps({"token": ep.token, **req}).encode() + b"\n"


def _targets(where: str | Path | Sequence[Endpoint]) -> list[Endpoint]:
    """The endpoints to try: the files under a data directory, or the ones given (found in Redis)."""
    if isinstance(where, (str, Path)):
        return endpoints(where)
    return list(where)


# ------------------------------------------------------------------------------ blocking client (tools, tests)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise LiveError("closed", "the worker closed the connection")
        buf += chunk
    return bytes(buf)


def read_message(sock: socket.socket) -> tuple[bytes, bytes]:
    kind, size = HEADER.unpack(_recv_exact(sock, HEADER.size))
    if kind not in KINDS or size > MAX_MESSAGE:
        raise LiveError("protocol", f"bad message {kind!r} of {size} bytes")
    return kind, _recv_exact(sock, size)


def stats(data_dir: str | Path | Sequence[Endpoint], timeout: float = 3.0) -> dict[str, Any]:
    """Every worker's live taps: ``{camera: {stream: {...}}}`` merged over the endpoints that answer."""
    out: dict[str, Any] = {}
    for ep in _targets(data_dir):
        try:
            with socket.create_connection((ep.host, ep.port), timeout=timeout) as s:
                s.sendall(request_line(ep, op="stats"))
                kind, payload = read_message(s)
        except (OSError, LiveError):
            continue
        if kind == STATS:
            out.update(json.loads(payload)["cameras"])
    return out


def finish_recording(data_dir: str | Path | Sequence[Endpoint], camera: str, wait_s: float = 2.0) -> float | None:
    """Ask the worker that runs ``camera`` to finish its open segment; returns where the recording now ends.

    ``data_dir``: the local endpoint files' data directory, or the endpoints to try (cluster: the owner's).

    Blocking (the dashboard calls it from a worker thread, before cutting an open alert's clip).
    Raises :class:`LiveError` (``not_running``, ``not_recording``, ...) when no worker can.
    """
    last = LiveError("unavailable", "no worker offers live video (is `sharpeye run` running?)")
    for ep in _targets(data_dir):
        try:
            with socket.create_connection((ep.host, ep.port), timeout=3.0) as s:
                s.settimeout(wait_s + 3.0)
                s.sendall(request_line(ep, op="finish", camera=camera, wait_s=wait_s))
                kind, payload = read_message(s)
        except (OSError, LiveError):
            continue  # a stale endpoint file
        d = json.loads(payload)
        if kind == ERROR:
            if d.get("code") == "not_here":
                last = LiveError("not_running", f"no worker runs camera {camera}")
                continue
            raise LiveError(str(d.get("code", "error")), str(d.get("detail", "")))
        end = d.get("recorded_to")
        return float(end) if end is not None else None
    raise last


# ------------------------------------------------------------------------------ asyncio client (the dashboard)


class LiveStream:
    """One viewer's connection to the worker that runs a camera; ``accepted`` is the worker's first answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, accepted: dict[str, Any]):
        self.reader = reader
        self.writer = writer
        self.accepted = accepted

    async def read(self) -> tuple[bytes, bytes]:
        """The next message; raises :class:`LiveError` when the worker closed or sent an error."""
        try:
            head = await self.reader.readexactly(HEADER.size)
            kind, size = HEADER.unpack(head)
            if kind not in KINDS or size > MAX_MESSAGE:
                raise LiveError("protocol", f"bad message {kind!r} of {size} bytes")
            payload = await self.reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            raise LiveError("closed", str(e)) from None
        if kind == ERROR:
            d = json.loads(payload)
            raise LiveError(str(d.get("code", "error")), str(d.get("detail", "")))
        return kind, payload

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def open_stream(data_dir: str | Path | Sequence[Endpoint], camera: str, stream: str = "sub",
                      fmt: str = "fmp4", timeout: float = 3.0) -> LiveStream:
    """Connect to the worker that runs ``camera``; raises ``LiveError('unavailable')`` when none does.

    ``data_dir``: the local endpoint files' data directory, or the endpoints to try (cluster: the owner's)."""
    if stream not in STREAMS or fmt not in FORMATS:
        raise LiveError("bad_request", f"stream must be one of {STREAMS}, format one of {FORMATS}")
    last = LiveError("unavailable", "no worker offers live video (is `sharpeye run` running?)")
    for ep in _targets(data_dir):
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(ep.host, ep.port), timeout)
        except (TimeoutError, OSError):
            continue  # a stale file of a worker that is gone
        conn = LiveStream(reader, writer, {})
        try:
            writer.write(request_line(ep, op="stream", camera=camera, stream=stream, format=fmt))
            await writer.drain()
            kind, payload = await asyncio.wait_for(conn.read(), timeout)
        except LiveError as e:
            await conn.close()
            if e.code == "not_here":
                last = LiveError("not_running", f"no worker runs camera {camera}")
                continue
            last = e
            if e.code != "closed":
                break
            continue
        except (TimeoutError, OSError):
            await conn.close()
            continue
        if kind != ACCEPTED:
            await conn.close()
            raise LiveError("protocol", f"expected an accept, got {kind!r}")
        conn.accepted = json.loads(payload)
        return conn
    raise last
