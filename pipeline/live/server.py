"""The worker's side of the live seam: its cameras' taps behind a small authenticated loopback endpoint.

One :class:`LiveService` per worker process.  The worker registers each camera it runs
(:meth:`LiveService.camera`), feeds packets through the returned :class:`~.tap.LiveCamera` and tells
it about analysed frames; the service answers viewers (the dashboard) on ``127.0.0.1:<port>``,
a thread per viewer, and writes ``<data_dir>/run/live/shard<N>.json`` (0600, folder 0700) with the
port and a random token, so only a process that can read the worker's data directory can watch.

Loopback TCP rather than a Unix socket: a socket path must fit 107 bytes, a data directory need not.

Across machines (``cluster.enabled``) the worker binds ``cluster.live_listen`` instead and gives the
site key: a request may then carry a signature (``protocol.sign_request``) for this worker's id
instead of the file's token; each signature is taken once (its nonce is remembered until it
expires).  The worker announces ``address`` in Redis; this module knows no Redis.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import select
import socket
import socketserver
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.live import protocol
from pipeline.live.tap import LINGER_S, LiveCamera

log = logging.getLogger(__name__)
HOUSEKEEPING_S = 0.5
SEND_TIMEOUT_S = 10.0
FINISH_WAIT_S = 2.0  # a keyframe interval of most cameras; the clip is cut with what is finished by then
FINISH_WAIT_MAX_S = 5.0


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    service: LiveService


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Viewer(socketserver.BaseRequestHandler):
    """One connection: a request line, then messages until either side leaves."""

    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        svc = self.server.service
        sock.settimeout(5.0)
        try:
            req = json.loads(_read_line(sock))
        except (OSError, ValueError) as e:
            _send_error(sock, "bad_request", str(e))
            return
        why = svc.refusal(req)
        if why is not None:
            log.warning("live view: refused a request from %s: %s", self.client_address[0], why)
            _send_error(sock, "bad_token")
            return
        op = req.get("op", "stream")
        if op == "stats":
            sock.sendall(protocol.pack_json(protocol.STATS, {"shard": svc.shard, "cameras": svc.stats()}))
            return
        if op == "finish":
            _finish(sock, svc, req)
            return
        if op != "stream":
            _send_error(sock, "bad_request", f"unknown op {op!r}")
            return
        camera, stream, fmt = req.get("camera"), req.get("stream", "sub"), req.get("format", "fmp4")
        if stream not in protocol.STREAMS or fmt not in protocol.FORMATS:
            _send_error(sock, "bad_request", "bad stream or format")
            return
        cam = svc.cameras.get(str(camera))
        if cam is None:
            _send_error(sock, "not_here")
            return
        tap = cam.tap(stream)
        sock.settimeout(SEND_TIMEOUT_S)
        sock.sendall(protocol.pack_json(protocol.ACCEPTED, {"camera": camera, "stream": tap.stream,
                                                            "asked": stream, "format": fmt, "shard": svc.shard,
                                                            "worker": svc.worker_id}))
        sub = tap.subscribe(fmt)
        cpu0, wall0 = time.thread_time(), time.monotonic()

        def account() -> None:  # what this viewer costs the worker (sending), in the tap's stats
            nonlocal cpu0, wall0
            cpu, wall = time.thread_time(), time.monotonic()
            tap.add_counts(send_cpu_us=int((cpu - cpu0) * 1e6), viewer_ms=int((wall - wall0) * 1000))
            cpu0, wall0 = cpu, wall

        try:
            while not svc.stopping.is_set():
                if time.monotonic() - wall0 >= 1.0:
                    account()
                msg = sub.get(0.5)
                if msg is None:
                    if sub.closed:
                        if sub.reason not in ("left",):
                            _send_error(sock, sub.reason)
                        return
                    if _peer_gone(sock):
                        return
                    continue
                sock.sendall(protocol.pack(*msg))
        except OSError:
            return  # the viewer left
        finally:
            account()
            tap.unsubscribe(sub)


def _finish(sock: socket.socket, svc: LiveService, req: dict[str, Any]) -> None:
    """Finish a camera's open recording segment at its next keyframe; answers where the recording ends."""
    cam = svc.cameras.get(str(req.get("camera")))
    if cam is None:
        _send_error(sock, "not_here")
        return
    if cam.recorder is None:
        _send_error(sock, "not_recording")
        return
    try:
        wait = min(max(float(req.get("wait_s", FINISH_WAIT_S)), 0.0), FINISH_WAIT_MAX_S)
    except (TypeError, ValueError):
        _send_error(sock, "bad_request", "wait_s must be a number")
        return
    t0 = time.monotonic()
    end = cam.recorder(wait)
    sock.sendall(protocol.pack_json(protocol.ACCEPTED, {"camera": cam.camera_id, "recorded_to": end,
                                                        "waited_s": round(time.monotonic() - t0, 3)}))


def _read_line(sock: socket.socket) -> bytes:
    buf = bytearray()
    while not buf.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        buf += chunk
        if len(buf) > protocol.MAX_REQUEST:
            raise ValueError("request too long")
    return bytes(buf)


def _send_error(sock: socket.socket, code: str, detail: str = "") -> None:
    try:
        sock.sendall(protocol.pack_json(protocol.ERROR, {"code": code, "detail": detail}))
    except OSError:
        pass


