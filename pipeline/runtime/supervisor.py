"""``sharpeye run``: Redis (embedded unless configured), the worker and the dashboard.

The parent process is a small supervisor: it starts each part as a child process,
restarts a child that dies (within ``RESTART_DELAY_S``), and on Ctrl-C or SIGTERM stops
the children, then the embedded Redis, in that order, so no message is lost in flight.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from pipeline.config import Config
from pipeline.runtime.redis_server import RedisServer

log = logging.getLogger("sharpeye.run")
RESTART_DELAY_S = 0.3  # a crashed worker is back well within 2 s (model load included)


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started: float = field(default_factory=time.monotonic)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, start_new_session=True)
        self.started = time.monotonic()
        log.info("%s started (pid %d)", self.name, self.proc.pid)

    def stop(self, timeout: float = 8.0) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing", self.name, timeout)
            self.proc.kill()
            self.proc.wait()


RETENTION_PERIOD_S = 60.0


def _retention_loop(cfg: Config, stop: threading.Event) -> None:
    """Delete old recordings every minute: by age, then oldest first over the quotas."""
    from pipeline.record.retention import Retention

    rec = cfg.recordings
    if not rec.enabled:
        return
    ret = Retention(cfg.data_path() / rec.dir, rec.retain_days,
                    int(rec.quota_gb * 1e9) if rec.quota_gb else None,
                    int(rec.camera_quota_gb * 1e9) if rec.camera_quota_gb else None)
    while not stop.wait(RETENTION_PERIOD_S):
        try:
            res = ret.sweep(time.time())
            if res.deleted_files:
                log.info("retention: deleted %d segments, %.1f MB", res.deleted_files, res.freed_bytes / 1e6)
        except Exception:
            log.exception("retention sweep failed")


def run(cfg: Config, host: str | None = None, port: int | None = None) -> int:
    assert cfg.path is not None
    data_dir = cfg.data_path()
    data_dir.mkdir(parents=True, exist_ok=True)
    redis_srv: RedisServer | None = None
    url_file = data_dir / "redis" / "url"
    if cfg.redis_url:
        url = cfg.redis_url
    else:
        redis_srv = RedisServer(data_dir / "redis")
        url = redis_srv.start()
        url_file.write_text(url + "\n")
        log.info("embedded redis-server on %s (data in %s)", url, data_dir / "redis")

    # make sure the model is there before the worker needs it (fetch + checksum once, not per restart)
    from pipeline.analyse.models import resolve_model
    resolve_model(cfg.model.name)

    py = sys.executable
    dash_host = host or cfg.dashboard.host
    dash_port = port or cfg.dashboard.port
    workers = cfg.worker_count()
    children = [
        Child(f"worker-{i}", [py, "-m", "pipeline.runtime.worker", "--config", str(cfg.path), "--redis", url,
                              "--shard", f"{i}/{workers}"])
        for i in range(workers)
    ] + [
        Child("dashboard", [py, "-m", "dashboard", "--config", str(cfg.path), "--redis", url,
                            "--host", dash_host, "--port", str(dash_port)]),
    ]
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("stopping (signal %d)", signum)
        stop.set()

    def _reload(signum: int, _frame: object) -> None:
        log.info("SIGHUP: asking every child to reload %s", cfg.path)
        for c in children:
            if c.proc and c.proc.poll() is None:
                c.proc.send_signal(signal.SIGHUP)

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _reload)
    threading.Thread(target=_retention_loop, args=(cfg, stop), name="retention", daemon=True).start()
    for c in children:
        c.start()
    print(f"Sharp Eyes running: dashboard http://{dash_host}:{dash_port}  bus {url}  "
          f"cameras {len(cfg.enabled_cameras())}  (Ctrl-C to stop)", flush=True)
    try:
        while not stop.wait(0.2):
            for c in children:
                if c.proc and c.proc.poll() is not None:
                    log.error("%s exited with %s; restarting in %.0f s", c.name, c.proc.returncode, RESTART_DELAY_S)
                    if stop.wait(RESTART_DELAY_S):
                        break
                    c.restarts += 1
                    c.start()
    finally:
        for c in children:
            c.stop()
        if redis_srv:
            redis_srv.stop()
            try:
                url_file.unlink()
            except FileNotFoundError:
                pass
        log.info("stopped")
    return 0

