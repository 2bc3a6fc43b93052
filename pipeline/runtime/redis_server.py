"""A private, locked-down ``redis-server`` child process for ``sharpeye run`` and the tests.

When the config names no Redis URL the pipeline embeds its own Redis under
``<data_dir>/redis/``.  Why it looks the way it does:

- **Unix socket only** (``port 0``): nothing on the network, not even another local user through
  loopback TCP, can reach the bus.  The socket sits in the Redis folder, mode 0700, so only the
  account running the pipeline can even connect; nothing in the pipeline needs TCP.
- **A password as a second lock**, generated once into ``password`` (0600) and given to
  redis-server through its config file ``redis.conf`` (0600), never as an argument: ``ps`` shows
  every process's arguments to every user.  Clients read the full URL from a 0600 file
  (:func:`write_secret_file`), so no command line carries it either.
- **AOF, fsync every second** (``persist=True``): every acknowledged write has been handed to
  the kernel before Redis replies, so a killed redis-server loses nothing; a power cut or kernel
  crash can lose about the last second.  Restarted on the same folder, Redis replays the file.
- A socket path longer than the kernel's limit (about 107 bytes) moves to a private 0700 folder
  under the system temp dir; the URL file says where.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pipeline.runtime.procs import kill_group, start_child, wait_group_gone

SOCKET_NAME = "redis.sock"
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux, with a NUL; keep a margin


def find_redis_server() -> str:
    for cand in (shutil.which("redis-server"), "/usr/bin/redis-server", "/usr/local/bin/redis-server"):
        if cand and Path(cand).exists():
            return cand
    raise FileNotFoundError("redis-server not found; install it (Debian: apt-get install redis-server) "
                            "or set redis_url in the config")


def write_secret_file(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read (0600 from creation, no window at 0644)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_url_file(path: Path) -> str:
    """The bus URL a supervisor wrote for its children (see ``--redis-url-file``)."""
    return Path(path).read_text().strip()


def _conf_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class RedisServer:
    """Start with ``with RedisServer(dir) as url:`` or ``start()``/``stop()``.

    ``spawn()`` + ``wait_ready()`` split ``start()`` for the supervisor, which restarts a dead
    Redis without blocking its loop.  The URL (password included) is for clients only: log
    :attr:`where` instead.
    """

    def __init__(self, data_dir: Path, persist: bool = True):
        self.data_dir = Path(data_dir).resolve()
        self.persist = persist
        self.proc: subprocess.Popen[bytes] | None = None
        self._tmp_dir: Path | None = None
        self.socket_path = self._socket_path()
        self.password = self._password()

    # ------------------------------------------------------------------ files
    def _prepare_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)  # also tightens a folder an older version created 0755

    def _socket_path(self) -> Path:
        self._prepare_dir()
        path = self.data_dir / SOCKET_NAME
        if len(str(path).encode()) <= MAX_SOCKET_PATH:
            return path
        self._tmp_dir = Path(tempfile.mkdtemp(prefix="sharpeye-redis-"))  # mkdtemp: mode 0700
        return self._tmp_dir / SOCKET_NAME

    def _password(self) -> str:
        f = self.data_dir / "password"
        try:
            os.chmod(f, 0o600)
            pw = f.read_text().strip()
            if len(pw) >= 32:
                return pw
        except FileNotFoundError:
            pass
        pw = secrets.token_hex(32)
        write_secret_file(f, pw + "\n")
        return pw

    @property
    def conf_path(self) -> Path:
        return self.data_dir / "redis.conf"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def _write_conf(self) -> None:
        lines = [
            "# written by sharpeye run at every start; edits are overwritten",
            "port 0",  # no TCP at all
            f"unixsocket {_conf_quote(str(self.socket_path))}",
            "unixsocketperm 700",
            f"dir {_conf_quote(str(self.data_dir))}",
            f"logfile {_conf_quote(str(self.log_path))}",
            "daemonize no",
            "protected-mode yes",
            'save ""',
            f"requirepass {self.password}",
        ]
        lines += ["appendonly yes", "appendfsync everysec", "aof-load-truncated yes"] if self.persist \
            else ["appendonly no"]
        write_secret_file(self.conf_path, "\n".join(lines) + "\n")

    # ------------------------------------------------------------------ addresses
    @property
    def url(self) -> str:
        """``unix://`` URL with the password: give it to clients through a 0600 file, never print it."""
        return f"unix://:{quote(self.password, safe='')}@{self.socket_path}?db=0"

    @property
    def where(self) -> str:
        """Where Redis listens, safe to print."""
        return f"unix socket {self.socket_path}"

    def client(self, timeout: float = 1.0) -> redis.Redis:
        """A client for probes: one attempt per call, so a frozen Redis costs ``timeout``, not
        redis-py's default retries with backoff (about 14 s for a 1 s timeout)."""
        return redis.Redis(unix_socket_path=str(self.socket_path), password=self.password,
                           socket_timeout=timeout, socket_connect_timeout=timeout,
                           retry=Retry(NoBackoff(), 0))

    # ------------------------------------------------------------------ process
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start redis-server and return at once (it may still be loading its AOF)."""
        self._prepare_dir()
        self._write_conf()
        with open(self.data_dir / "redis.stderr", "ab") as err:  # config errors come before the logfile
            self.proc = start_child([find_redis_server(), str(self.conf_path)],
                                     stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        return self.proc

    def ping(self, client: redis.Redis | None = None, timeout: float = 1.0) -> bool:
        """True when Redis answers PING; a Redis still loading its AOF counts as not ready."""
        c = client or self.client(timeout)
        try:
            return bool(c.ping())
        except redis.RedisError:
            return False
        finally:
            if client is None:
                c.close()

    def failure_detail(self) -> str:
        tail = ""
        for f in (self.data_dir / "redis.stderr", self.log_path):
            if f.exists():
                tail += f.read_text(errors="replace")[-1500:]
        return tail.replace(self.password, "***")

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        client = self.client(0.5)
        try:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {self.failure_detail()}")
                if self.ping(client):
                    return
                time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise RuntimeError(f"redis-server did not answer on {self.where} within {timeout:g} s")

    def start(self, timeout: float = 10.0) -> str:
        self.spawn()
        self.wait_ready(timeout)
        return self.url

    def kill(self) -> None:
        """SIGKILL, for a Redis that stopped answering: waiting on it would only wait longer."""
        if self.proc is None:
            return
        kill_group(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        wait_group_gone(self.proc.pid, 2.0)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Redis flushes its AOF), then SIGKILL after ``timeout``."""
        if self.proc is not None:
            kill_group(self.proc.pid, signal.SIGTERM)
            kill_group(self.proc.pid, signal.SIGCONT)  # a stopped Redis could not act on SIGTERM
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                kill_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            wait_group_gone(self.proc.pid, 2.0)
        self.proc = None

    def close(self) -> None:
        """Stop, and remove a private temp socket folder if one was needed."""
        self.stop()
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
