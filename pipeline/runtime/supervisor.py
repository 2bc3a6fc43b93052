"""``sharpeye run``: Redis (embedded unless configured), the workers and the dashboard, supervised.

The parent process is a small supervisor.  Each failure mode has its own check, log line and
restart, every child alike:

- **exited**: any child (redis-server included) that exits is started again;
- **silent worker**: every worker writes a heartbeat from its detect loop (``--heartbeat``);
  one silent for ``supervisor.heartbeat_timeout_s`` (after ``startup_grace_s`` for its first
  beat) is SIGKILLed and restarted: this catches a stopped (SIGSTOP) or deadlocked worker, whose
  process is alive but useless;
- **Redis not answering PING** ``REDIS_FAILS`` times in a row: SIGKILL and restart on the same
  data (AOF), same socket, same password, so clients just reconnect;
- **dashboard not answering** ``GET /healthz`` ``DASHBOARD_FAILS`` times in a row: restarted.  Its
  /healthz asks Redis, so while Redis itself is down a failed check is not held against it.

Restarts back off: a child that keeps failing waits 0.3 s, 0.6 s, 1.2 s ... up to
``BACKOFF_MAX_S``; one that ran ``STABLE_S`` before failing starts again from 0.3 s.

No child is left behind: everything runs inside try/finally, each child is its own process
group killed as a group, and each asks the kernel for SIGTERM should the supervisor itself be
killed (``procs.die_with_parent``).  A lock on ``<data_dir>/run.lock`` refuses a second ``run`` on
the same data.  No secret is on any command line: children read the bus URL from a 0600 file.
"""

from __future__ import annotations

import logging
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from pipeline.config import Config
from pipeline.config.schema import is_loopback
from pipeline.publish import bus
from pipeline.runtime.heartbeat import beat_age
from pipeline.runtime.lock import DataDirBusy, RunLock
from pipeline.runtime.procs import kill_group, port_problem, start_child, wait_group_gone
from pipeline.runtime.redis_server import RedisServer, write_secret_file

log = logging.getLogger("sharpeye.run")

TICK_S = 0.2
BACKOFF_FIRST_S = 0.3  # a crashed worker is back well within 2 s (model load included)
BACKOFF_MAX_S = 30.0
STABLE_S = 60.0  # a child that ran this long before failing is not "crashing in a loop"
REDIS_PROBE_S = 1.0
REDIS_PROBE_TIMEOUT_S = 1.0
REDIS_FAILS = 3
REDIS_START_S = 30.0  # AOF replay of a large file takes a while; PING answers LOADING until done
DASHBOARD_PROBE_S = 2.0
DASHBOARD_PROBE_TIMEOUT_S = 4.0  # a loaded 2-core machine answers slowly: slow is not dead
DASHBOARD_FAILS = 4  # about 20 s without an answer before a restart
DASHBOARD_START_S = 30.0
STOP_TIMEOUT_S = 8.0
RETENTION_PERIOD_S = 60.0


class StartupError(Exception):
    """Something ``run`` checks before it can start: printed as one line, exit 2."""


class Stopped(Exception):
    """SIGINT/SIGTERM arrived while starting up: unwind through the cleanup."""


# ---------------------------------------------------------------------------------------- children


class Child:
    """One supervised process: its own process group, restarted with capped exponential backoff."""

    def __init__(self, name: str, argv: list[str] | None = None):
        self.name = name
        self.argv = argv or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.started = 0.0
        self.failures = 0  # consecutive failures that came before STABLE_S of running
        self.next_start: float | None = None  # monotonic time of a scheduled (re)start

    # what subclasses vary
    def spawn(self) -> subprocess.Popen[bytes]:
        return start_child(self.argv)

    def unhealthy(self, now: float) -> str | None:
        """Why a running child must be restarted, or None."""
        return None

    def forwards_sighup(self) -> bool:
        return True

    # common behaviour
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.next_start = None
        self.proc = self.spawn()
        self.started = time.monotonic()
        log.info("%s started (pid %d)", self.name, self.proc.pid)

    def backoff(self, now: float) -> float:
        if now - self.started >= STABLE_S:
            self.failures = 0
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** self.failures)
        self.failures += 1
        return delay

    def failed(self, now: float, why: str) -> None:
        """Kill what is left of the child and schedule its restart."""
        self.kill()
        delay = self.backoff(now)
        self.restarts += 1
        self.next_start = now + delay
        log.error("%s %s; restart %d in %.1f s", self.name, why, self.restarts, delay)

    def kill(self) -> None:
        if self.proc is None:
            return
        kill_group(self.proc.pid, signal.SIGKILL)  # works on a stopped process too
        self.proc.wait()
        wait_group_gone(self.proc.pid, 2.0)

    def terminate(self) -> None:
        """First half of a stop: ask (SIGTERM), waking a stopped child so it can act on it."""
        if self.proc is None:
            return
        kill_group(self.proc.pid, signal.SIGTERM)
        kill_group(self.proc.pid, signal.SIGCONT)

    def reap(self, deadline: float) -> None:
        """Second half: wait until ``deadline``, then SIGKILL the group."""
        if self.proc is None:
            return
        try:
            self.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in time; killing it", self.name)
        kill_group(self.proc.pid, signal.SIGKILL)  # also any grandchild left in its group
        self.proc.wait()
        wait_group_gone(self.proc.pid, 2.0)


