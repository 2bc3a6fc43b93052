"""`sharpeye run` as a supervisor, on real processes: redis-server killed and frozen, a worker frozen,
the dashboard frozen, a second run on the same data, start-up failures, secrets off every command line.

One `sharpeye run` (one camera looping a shared clip, heartbeat limit 3 s) serves the tests of the
first group, in file order; the start-up failure tests start their own.  Figures are printed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from pipeline.publish import bus
from pipeline.runtime.heartbeat import Heartbeat, beat_age
from pipeline.runtime.lock import DataDirBusy, RunLock
from pipeline.runtime.supervisor import BACKOFF_FIRST_S, BACKOFF_MAX_S, STABLE_S, Child
from pipeline.tools.simulator import free_port
from tests.support.config import config_text
from tests.support.waits import wait_for

HEARTBEAT_LIMIT_S = 3.0
PREFIX = "sup-test"


# ------------------------------------------------------------------------------------- processes


def _stat(pid: int) -> tuple[int, str] | None:
    """(ppid, state) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), fields[0]


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (children of children included)."""
    parents: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and (st := _stat(int(d))) is not None and st[1] != "Z":
            parents[int(d)] = st[0]
    found, frontier = [], [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        found += kids
        frontier += kids
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains ``text`` (a test's unique tmp path)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid() and text in (cl := cmdline(int(d))):
            st = _stat(int(d))
            if st is not None and st[1] != "Z":
                out.append((int(d), cl))
    return out


def child_pid(run_pid: int, marker: str) -> int | None:
    pids = [p for p in descendants(run_pid) if marker in cmdline(p)]
    return pids[0] if pids else None


@dataclass
class Run:
    """A `sharpeye run` subprocess and everything a test needs to poke at it."""

    proc: subprocess.Popen[str]
    cfg: Path
    data: Path
    port: int
    lines: list[str] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)  # every descendant pid ever observed

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def children(self) -> list[int]:
        kids = descendants(self.proc.pid)
        self.seen.update(kids)
        return kids

    def child(self, marker: str) -> int | None:
        self.children()
        return child_pid(self.proc.pid, marker)

    def url(self) -> str:
        return (self.data / "redis" / "url").read_text().strip()

    def password(self) -> str:
        return (self.data / "redis" / "password").read_text().strip()

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


def start_run(cfg: Path, port: int, data: Path) -> Run:
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "run", "--config", str(cfg), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    run = Run(proc, cfg, data, port)

    def pump() -> None:  # keep the pipe drained: a full pipe would block the supervisor
        assert proc.stdout is not None
        for line in proc.stdout:
            run.lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    return run


def streaming_since(r: redis.Redis, t: float) -> bool:
    """Camera ``a`` reported as streaming in a status written after wall time ``t``."""
    raw = r.hget(bus.BusKeys(PREFIX).cameras, "a")
    if not raw:
        return False
    st = json.loads(raw)
    return bool(st.get("state") == "streaming" and float(st.get("updated", 0)) > t)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, car_clip: Path) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("sup")
    cfg = tmp / "streams.yaml"
    cfg.write_text(config_text({"a": {"source": car_clip}}, data_dir="data", workers=1, bus={"prefix": PREFIX},
                               supervisor={"heartbeat_timeout_s": HEARTBEAT_LIMIT_S, "startup_grace_s": 60}))
    run = start_run(cfg, free_port(), tmp / "data")
    try:
        t0 = time.time()
        wait_for(lambda: (tmp / "data" / "redis" / "url").exists() or run.proc.poll() is not None, 30,
                 lambda: f"the bus URL file; output:\n{run.output[-3000:]}")
        assert run.proc.poll() is None, run.output[-3000:]
        r = bus.connect(run.url())
        took = wait_for(lambda: streaming_since(r, t0), 45,
                        lambda: f"camera a streaming; output:\n{run.output[-3000:]}")
        print(f"\n`sharpeye run` up, camera streaming after {took:.1f} s")
        run.children()
        yield run
    finally:
        code = run.stop()
        leftovers = [p for p in run.seen if (st := _stat(p)) is not None and st[1] != "Z"]
        assert code == 0, run.output[-3000:]
        assert not leftovers, f"children left behind: {[(p, cmdline(p)) for p in leftovers]}"
        assert not processes_mentioning(str(tmp)), processes_mentioning(str(tmp))
        assert not (tmp / "data" / "redis" / "url").exists()
        print(f"stopped cleanly; {len(run.seen)} child processes seen over the run, none left")


# ------------------------------------------------------------------------------------- under one run


def test_second_run_on_the_same_data_dir_is_refused(running: Run) -> None:
    t0 = time.monotonic()
    second = subprocess.run([sys.executable, "-m", "cli.main", "run", "--config", str(running.cfg),
                             "--port", str(free_port())], capture_output=True, text=True, timeout=60)
    print(f"second run refused in {time.monotonic() - t0:.1f} s: {second.stderr.strip()}")
    assert second.returncode == 2
    assert "already in use" in second.stderr and f"pid {running.proc.pid}" in second.stderr
    assert running.proc.poll() is None  # the first one is unharmed
    assert len([p for p in running.children() if "redis-server" in cmdline(p)]) == 1


def test_no_secret_on_any_command_line_environment_or_output(running: Run) -> None:
    pw = running.password()
    assert len(pw) >= 32
    kids = running.children()
    assert len(kids) >= 3  # redis-server, a worker, the dashboard
    for pid in kids:
        assert pw not in cmdline(pid), f"password on the command line of {cmdline(pid)}"
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        assert pw not in environ, f"password in the environment of {cmdline(pid)}"
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert pw not in ps
    assert pw not in running.output
    assert "redis.sock" in running.output  # the banner says where, without the secret
    redis_dir = running.data / "redis"
    for f, mode in ((redis_dir, 0o700), (redis_dir / "password", 0o600), (redis_dir / "url", 0o600),
                    (redis_dir / "redis.conf", 0o600)):
        assert f.stat().st_mode & 0o777 == mode, f"{f} has mode {oct(f.stat().st_mode & 0o777)}"
    r = bus.connect(running.url())
    assert r.config_get("port") == {b"port": b"0"} or r.config_get("port") == {"port": "0"}  # no TCP
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(unix_socket_path=str(redis_dir / "redis.sock")).ping()
    print(f"{len(kids)} children, no password in ps/environ/output; redis on a unix socket only, auth required")


def _redis_back(url: str, old_pid: int, run: Run) -> tuple[float, int]:
    """Wait until a new redis-server answers PING; (seconds, new pid)."""
    client = redis.Redis.from_url(url, socket_timeout=0.3, socket_connect_timeout=0.3)

    def back() -> bool:
        pid = run.child("redis-server")
        if pid is None or pid == old_pid:
            return False
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    took = wait_for(back, 20, lambda: f"a new redis-server answering PING; output:\n{run.output[-2000:]}")
    return took, int(run.child("redis-server") or 0)


def test_killed_redis_is_restarted_on_the_same_data(running: Run) -> None:
    url = running.url()
    r = bus.connect(url)
    r.set("sup-test:marker", "written just before the kill")
    pid = running.child("redis-server")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    took, new_pid = _redis_back(url, pid, running)
    print(f"redis-server SIGKILLed: a new one (pid {new_pid}) answers PING after {took:.2f} s")
    assert took < 5.0
    assert r.get("sup-test:marker") == b"written just before the kill"  # AOF replayed, same socket and password
    t1 = time.time()
    back = wait_for(lambda: streaming_since(r, t1), 20, "the worker's status on the new redis-server")
    print(f"worker publishing again {back:.2f} s after the restart")


def test_killed_archiver_is_restarted(running: Run) -> None:
    pid = wait_for_child(running, "history.archiver")
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    wait_for(lambda: (p := running.child("history.archiver")) is not None and p != pid, 10,
             lambda: f"a new archiver; output:\n{running.output[-2000:]}")
    print(f"archiver SIGKILLed: a new one runs after {time.monotonic() - t0:.2f} s")


def wait_for_child(running: Run, marker: str) -> int:
    wait_for(lambda: running.child(marker) is not None, 20, f"a child running {marker}")
    pid = running.child(marker)
    assert pid is not None
    return pid


def test_frozen_redis_is_restarted(running: Run) -> None:
    url = running.url()
    pid = running.child("redis-server")
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    took, new_pid = _redis_back(url, pid, running)
    print(f"redis-server SIGSTOPped: restarted (pid {new_pid}) and answering PING after {took:.2f} s")
    assert took < 15.0  # three missed PINGs a second apart, then a restart; a loaded machine adds seconds
    assert "did not answer PING" in running.output


def test_frozen_worker_is_restarted_within_the_heartbeat_limit(running: Run) -> None:
    pid = running.child("pipeline.runtime.worker")
    assert pid is not None
    r = bus.connect(running.url())
    os.kill(pid, signal.SIGSTOP)
    t0, t0_wall = time.monotonic(), time.time()

    def replaced() -> bool:
        new = running.child("pipeline.runtime.worker")
        return new is not None and new != pid

    took = wait_for(replaced, HEARTBEAT_LIMIT_S + 10, lambda: f"a new worker; output:\n{running.output[-2000:]}")
    assert _stat(pid) is None  # the frozen one was killed, not left stopped
    r.hdel(bus.BusKeys(PREFIX).cameras, "a")
    wait_for(lambda: streaming_since(r, t0_wall), 30, "camera a streaming from the new worker")
    again = time.monotonic() - t0
    print(f"worker SIGSTOPped: replaced after {took:.2f} s (limit {HEARTBEAT_LIMIT_S:g} s + 2 s), "
          f"camera streaming again after {again:.2f} s")
    assert took <= HEARTBEAT_LIMIT_S + 2.0
    assert "detect loop silent" in running.output


def test_frozen_dashboard_is_restarted(running: Run) -> None:
    pid = running.child("-m dashboard")
    assert pid is not None
    health = f"http://127.0.0.1:{running.port}/healthz"
    os.kill(pid, signal.SIGSTOP)

    def serving() -> bool:
        new = running.child("-m dashboard")
        if new is None or new == pid:
            return False
        try:
            with urllib.request.urlopen(health, timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    took = wait_for(serving, 40, lambda: f"a new dashboard answering; output:\n{running.output[-2000:]}")
    print(f"dashboard SIGSTOPped: a new one answers /healthz after {took:.2f} s")
    assert "health checks in a row" in running.output


# ------------------------------------------------------------------------------------- start-up failures


def test_busy_dashboard_port_refuses_to_start_and_leaves_nothing(tmp_path: Path, car_clip: Path) -> None:
    cfg = tmp_path / "streams.yaml"
    cfg.write_text(config_text({"a": {"source": car_clip}}, data_dir="data"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        t0 = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "cli.main", "run", "--config", str(cfg), "--port", str(port)],
                             capture_output=True, text=True, timeout=60)
    print(f"busy port: exit {res.returncode} after {time.monotonic() - t0:.1f} s: {res.stderr.strip()[-200:]}")
    assert res.returncode == 2
    assert f"port {port}" in res.stderr and "in use" in res.stderr
    assert "Traceback" not in res.stderr
    assert not processes_mentioning(str(tmp_path))
    RunLock(tmp_path / "data").acquire().release()  # the lock went with it


def test_model_that_cannot_be_fetched_is_one_line_and_run_goes_on_then_leaves_nothing(
        tmp_path: Path, car_clip: Path) -> None:
    """Recording does not depend on the detector: the model check after Redis started says what is missing
    in one line, the workers start anyway (their cameras record), and a stop leaves no process behind."""
    from pipeline.analyse.models import MANIFESTS_DIR

    manifest = json.loads((MANIFESTS_DIR / "yolox_nano.json").read_text())
    manifest.update(name=f"unreachable-{os.getpid()}", url=f"http://127.0.0.1:{free_port()}/gone.onnx",
                    sha256="0" * 64)
    (tmp_path / "unreachable.json").write_text(json.dumps(manifest))
    cfg = tmp_path / "streams.yaml"
    cfg.write_text(config_text({"a": {"source": car_clip}}, data_dir="data",
                               model={"name": str(tmp_path / "unreachable.json")}))
    env = {**os.environ, "SHARPEYE_MODELS_DIR": str(tmp_path / "models"), "SHARPEYE_ASSET_MIRROR": str(tmp_path)}
    seen: set[int] = set()
    log = tmp_path / "run.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "run", "--config", str(cfg),
                                 "--port", str(free_port())], stdout=fh, stderr=subprocess.STDOUT,
                                text=True, env=env, start_new_session=True)
    t0 = time.monotonic()
    while proc.poll() is None and "camera a source: streaming" not in log.read_text() and time.monotonic() - t0 < 60:
        seen.update(descendants(proc.pid))
        time.sleep(0.05)
    assert proc.poll() is None, log.read_text()[-3000:]  # still running: the cameras record without a detector
    seen.update(descendants(proc.pid))
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)
    out = log.read_text()
    print(f"unfetchable model: streaming after {time.monotonic() - t0:.1f} s, {len(seen)} children seen")
    assert proc.returncode == 0, out[-3000:]
    assert "redis-server started" in out  # the model was checked after a child was running
    said = [ln for ln in out.splitlines() if ln.startswith("sharpeye run: model") and "unreachable" in ln]
    assert len(said) == 1, out[-3000:]
    assert "Traceback" not in out
    assert not [p for p in seen if (st := _stat(p)) is not None and st[1] != "Z"]
    assert not processes_mentioning(str(tmp_path))
    assert not (tmp_path / "data" / "redis" / "url").exists()
    RunLock(tmp_path / "data").acquire().release()


def test_external_redis_url_with_a_password_is_never_shown(tmp_path: Path, car_clip: Path, redis_url: str) -> None:
    """A configured bus URL (here the session Redis: unix socket + password) reaches the children
    through the 0600 URL file; the banner names the socket only."""
    password = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs["password"]
    assert password and password in redis_url
    cfg = tmp_path / "streams.yaml"
    cfg.write_text(config_text({"a": {"source": car_clip}}, data_dir="data", redis_url=redis_url,
                               bus={"prefix": "sup-ext"}))
    run = start_run(cfg, free_port(), tmp_path / "data")
    try:
        t0 = time.time()
        r = bus.connect(redis_url)
        wait_for(lambda: bool(r.hget(bus.BusKeys("sup-ext").cameras, "a")) or run.proc.poll() is not None, 45,
                 lambda: f"camera a status; output:\n{run.output[-2000:]}")
        assert run.proc.poll() is None, run.output[-2000:]
        kids = run.children()
        # a worker, the dashboard and the archiver; nothing embedded
        assert len(kids) == 3 and not any("redis-server" in cmdline(p) for p in kids), [cmdline(p) for p in kids]
        for pid in kids:
            assert password not in cmdline(pid)
        assert (tmp_path / "data" / "redis" / "url").stat().st_mode & 0o777 == 0o600
        assert "Sharp Eyes running" in run.output and password not in run.output
        print(f"external bus: {len(kids)} children up {time.time() - t0:.1f} s, password in no command line "
              f"or output line")
    finally:
        code = run.stop()
    assert code == 0 and password not in run.output
    assert not processes_mentioning(str(tmp_path))


# ------------------------------------------------------------------------------------- parts


def test_restart_backoff_grows_to_a_cap_and_resets_after_a_stable_run() -> None:
    c = Child("crashy")
    c.started = 1000.0
    delays = [c.backoff(1001.0) for _ in range(10)]
    assert delays[:4] == [BACKOFF_FIRST_S, BACKOFF_FIRST_S * 2, BACKOFF_FIRST_S * 4, BACKOFF_FIRST_S * 8]
    assert max(delays) == BACKOFF_MAX_S and delays[-1] == BACKOFF_MAX_S
    assert c.backoff(1000.0 + STABLE_S) == BACKOFF_FIRST_S  # a child that ran a minute starts afresh
    print(f"restart delays of a child crashing in a loop: {delays}")


def test_run_lock_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    with RunLock(tmp_path):
        holder = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                                 "from pipeline.runtime.lock import RunLock, DataDirBusy\n"
                                 "try:\n    RunLock(Path(sys.argv[1])).acquire()\nexcept DataDirBusy as e:\n"
                                 "    print(e); sys.exit(2)", str(tmp_path)], capture_output=True, text=True)
        assert holder.returncode == 2 and f"pid {os.getpid()}" in holder.stdout
        with pytest.raises(DataDirBusy):  # flock is per open file: a second open in this process is refused too
            RunLock(tmp_path).acquire()
    RunLock(tmp_path).acquire().release()


def test_heartbeat_writes_at_most_once_a_second(tmp_path: Path) -> None:
    hb = Heartbeat(tmp_path / "w.heartbeat")
    assert beat_age(tmp_path / "w.heartbeat") is None  # no file before the first beat
    hb()
    first = (tmp_path / "w.heartbeat").read_bytes()
    for _ in range(1000):
        hb()
    assert (tmp_path / "w.heartbeat").read_bytes() == first
    age = beat_age(tmp_path / "w.heartbeat")
    assert age is not None and -0.01 <= age < 1.0  # the file's clock and time.time() may differ by a tick
    hb.close()


def test_the_supervisor_names_and_pings_a_sentinel_bus(tmp_path: Path) -> None:
    """``sharpeye run`` with an external Sentinel bus: the banner names the sentinels (no password), and the
    ping that decides whether a dashboard 5xx is the bus's fault asks the current primary through them."""
    from pipeline.runtime.supervisor import _pinger, bus_where
    from tests.support.redis_lab import RedisLab

    assert bus_where("redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/sharpeye") == \
        "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/sharpeye"
    with RedisLab(tmp_path, replicas=1, sentinels=1, min_replicas_to_write=0) as lab:  # started by `with`
        assert _pinger(lab.url)()
    assert not _pinger(f"redis+sentinel://127.0.0.1:{free_port()}/sharpeye")()  # no sentinel answers
