"""RTSP camera simulator for tests, benchmarks and the demo: runs ``scripts/camsim.py`` in a subprocess.

    with RtspSimulator({"lobby": "/x/a.mp4", "lobby/sub": "/x/b.mp4"}) as sim:
        container = av.open(sim.url("lobby"), options={"rtsp_transport": "tcp", "timeout": "5000000"})
        sim.pause()     # SIGSTOP: readers stall (test timeouts)
        sim.resume()
        sim.stop()      # readers get EOF, then connection refused
        sim.start()     # back on the same port (test reconnects)

    # independent cameras: lobby starts 12 s into its file, its first frame 0.7 s after PLAY
    RtspSimulator({"lobby": "/x/a.mp4"}, starts={"lobby": 12.0}, delays={"lobby": 0.7})

camsim.py needs Debian's ``/usr/bin/python3`` with ``gi`` and GStreamer's RTSP server;
``camsim_unavailable()`` says why it cannot run (or None), for ``pytest.skip``.
Only stdlib imports here: benchmark code imports this module too.
"""
from __future__ import annotations

import functools
import os
import select
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from pipeline.runtime.procs import start_child

CAMSIM = Path(__file__).resolve().parents[2] / "scripts" / "camsim.py"
SYSTEM_PYTHON = "/usr/bin/python3"
READY_TIMEOUT_S = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _system_env() -> dict[str, str]:
    # The venv's variables must not leak into the system interpreter.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@functools.lru_cache(maxsize=1)
def camsim_unavailable() -> str | None:
    """None if camsim.py can run here, else the reason why not."""
    if not CAMSIM.is_file():
        return f"{CAMSIM} is missing"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} is missing"
    check = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    r = subprocess.run([SYSTEM_PYTHON, "-c", check], capture_output=True, text=True, env=_system_env())
    if r.returncode != 0:
        return "GStreamer RTSP server for Python missing (apt-get install gir1.2-gst-rtsp-server-1.0 python3-gi)"
    return None


class RtspSimulator:
    """Serves ``{mount: file}`` as looping RTSP cameras on 127.0.0.1 (see scripts/camsim.py)."""

    host = "127.0.0.1"

    def __init__(self, mounts: dict[str, str | Path], port: int | None = None, shared: bool = False,
                 starts: dict[str, float] | None = None, delays: dict[str, float] | None = None,
                 lean: bool = False):
        if not mounts:
            raise ValueError("RtspSimulator needs at least one mount")
        self.mounts = {m.strip("/"): str(p) for m, p in mounts.items()}
        # per mount: where its first loop starts in the file, and how long its first frame is held back
        self.starts = {m.strip("/"): float(s) for m, s in (starts or {}).items() if s}
        self.delays = {m.strip("/"): float(d) for m, d in (delays or {}).items() if d}
        unknown = (set(self.starts) | set(self.delays)) - set(self.mounts)
        if unknown:
            raise ValueError(f"start or delay for unknown mount(s) {sorted(unknown)}")
        self.port = port or free_port(self.host)
        self.shared = shared
        self.lean = lean  # camsim --lean: no queue thread or h264parse per client (same RTP, about 1/3 less CPU)
        self.proc: subprocess.Popen | None = None
        self.ready_s: float | None = None  # seconds from spawn to READY, last start
        self._stderr = None
        self._paused = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> RtspSimulator:
        """Start the server (again, on the same port); returns once it listens."""
        self.stop()
        cmd = [SYSTEM_PYTHON, str(CAMSIM), "--host", self.host, "--port", str(self.port)]
        if self.shared:
            cmd.append("--shared")
        if self.lean:
            cmd.append("--lean")
        for m, v in self.starts.items():
            cmd += ["--start", f"{m}={v:.3f}"]
        for m, v in self.delays.items():
            cmd += ["--delay", f"{m}={v:.3f}"]
        cmd += [f"{m}={p}" for m, p in self.mounts.items()]
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: nobody drains it
        t0 = time.monotonic()
        self.proc = start_child(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=self._stderr, env=_system_env())
        try:
            self._wait_ready(t0 + READY_TIMEOUT_S)
        except BaseException:
            self.stop(kill=True)
            raise
        self.ready_s = time.monotonic() - t0
        return self

    def _wait_ready(self, deadline: float) -> None:
        fd = self.proc.stdout.fileno()
        buf = b""
        while not any(line.startswith(b"READY ") for line in buf.split(b"\n")[:-1]):  # whole lines
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"camsim not ready after {READY_TIMEOUT_S:.0f} s: {self._stderr_text()}")
            if select.select([fd], [], [], remaining)[0]:
                chunk = os.read(fd, 4096)
                if not chunk:  # exited
                    rc = self.proc.wait()
                    raise RuntimeError(f"camsim exited with status {rc}: {self._stderr_text()}")
                buf += chunk

    def _stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()

    def stop(self, kill: bool = False) -> None:
        """Stop the server (SIGTERM, SIGKILL after 5 s; at once with ``kill=True``)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                self._signal(proc, signal.SIGKILL if kill else signal.SIGTERM)
                if self._paused and not kill:
                    self._signal(proc, signal.SIGCONT)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._signal(proc, signal.SIGKILL)
                    proc.wait()
            proc.stdout.close()
        self._paused = False
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, no data flows."""
        self._signal(self._running(), signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Undo ``pause()`` (SIGCONT)."""
        self._signal(self._running(), signal.SIGCONT)
        self._paused = False

    def _running(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError("camsim is not running")
        return self.proc

    @staticmethod
    def _signal(proc: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)  # own session: the group id is its pid
        except ProcessLookupError:
            pass

    # -- access ------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"rtsp://{self.host}:{self.port}"

    def url(self, mount: str) -> str:
        mount = mount.strip("/")
        if mount not in self.mounts:
            raise KeyError(f"no mount {mount!r}; have {sorted(self.mounts)}")
        return f"{self.base_url}/{mount}"

    def __enter__(self) -> RtspSimulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(kill=True)

    def __del__(self):
        if getattr(self, "proc", None) is not None:
            self.stop(kill=True)