class RedisChild(Child):
    """The embedded redis-server: restarted on the same folder when it dies or stops answering PING."""

    def __init__(self, server: RedisServer):
        super().__init__("redis-server")
        self.server = server
        self.fails = 0
        self.last_probe = 0.0
        self.ready = False
        self._client = server.client(REDIS_PROBE_TIMEOUT_S)

    def spawn(self) -> subprocess.Popen[bytes]:
        self.fails, self.ready = 0, False
        return self.server.spawn()

    def forwards_sighup(self) -> bool:
        return False

    def ok(self) -> bool:
        """Whether the bus answered its last PING (the dashboard's health depends on it)."""
        return self.ready and self.fails == 0

    def unhealthy(self, now: float) -> str | None:
        if now - self.last_probe < REDIS_PROBE_S:
            return None
        self.last_probe = now
        if self.server.ping(self._client):
            if not self.ready:
                log.info("redis-server answers PING %.2f s after its start", now - self.started)
            self.ready, self.fails = True, 0
            return None
        if not self.ready:  # starting: loading the AOF answers LOADING, not PONG
            return None if now - self.started < REDIS_START_S else f"did not answer PING within {REDIS_START_S:g} s"
        self.fails += 1
        if self.fails >= REDIS_FAILS:
            return f"did not answer PING {self.fails} times in a row"
        return None

    def kill(self) -> None:
        self.server.kill()

    def reap(self, deadline: float) -> None:
        self.server.stop(max(1.0, deadline - time.monotonic()))
        self._client.close()


class WorkerChild(Child):
    """A stream worker, watched through the heartbeat its detect loop writes."""

    def __init__(self, name: str, argv: list[str], heartbeat: Path, timeout_s: float, grace_s: float):
        super().__init__(name, argv + ["--heartbeat", str(heartbeat)])
        self.heartbeat = heartbeat
        self.timeout_s = timeout_s
        self.grace_s = grace_s

    def spawn(self) -> subprocess.Popen[bytes]:
        self.heartbeat.unlink(missing_ok=True)  # a beat of the previous process must not vouch for this one
        return super().spawn()

    def unhealthy(self, now: float) -> str | None:
        age = beat_age(self.heartbeat, now)
        if age is None:
            up = now - self.started
            return f"wrote no heartbeat within {self.grace_s:g} s of its start" if up > self.grace_s else None
        if age > self.timeout_s:
            return f"detect loop silent for {age:.1f} s (limit {self.timeout_s:g} s)"
        return None


class DashboardChild(Child):
    """The web app, probed with GET /healthz: a hung server is restarted, not only a dead one.

    Under TLS the probe speaks HTTPS without verifying the certificate: it asks this machine's own
    server, whose certificate may be self-signed or name another host than the one probed.
    """

    def __init__(self, argv: list[str], host: str, port: int, bus_ok: Callable[[], bool], tls: bool = False):
        super().__init__("dashboard", argv)
        probe_host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        if ":" in probe_host:
            probe_host = f"[{probe_host}]"
        self.url = f"{'https' if tls else 'http'}://{probe_host}:{port}/healthz"
        self.ssl_context: ssl.SSLContext | None = None
        if tls:
            self.ssl_context = ssl.create_default_context()
            self.ssl_context.check_hostname = False
            self.ssl_context.verify_mode = ssl.CERT_NONE
        self.bus_ok = bus_ok
        self.fails = 0
        self.up = False
        self.last_probe = 0.0

    def spawn(self) -> subprocess.Popen[bytes]:
        self.fails, self.up = 0, False
        return super().spawn()

    def _probe(self) -> str | None:
        """None when healthy (or when the verdict would be unfair), else what went wrong."""
        try:
            with urllib.request.urlopen(self.url, timeout=DASHBOARD_PROBE_TIMEOUT_S, context=self.ssl_context) as resp:
                resp.read(256)
            return None
        except urllib.error.HTTPError as e:
            problem = f"answered {e.code}" if e.code >= 500 else None
        except (OSError, ValueError) as e:
            problem = str(getattr(e, "reason", e))
        if problem and not self.bus_ok():
            return None  # /healthz asks Redis: while the bus is down a 5xx or a slow answer is no fault of its own
        return problem

    def unhealthy(self, now: float) -> str | None:
        if now - self.last_probe < DASHBOARD_PROBE_S:
            return None
        self.last_probe = now
        if self.up and not self.bus_ok():
            return None  # the verdict would not count (see _probe), and a hung probe would delay the others
        problem = self._probe()
        if problem is None:
            self.up, self.fails = True, 0
            return None
        if not self.up:
            return None if now - self.started < DASHBOARD_START_S else \
                f"did not answer {self.url} within {DASHBOARD_START_S:g} s ({problem})"
        self.fails += 1
        log.warning("dashboard health check %d/%d failed: %s", self.fails, DASHBOARD_FAILS, problem)
        return f"failed {self.fails} health checks in a row ({problem})" if self.fails >= DASHBOARD_FAILS else None