def _peer_gone(sock: socket.socket) -> bool:
    """True when the viewer closed its end (checked while no video flows, e.g. the camera is offline)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class LiveService:
    """The live taps of one worker's cameras and the endpoint viewers reach them through."""

    def __init__(self, data_dir: str | Path, shard: int = 0, linger_s: float = LINGER_S,
                 bind: tuple[str, int] = ("127.0.0.1", 0), advertise_host: str | None = None,
                 key: bytes | None = None, worker_id: str = ""):
        """``bind``: where to listen (loopback unless the cluster's ``live_listen`` says otherwise);
        ``key``/``worker_id``: the site key and this worker's id, to take signed requests from the
        dashboards of other machines (None: the file's token only, as on one machine)."""
        self.data_dir = Path(data_dir)
        self.shard = shard
        self.linger_s = linger_s
        self.bind = bind
        self.advertise_host = advertise_host or bind[0]
        self.key = key
        self.worker_id = worker_id
        self.address: tuple[str, int] | None = None  # (host, port) other machines dial, once listening
        self._nonces: dict[str, float] = {}  # signatures taken, until they expire (no replay)
        self._nonce_lock = threading.Lock()
        self.cameras: dict[str, LiveCamera] = {}
        self.token = secrets.token_urlsafe(32)
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []
        self._file: Path | None = None

    # ------------------------------------------------------------------ cameras (worker threads)
    def camera(self, camera_id: str, has_main: bool) -> LiveCamera:
        """Register (or re-register, after a config change) a camera; the old taps' viewers are told to go."""
        cam = LiveCamera(camera_id, has_main, self.linger_s)
        old = self.cameras.get(camera_id)
        self.cameras[camera_id] = cam
        if old is not None:
            old.close("camera_restarted")
        return cam

    def drop(self, camera_id: str) -> None:
        cam = self.cameras.pop(camera_id, None)
        if cam is not None:
            cam.close("camera_removed")

    def analysed(self, camera_id: str, pts_s: float, wall: float, size: tuple[int, int], objects: list[Any]) -> None:
        """The detect thread's hook: never raises (live view must not hurt detection)."""
        cam = self.cameras.get(camera_id)
        if cam is None:
            return
        try:
            cam.analysed(pts_s, wall, size, objects)
        except Exception:
            log.exception("camera %s: live overlay failed", camera_id)

    def stats(self) -> dict[str, Any]:
        return {cid: cam.stats() for cid, cam in list(self.cameras.items())}

    def refusal(self, req: Any) -> str | None:
        """None when ``req`` may be served: the local file's token, or (cluster) a fresh signature of
        this very request for this worker with the site key; else why not (for the log)."""
        if not isinstance(req, dict):
            return "not a request"
        if "auth" not in req:
            return None if hmac.compare_digest(str(req.get("token", "")), self.token) else "wrong token"
        if self.key is None:
            return "signed request, but this worker has no site key (cluster off)"
        why = protocol.check_request(self.key, self.worker_id, str(req.get("op", "stream")),
                                     str(req.get("camera", "")), req["auth"])
        if why is not None:
            return why + " (is the site key the same on every machine?)"
        now = time.time()
        with self._nonce_lock:
            if req["auth"]["nonce"] in self._nonces:
                return "signature used before (replayed)"
            self._nonces[req["auth"]["nonce"]] = float(req["auth"]["exp"])
            if len(self._nonces) > 10_000:
                self._nonces = {n: e for n, e in self._nonces.items() if e >= now}
        return None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Listen and publish the endpoint; a failure is logged and leaves the worker without live view only."""
        try:
            self._start()
        except OSError as e:  # e.g. a full disk refusing the endpoint file: detection must go on
            log.error("live view unavailable in this worker: %s", e)
            self.stop()

    def _start(self) -> None:
        self.stopping.clear()
        host, want = self.bind
        srv = (_Server6 if ":" in host else _Server)((host, want), _Viewer)
        srv.service = self
        self._server = srv
        port = srv.server_address[1]
        local = host if host not in ("", "0.0.0.0", "::") else ("::1" if host == "::" else "127.0.0.1")
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.5}, name="live-server",
                             daemon=True)
        t.start()
        h = threading.Thread(target=self._housekeeping, name="live-housekeeping", daemon=True)
        h.start()
        self._threads = [t, h]
        self._file = protocol.write_endpoint(self.data_dir, protocol.Endpoint(
            local, int(port), self.token, self.shard, os.getpid()))
        self.address = (self.advertise_host, int(port))
        log.info("live view: listening on %s:%d (%s)%s", host, port, self._file,
                 f", signed requests for {self.worker_id} taken" if self.key is not None else "")

    def _housekeeping(self) -> None:
        while not self.stopping.wait(HOUSEKEEPING_S):
            if self._nonces:
                now = time.time()
                with self._nonce_lock:
                    self._nonces = {n: e for n, e in self._nonces.items() if e >= now}
            for cam in list(self.cameras.values()):
                try:
                    cam.tick()
                except Exception:
                    log.exception("camera %s: live housekeeping failed", cam.camera_id)

    def stop(self) -> None:
        self.stopping.set()
        if self._file is not None:
            try:  # a restarted worker of the same shard may have written its own file meanwhile
                if json.loads(self._file.read_text()).get("token") == self.token:
                    self._file.unlink(missing_ok=True)
            except (OSError, ValueError):
                pass
            self._file = None
        for cam in list(self.cameras.values()):
            cam.close("worker_stopped")
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for t in self._threads:
            t.join(2)