# ---------------------------------------------------------------------------------------- retention


def _retention_loop(cfg: Config, stop: threading.Event) -> None:
    """Keep the data disk usable: free space checked every few seconds (below recordings.min_free_percent the
    oldest recordings and snapshots go at once), the full retention sweep (age, quotas) every minute."""
    from pipeline.export.protect import protection_for  # exports' holds and open alerts' clips are never deleted
    from pipeline.record.janitor import Janitor

    Janitor.from_config(cfg, protected=protection_for(cfg), sweep_s=RETENTION_PERIOD_S).run(stop)


# ---------------------------------------------------------------------------------------- supervisor


def bus_where(url: str) -> str:
    """An external bus URL without user-info, password or query, for the banner and logs."""
    try:
        parts = urlsplit(url)
        if parts.scheme == bus.SENTINEL_SCHEME:  # several host:port, no single port to read
            return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
        if parts.scheme == "unix":
            return f"unix socket {parts.path}"
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"
    except ValueError:
        return "(unparsable redis_url)"


def _pinger(url: str) -> Callable[[], bool]:
    """For an external bus: whether it answers, asked only when the dashboard reports a 5xx."""
    import redis

    def ping() -> bool:
        try:
            if bus.is_sentinel_url(url):  # the current primary, as the workers and the dashboard find it
                with bus.connect(url) as c:
                    return bool(c.ping())
            with redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5) as c:
                return bool(c.ping())
        except (redis.RedisError, OSError, ValueError):
            return False

    return ping


class Supervisor:
    def __init__(self, cfg: Config, host: str | None = None, port: int | None = None):
        assert cfg.path is not None
        self.cfg = cfg
        self.data_dir = cfg.data_path()
        self.run_dir = self.data_dir / "run"
        self.url_file = self.data_dir / "redis" / "url"
        self.host = host or cfg.dashboard.host
        self.port = port or cfg.dashboard.port
        self.stop_event = threading.Event()
        self.starting = True
        self.redis: RedisChild | None = None
        self.children: list[Child] = []

    # -------------------------------------------------------------- signals
    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("stopping (signal %d)", signum)
        self.stop_event.set()
        if self.starting:
            raise Stopped()

    def _on_reload(self, _signum: int, _frame: FrameType | None) -> None:
        log.info("SIGHUP: asking every child to reload %s", self.cfg.path)
        for c in self.children:
            if c.forwards_sighup() and c.running() and c.pid is not None:
                kill_group(c.pid, signal.SIGHUP)

    def install_signals(self) -> None:
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    # -------------------------------------------------------------- start
    def start(self) -> None:
        if not self.cfg.dashboard.tls and not is_loopback(self.host):
            raise StartupError(f"refusing to serve the dashboard on {self.host!r} without TLS: log-ins and session "
                               f"cookies would cross the network in clear; set dashboard.tls_cert and "
                               f"dashboard.tls_key in {self.cfg.path}, or use a loopback host (127.0.0.1)")
        if problem := port_problem(self.host, self.port):
            raise StartupError(problem)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.url_file.parent.mkdir(parents=True, exist_ok=True)
        self.url_file.parent.chmod(0o700)
        if self.cfg.redis_url:
            url = self.cfg.redis_url
            where = bus_where(url)
        else:
            server = RedisServer(self.data_dir / "redis")
            self.redis = RedisChild(server)
            self.children.append(self.redis)  # first in the list: stopped last
            self.redis.start()
            try:
                server.wait_ready(REDIS_START_S)
            except RuntimeError as e:
                raise StartupError(f"embedded {e}") from None
            self.redis.ready = True
            url, where = server.url, f"embedded redis-server, {server.where}"
            log.info("%s (data in %s, AOF fsync every second)", where, server.data_dir)
        write_secret_file(self.url_file, url + "\n")  # children read it: no password on a command line

        # the model is fetched and checked once here, not by every worker on every restart; without it the
        # workers still start: recording does not depend on the detector (each camera's status says why)
        from pipeline.analyse.models import resolve_model
        try:
            resolve_model(self.cfg.model.name, self.cfg.models_path(), base_dir=self.cfg.base_dir())
        except Exception as e:
            reason = (str(e).splitlines() or [""])[0] or type(e).__name__
            if not reason.startswith("model "):
                reason = f"model {self.cfg.model.name!r}: {reason}"
            print(f"sharpeye run: {reason} — cameras record and stream live, nothing is analysed until the "
                  "model is installed", file=sys.stderr, flush=True)

        py = sys.executable
        cfg_path = str(self.cfg.path)
        n = self.cfg.worker_count()
        sup = self.cfg.supervisor
        for i in range(n):
            self.children.append(WorkerChild(
                f"worker-{i}", [py, "-m", "pipeline.runtime.worker", "--config", cfg_path,
                                "--redis-url-file", str(self.url_file), "--shard", f"{i}/{n}"],
                self.run_dir / f"worker-{i}.heartbeat", sup.heartbeat_timeout_s, sup.startup_grace_s))
        self.children.append(DashboardChild(
            [py, "-m", "dashboard", "--config", cfg_path, "--redis-url-file", str(self.url_file),
             "--host", self.host, "--port", str(self.port)],
            self.host, self.port, self.redis.ok if self.redis else _pinger(url), tls=self.cfg.dashboard.tls))
        # the history archiver: a consumer group on the events stream, so nothing is missed while it is down
        self.children.append(Child("archiver", [py, "-m", "history.archiver", "--config", cfg_path,
                                                "--redis-url-file", str(self.url_file)]))
        for c in self.children:
            if not c.running():
                c.start()
        scheme = "https" if self.cfg.dashboard.tls else "http"
        print(f"Sharp Eyes running: dashboard {scheme}://{self.host}:{self.port}  bus {where}  "
              f"cameras {len(self.cfg.enabled_cameras())}, workers {n}  (Ctrl-C to stop)", flush=True)
        self.starting = False

    # -------------------------------------------------------------- watch
    def tick(self) -> None:
        """One pass over the children: restart the dead and the unhealthy, start the due."""
        for c in self.children:
            if self.stop_event.is_set():
                return
            now = time.monotonic()
            if c.proc is None or c.next_start is not None:
                if c.next_start is not None and now >= c.next_start:
                    c.start()
                continue
            code = c.proc.poll()
            if code is not None:
                c.failed(now, f"exited with {code}" if code >= 0 else f"killed by signal {-code}")
                continue
            if why := c.unhealthy(now):
                c.failed(now, why)

    def watch(self) -> None:
        while not self.stop_event.wait(TICK_S):
            self.tick()

    # -------------------------------------------------------------- stop
    def shutdown(self) -> None:
        """Stop every child: workers and dashboard together, then Redis (it takes their last writes)."""
        self.starting = False
        others = [c for c in self.children if c is not self.redis]
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for c in others:
            c.terminate()
        for c in others:
            c.reap(deadline)
        if self.redis is not None:
            self.redis.reap(time.monotonic() + 10.0)
            self.redis.server.close()
        self.url_file.unlink(missing_ok=True)
        for f in self.run_dir.glob("*.heartbeat"):
            f.unlink(missing_ok=True)


def run(cfg: Config, host: str | None = None, port: int | None = None) -> int:
    """Run until SIGINT/SIGTERM; 0 after a clean stop, 2 when it cannot start (the reason on stderr)."""
    data_dir = cfg.data_path()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock(data_dir).acquire()
    except (DataDirBusy, OSError) as e:
        print(f"sharpeye run: {e}", file=sys.stderr)
        return 2
    sup = Supervisor(cfg, host, port)
    stop_retention = threading.Event()
    try:
        sup.install_signals()
        try:
            sup.start()
        except StartupError as e:
            print(f"sharpeye run: {e}", file=sys.stderr)
            return 2
        threading.Thread(target=_retention_loop, args=(cfg, stop_retention), name="retention", daemon=True).start()
        sup.watch()
        return 0
    except Stopped:
        return 0
    finally:
        stop_retention.set()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            sup.shutdown()
        finally:
            lock.release()
            log.info("stopped")
