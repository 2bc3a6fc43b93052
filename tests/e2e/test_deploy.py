"""deploy/: the systemd units and Kubernetes manifests are checked against the real tools and the real code.

Why each check: a unit file with a typo is silently ignored by systemd (a warning in the journal, the
service runs without the setting), a manifest's command with a flag the program lacks crash-loops
only on the cluster, and a probe on a path the dashboard does not serve restarts healthy pods.  So:

* every unit passes ``systemd-analyze verify`` with no output at all (warnings fail too), with the
  drop-ins, and ``systemd-analyze security`` rates each service OK;
* every ``ExecStart=`` and every container ``command`` is parsed by the program's own argparse
  parser (no subprocess, nothing started), and paths they name are where the unit or pod puts them;
* the probes run for real: the dashboard's paths against the real app, the worker's heartbeat
  command against a real heartbeat file;
* the Redis and Sentinel configs of both deployments start real redis-server processes, replicate,
  and the Sentinel hands Sharp Eyes' own ``redis+sentinel://`` client the primary;
* the Kubernetes config file validates with ``sharpeye check``'s loader.

No cluster and no systemd as PID 1 are needed (there is neither in CI).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from pipeline.runtime.procs import stop_children
from tests.support.waits import wait_for

# little CPU, timings bounded by seconds: scripts/test runs it beside the timed e2e tests
pytestmark = pytest.mark.beside

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "dashboard", "history", "cli")
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
K8S = DEPLOY / "kubernetes"
BIN = DEPLOY / "bin"
VENV = Path(sys.executable).parent.parent  # stands in for /opt/sharpeye/venv
UNIT_PREFIX = "/opt/sharpeye/venv"
SCRIPTS_PREFIX = "/usr/local/lib/sharpeye"
SERVICES = sorted(p.name for p in SYSTEMD.glob("*.service"))
UNITS = sorted(p.name for p in SYSTEMD.iterdir() if p.suffix in (".service", ".timer", ".target"))


def systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze missing: scripts/setup installs Debian's systemd package"
    return exe


# ------------------------------------------------------------------------------------------ unit files


def unit_sections(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file as systemd reads it: sections of (key, value), continuation lines joined."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def unit_values(path: Path, section: str, key: str) -> list[str]:
    return [v for k, v in unit_sections(path).get(section, []) if k == key]


def installed_copy(dest: Path) -> Path:
    """The units as they would be installed, with this checkout standing in for /opt/sharpeye/venv and
    /usr/local/lib/sharpeye (systemd-analyze checks that each ExecStart program exists)."""
    dest.mkdir()
    for p in SYSTEMD.iterdir():
        if p.is_file() and p.suffix in (".service", ".timer", ".target"):
            text = p.read_text().replace(UNIT_PREFIX, str(VENV)).replace(SCRIPTS_PREFIX, str(BIN))
            (dest / p.name).write_text(text)
    for name in UNITS:  # instances of the templates, as `systemctl start sharpeye-worker@3` makes them
        if name.endswith("@.service") or name.endswith("@.timer"):
            stem, suffix = name.rsplit("@", 1)
            (dest / f"{stem}@3{suffix}").symlink_to(name)
    return dest


def analyze(args: list[str], unit_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_path}:", "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run([systemd_analyze(), *args], capture_output=True, text=True, env=env, timeout=120)


def instance_files(folder: Path) -> list[str]:
    names = [n for n in UNITS if "@." not in n]
    names += [f"{n.rsplit('@', 1)[0]}@3{n.rsplit('@', 1)[1]}" for n in UNITS if "@." in n]
    return [str(folder / n) for n in names]


def test_every_unit_verifies_without_a_word(tmp_path: Path) -> None:
    units = installed_copy(tmp_path / "units")
    res = analyze(["verify", "--man=no", *instance_files(units)], units)
    assert res.returncode == 0 and not (res.stdout + res.stderr).strip(), res.stdout + res.stderr
    # systemd-analyze prints unknown keys but exits 0: make sure this check would see one
    bad = tmp_path / "bad"
    shutil.copytree(units, bad, symlinks=True)
    broken = (bad / "sharpeye-dashboard.service").read_text().replace("RestartSec=2", "RestartSec=2\nRestartSek=2")
    (bad / "sharpeye-dashboard.service").write_text(broken)
    res = analyze(["verify", "--man=no", str(bad / "sharpeye-dashboard.service")], bad)
    assert "Unknown key" in res.stderr and "RestartSek" in res.stderr


@pytest.mark.parametrize("dropin,units", [("gpu.conf", ["sharpeye-worker@"]),
                                          ("shared-store.conf", ["sharpeye-worker@", "sharpeye-dashboard",
                                                                 "sharpeye-retention"])])
def test_dropins_verify(tmp_path: Path, dropin: str, units: list[str]) -> None:
    folder = installed_copy(tmp_path / "units")
    files = []
    for unit in units:
        d = folder / f"{unit}.service.d"
        d.mkdir()
        shutil.copy(SYSTEMD / "dropins" / dropin, d / dropin)
        files.append(str(folder / (f"{unit}3.service" if unit.endswith("@") else f"{unit}.service")))
    res = analyze(["verify", "--man=no", *files], folder)
    assert res.returncode == 0 and not (res.stdout + res.stderr).strip(), res.stdout + res.stderr
    # the drop-in is really read from there: a misspelt key in it is reported
    first = folder / f"{units[0]}.service.d" / dropin
    first.write_text(first.read_text() + "\nPrivateTmpp=yes\n")
    res = analyze(["verify", "--man=no", files[0]], folder)
    assert "PrivateTmpp" in res.stderr, res.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_service_hardening(tmp_path: Path, service: str) -> None:
    path = SYSTEMD / service
    s = dict(unit_sections(path)["Service"])
    runs_as_root = service.startswith("sharpeye-worker-check")  # it restarts a unit: root by design
    if not runs_as_root:
        assert s.get("User") in ("sharpeye", "redis"), f"{service}: User="
    for key, want in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes"),
                      ("ProtectHome", "yes"), ("CapabilityBoundingSet", "")]:
        assert s.get(key) == want, f"{service}: {key}={s.get(key)!r}, want {want!r}"
    if s.get("Type") != "oneshot":
        assert s.get("Restart") == "always" and float(s["RestartSec"]) > 0, service
        assert unit_values(path, "Unit", "StartLimitIntervalSec") == ["0"], f"{service}: gives up restarting"
        writable = unit_values(path, "Service", "ReadWritePaths")
        state = unit_values(path, "Service", "StateDirectory")
        assert writable and state and all(w == f"/var/lib/{state[0]}" for w in writable), service
    if "SystemCallFilter" in s:  # a filtered call fails with EPERM instead of killing the service (SIGSYS)
        assert s.get("SystemCallErrorNumber") == "EPERM", service
    if s.get("User") == "sharpeye":
        assert unit_values(path, "Service", "LoadCredential") == ["redis-url:/etc/sharpeye/redis-url"], service
        assert "EnvironmentFile" in s
    units = installed_copy(tmp_path / "units")
    name = service.replace("@.service", "@3.service")
    res = analyze(["security", "--offline=yes", "--threshold=30", str(units / name)], units)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr


def test_sysusers_creates_the_service_user_with_the_image_uid(tmp_path: Path) -> None:
    exe = shutil.which("systemd-sysusers")
    assert exe, "systemd-sysusers missing: scripts/setup installs Debian's systemd package"
    (tmp_path / "etc").mkdir()
    res = subprocess.run([exe, f"--root={tmp_path}", str(SYSTEMD / "sharpeye.sysusers.conf")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text()
    assert "sharpeye:x:10001:10001:Sharp Eyes:/var/lib/sharpeye:" in passwd, passwd
    dockerfile = (DEPLOY / "container" / "Dockerfile").read_text()
    assert "--uid 10001" in dockerfile
    for package in PACKAGES:  # the image installs every top-level package of the project
        assert f"COPY {package} /src/{package}" in dockerfile, package
    assert all(d["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001
               for name, d in ((d["metadata"]["name"], d) for _, d in workloads()) if name != "sharpeye-redis")


def test_no_watchdog_claimed_without_sd_notify() -> None:
    """WatchdogSec= would kill a worker that never pings: the program does not speak sd_notify (yet)."""
    code = "\n".join(p.read_text() for d in PACKAGES for p in (ROOT / d).rglob("*.py"))
    speaks = "WATCHDOG=1" in code or "NOTIFY_SOCKET" in code
    for service in SERVICES:
        watchdog = unit_values(SYSTEMD / service, "Service", "WatchdogSec")
        notify = unit_values(SYSTEMD / service, "Service", "Type") == ["notify"]
        if service.startswith("sharpeye-redis") or service.startswith("sharpeye-sentinel"):
            assert not watchdog, "redis-server sends READY=1 but no watchdog pings"
            continue
        assert speaks or (not watchdog and not notify), f"{service}: Type=notify/WatchdogSec without sd_notify"


# ------------------------------------------------------------------------------------------ commands vs the CLI


class _Parsed(Exception):
    """Raised by the patched parse_args: the program's own parser accepted the arguments."""


def parse_with_program(monkeypatch: pytest.MonkeyPatch, program: list[str]) -> tuple[str, argparse.Namespace]:
    """Run the argv a unit or pod would start through the real program's argparse parser, and stop there.

    ``python -m MODULE ...`` calls MODULE's ``main`` (its first parse_args raises _Parsed, so nothing
    starts); ``python SCRIPT ...`` loads a deploy/bin script the same way; ``sharpeye SUB ...`` uses
    cli.main.build_parser.  An unknown flag or a missing required one makes argparse exit 2.
    """
    real = argparse.ArgumentParser.parse_args

    def capture(self: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> Any:
        raise _Parsed(real(self, args, namespace))

    assert Path(program[0]).name in ("python", "python3", "sharpeye"), program
    if Path(program[0]).name == "sharpeye":
        from cli.main import build_parser
        return "sharpeye " + program[1], build_parser().parse_args(program[1:])
    if program[1] == "-m":
        name, argv = program[2], program[3:]
        mod = importlib.import_module(name if name != "dashboard" else "dashboard.__main__")
    else:
        script = BIN / Path(program[1]).name
        assert script.is_file(), f"{program[1]}: no such script in deploy/bin"
        name, argv = script.name, program[2:]
        modname = script.name.replace("-", "_")
        spec = importlib.util.spec_from_loader(modname, importlib.machinery.SourceFileLoader(modname, str(script)))
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    try:
        mod.main(argv)
    except _Parsed as p:
        return name, p.args[0]
    finally:
        monkeypatch.setattr(argparse.ArgumentParser, "parse_args", real)
    raise AssertionError(f"{name}: main() returned without parsing its arguments")


def expand_unit(path: Path, line: str) -> list[str]:
    """An ExecStart= line with the unit's specifiers and its Environment= defaults filled in."""
    env: dict[str, str] = {}
    for assignment in unit_values(path, "Service", "Environment"):
        for item in shlex.split(assignment):
            k, _, v = item.partition("=")
            env[k] = v
    line = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], line)
    for spec, value in {"%i": "0", "%d": "/run/credentials/unit", "%t": "/run", "%H": "host-a"}.items():
        line = line.replace(spec, value)
    return shlex.split(line)


@pytest.mark.parametrize("service", [s for s in SERVICES if s.startswith("sharpeye-") and "redis" not in s
                                     and "sentinel" not in s])
def test_unit_commands_are_real_cli(monkeypatch: pytest.MonkeyPatch, service: str) -> None:
    path = SYSTEMD / service
    (start,) = unit_values(path, "Service", "ExecStart")
    argv = expand_unit(path, start)
    assert argv[0].startswith(UNIT_PREFIX + "/bin/"), argv[0]
    if argv[1] != "-m":
        assert argv[1].startswith(SCRIPTS_PREFIX + "/"), argv[1]
    name, ns = parse_with_program(monkeypatch, argv)
    if getattr(ns, "config", None) is not None:
        assert ns.config == "/etc/sharpeye/streams.yaml"
    if getattr(ns, "redis_url_file", None) is not None:
        assert ns.redis_url_file == "/run/credentials/unit/redis-url"  # the LoadCredential= name
    if name == "pipeline.runtime.worker":
        assert ns.shard == "0/1" and ns.heartbeat == "/run/sharpeye-worker-0/heartbeat"
        assert unit_values(path, "Service", "RuntimeDirectory") == ["sharpeye-worker-%i"]
    if name == "sharpeye-worker-check":
        worker = expand_unit(SYSTEMD / "sharpeye-worker@.service",
                             unit_values(SYSTEMD / "sharpeye-worker@.service", "Service", "ExecStart")[0])
        assert str(ns.heartbeat) == worker[worker.index("--heartbeat") + 1]
        assert ns.unit == "sharpeye-worker@0.service"


def test_redis_units_run_the_prepared_config() -> None:
    for service, role, conf in [("sharpeye-redis.service", "redis", "/var/lib/sharpeye-redis/redis.conf"),
                                ("sharpeye-sentinel.service", "sentinel", "/var/lib/sharpeye-sentinel/sentinel.conf")]:
        path = SYSTEMD / service
        assert unit_values(path, "Service", "ExecStartPre") == [f"{SCRIPTS_PREFIX}/sharpeye-redis-prepare {role}"]
        (start,) = unit_values(path, "Service", "ExecStart")
        assert shlex.split(start)[:2] == ["/usr/bin/redis-server", conf]
        assert unit_values(path, "Service", "StateDirectory") == [Path(conf).parent.name]


# ------------------------------------------------------------------------------------------ the scripts, for real


def test_worker_check_follows_the_supervisor_rule(tmp_path: Path) -> None:
    from pipeline.runtime.heartbeat import Heartbeat

    beat = tmp_path / "heartbeat"
    check = [sys.executable, str(BIN / "sharpeye-worker-check"), "--unit", "sharpeye-worker@0.service",
             "--heartbeat", str(beat), "--dry-run"]

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*check, *extra], capture_output=True, text=True, timeout=30)

    started = time.monotonic()
    r = run("--started-monotonic", str(started), "--grace", "60")
    assert r.returncode == 0, r.stderr  # starting, within its grace
    r = run("--started-monotonic", str(started - 61), "--grace", "60")
    assert r.returncode == 1 and "no heartbeat within 60 s" in r.stderr
    hb = Heartbeat(beat)
    hb()
    r = run("--started-monotonic", str(started), "--timeout", "15")
    assert r.returncode == 0, r.stderr
    time.sleep(1.2)
    r = run("--started-monotonic", str(started), "--timeout", "1")
    assert r.returncode == 1 and "detect loop silent" in r.stderr
    hb.close()


def test_retention_script_deletes_what_is_due(tmp_path: Path) -> None:
    from tests.support.config import write_config
    from tests.support.record import fake_segments

    cfg = write_config(tmp_path, {"cam1": {"source": "rtsp://10.0.0.1/x"}}, data_dir=str(tmp_path / "data"),
                       recordings={"retain_days": 1})
    now = time.time()
    old, recent = fake_segments(tmp_path / "data" / "recordings", "cam1", [now - 3 * 86400, now - 600])
    r = subprocess.run([sys.executable, str(BIN / "sharpeye-retention"), "--config", str(cfg), "--no-bus", "--once"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert '"deleted_files": 1' in r.stdout
    assert not old.exists() and recent.exists()


# ------------------------------------------------------------------------------------------ Redis and Sentinel


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Procs:
    """redis-server processes started by a test, stopped (and reaped) at its end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, log: Path) -> None:
        exe = shutil.which("redis-server")
        assert exe, "redis-server missing (scripts/setup installs it)"
        self.procs.append(subprocess.Popen([exe, *args], stdout=log.open("wb"), stderr=subprocess.STDOUT))

    def stop(self) -> None:
        stop_children(self.procs)


@pytest.fixture()
def procs() -> Iterator[Procs]:
    ps = Procs()
    try:
        yield ps
    finally:
        ps.stop()


def check_bus(password: str, primary: int, replica: int, sentinel: int, logs: Path) -> None:
    """The pair replicates, a lone primary refuses writes (min-replicas-to-write) until its replica is
    in sync, the Sentinel names the primary, and Sharp Eyes' Sentinel client writes through it."""
    import redis

    from pipeline.publish import bus

    p = redis.Redis(port=primary, password=password, socket_timeout=2)
    wait_for(lambda: _pings(p), 10, lambda: (logs / "primary.log").read_text()[-2000:])
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=primary, socket_timeout=2).set("k", "v")
    assert p.config_get("appendonly")["appendonly"] == "yes"
    assert p.config_get("appendfsync")["appendfsync"] == "everysec"
    assert p.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    assert p.config_get("min-replicas-to-write")["min-replicas-to-write"] == "1"
    r = redis.Redis(port=replica, password=password, socket_timeout=2)
    wait_for(lambda: r.info("replication").get("master_link_status") == "up", 20,
             lambda: (logs / "replica.log").read_text()[-2000:])
    wait_for(lambda: _writes(p), 20, "the primary to take writes once its replica is in sync")
    s = redis.Redis(port=sentinel, socket_timeout=2)
    wait_for(lambda: _pings(s), 10, lambda: (logs / "sentinel.log").read_text()[-2000:])
    assert s.execute_command("SENTINEL", "get-master-addr-by-name", "sharpeye") == [b"127.0.0.1", str(primary).encode()]
    wait_for(lambda: len(s.execute_command("SENTINEL", "replicas", "sharpeye")) == 1, 30,
             "the Sentinel to find the replica")
    client = bus.connect(f"redis+sentinel://:{password}@127.0.0.1:{sentinel}/sharpeye")
    client.xadd("sharpeye:deploy-test", {"m": "1"})
    wait_for(lambda: r.xlen("sharpeye:deploy-test") == 1, 5, "the replica to hold the message")


def _pings(c: Any) -> bool:
    try:
        return bool(c.ping())
    except Exception:
        return False


def _writes(c: Any) -> bool:
    import redis

    try:
        return bool(c.set("deploy-test", "1"))
    except redis.ResponseError as e:
        assert "NOREPLICAS" in str(e), e
        return False


def test_systemd_redis_and_sentinel_configs_run(tmp_path: Path, procs: Procs) -> None:
    """sharpeye-redis-prepare and the shipped configs, as the two units run them (ports moved for the test)."""
    password = "deploy" + os.urandom(8).hex()
    pp, rp, sp = free_port(), free_port(), free_port()
    dirs = {n: (tmp_path / n / "run", tmp_path / n / "state") for n in ("primary", "replica", "sentinel")}
    for run_dir, state in dirs.values():
        run_dir.mkdir(parents=True)
        state.mkdir(parents=True)

    def prepare(role: str, who: str, **env: str) -> None:
        run_dir, state = dirs[who]
        res = subprocess.run(["sh", str(BIN / "sharpeye-redis-prepare"), role], capture_output=True, text=True,
                             env={"PATH": os.environ["PATH"], "RUNTIME_DIRECTORY": str(run_dir),
                                  "STATE_DIRECTORY": str(state), "REDIS_PASSWORD": password,
                                  "SHARPEYE_ETC": str(SYSTEMD / "redis"), **env}, timeout=30)
        assert res.returncode == 0, res.stderr

    prepare("redis", "primary")
    prepare("redis", "replica", REDIS_REPLICAOF="127.0.0.1", REDIS_PRIMARY_PORT=str(pp))
    prepare("sentinel", "sentinel", SENTINEL_PRIMARY="127.0.0.1", REDIS_PRIMARY_PORT=str(pp))
    secrets = dirs["primary"][0] / "secrets.conf"
    assert secrets.stat().st_mode & 0o077 == 0 and password in secrets.read_text()
    sentinel_conf = dirs["sentinel"][1] / "sentinel.conf"
    assert sentinel_conf.stat().st_mode & 0o077 == 0 and "@" not in sentinel_conf.read_text().replace("sharpeye@", "")
    # a second start keeps the state file (the role Sentinel gave the host), rewrites the password include
    before = (dirs["replica"][1] / "redis.conf").read_text()
    prepare("redis", "replica", REDIS_REPLICAOF="10.9.9.9")
    assert (dirs["replica"][1] / "redis.conf").read_text() == before
    bad = subprocess.run(["sh", str(BIN / "sharpeye-redis-prepare"), "redis"], capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "RUNTIME_DIRECTORY": str(tmp_path),
                              "STATE_DIRECTORY": str(tmp_path), "REDIS_PASSWORD": "has space"}, timeout=30)
    assert bad.returncode == 2 and "letters and digits" in bad.stderr

    local = ["--bind", "127.0.0.1"]
    procs.start(str(dirs["primary"][1] / "redis.conf"), "--port", str(pp), *local, log=tmp_path / "primary.log")
    procs.start(str(dirs["replica"][1] / "redis.conf"), "--port", str(rp), *local, log=tmp_path / "replica.log")
    procs.start(str(sentinel_conf), "--sentinel", "--port", str(sp), *local, log=tmp_path / "sentinel.log")
    check_bus(password, pp, rp, sp, tmp_path)


def test_kubernetes_redis_init_and_configs_run(tmp_path: Path, procs: Procs) -> None:
    """redis-init.sh as the StatefulSet's init container runs it: first start, then a pod that asks the Sentinel."""
    password = "deploy" + os.urandom(8).hex()
    ports = {i: free_port() for i in range(3)}
    sport = free_port()

    def init(ordinal: int) -> str:
        res = subprocess.run(
            ["sh", str(K8S / "base" / "redis" / "redis-init.sh")], capture_output=True, text=True, timeout=60,
            env={"PATH": os.environ["PATH"], "REDIS_PASSWORD": password, "POD_NAME": f"sharpeye-redis-{ordinal}",
                 "SELF": "127.0.0.1", "PEERS": "127.0.0.1", "REDIS_PORT": str(ports[ordinal]),
                 "SENTINEL_PORT": str(sport), "FIRST_PRIMARY": f"127.0.0.1 {ports[0]}",
                 "TEMPLATES": str(K8S / "base" / "redis"), "DATA": str(tmp_path / f"pod{ordinal}")})
        assert res.returncode == 0, res.stderr
        return res.stdout

    out0 = init(0)
    assert "no sentinel answered" in out0 and "(primary)" in out0
    out1 = init(1)
    assert "no sentinel answered" in out1 and f"replica of 127.0.0.1:{ports[0]}" in out1
    conf = tmp_path / "pod0" / "conf"
    assert "replicaof" not in (conf / "redis.conf").read_text()
    assert (conf / "redis.conf").stat().st_mode & 0o077 == 0
    procs.start(str(conf / "redis.conf"), "--bind", "127.0.0.1", log=tmp_path / "primary.log")
    procs.start(str(tmp_path / "pod1" / "conf" / "redis.conf"), "--bind", "127.0.0.1", log=tmp_path / "replica.log")
    procs.start(str(conf / "sentinel.conf"), "--sentinel", "--bind", "127.0.0.1", log=tmp_path / "sentinel.log")
    check_bus(password, ports[0], ports[1], sport, tmp_path)
    # pod 2 starting later asks the Sentinel and follows the primary it names, whatever its ordinal says
    out2 = init(2)
    assert "sentinel 127.0.0.1: primary is 127.0.0.1" in out2 and f"replica of 127.0.0.1:{ports[0]}" in out2


# ------------------------------------------------------------------------------------------ Kubernetes manifests


def load_docs(path: Path) -> list[dict[str, Any]]:
    yaml = YAML(typ="safe")
    return [d for d in yaml.load_all(path.read_text()) if d]


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for folder in ("base", "gpu"):
        kust = load_docs(K8S / folder / "kustomization.yaml")[0]
        for res in kust["resources"]:
            p = (K8S / folder / res)
            if p.is_file():
                out += [(p, d) for d in load_docs(p)]
    return out


def workloads() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p, d in manifests() if d["kind"] in ("Deployment", "StatefulSet")]


def secrets_example() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in load_docs(K8S / "base" / "secrets.example.yaml")}


def config_maps() -> dict[str, list[str]]:
    kust = load_docs(K8S / "base" / "kustomization.yaml")[0]
    return {g["name"]: [Path(f).name for f in g["files"]] for g in kust["configMapGenerator"]}


def test_kustomizations_list_existing_files() -> None:
    for folder in ("base", "gpu"):
        kust = load_docs(K8S / folder / "kustomization.yaml")[0]
        assert kust["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and kust["namespace"] == "sharpeye"
        for res in kust["resources"]:
            assert (K8S / folder / res).exists(), f"{folder}: {res}"
        for gen in kust.get("configMapGenerator", []):
            for f in gen["files"]:
                assert (K8S / folder / f).is_file(), f
    # hashed ConfigMap names: a changed config must roll the pods (a worker does not follow a ConfigMap
    # volume's symlink swap, docs/deploy.md)
    assert not load_docs(K8S / "base" / "kustomization.yaml")[0].get("generatorOptions", {}).get(
        "disableNameSuffixHash")
    names = {p.name for p in (K8S / "base").glob("*.yaml")} - {"kustomization.yaml", "secrets.example.yaml",
                                                                "streams.yaml"}
    listed = set(load_docs(K8S / "base" / "kustomization.yaml")[0]["resources"])
    assert names == listed, f"manifests not in kustomization.yaml: {names - listed}"


def test_every_manifest_has_its_required_keys() -> None:
    required = {"Deployment": ["spec.selector.matchLabels", "spec.template.metadata.labels",
                               "spec.template.spec.containers"],
                "StatefulSet": ["spec.serviceName", "spec.selector.matchLabels", "spec.template.spec.containers"],
                "Service": ["spec.selector", "spec.ports"], "PodDisruptionBudget": ["spec.selector.matchLabels"],
                "PersistentVolumeClaim": ["spec.accessModes", "spec.resources.requests.storage"],
                "NetworkPolicy": ["spec.podSelector", "spec.ingress"], "Namespace": []}
    api = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "Service": "v1", "PodDisruptionBudget": "policy/v1",
           "PersistentVolumeClaim": "v1", "NetworkPolicy": "networking.k8s.io/v1", "Namespace": "v1"}
    for path, doc in manifests():
        kind = doc["kind"]
        assert kind in required, f"{path.name}: unexpected kind {kind}"
        assert doc["apiVersion"] == api[kind] and doc["metadata"]["name"], path.name
        for dotted in required[kind]:
            node: Any = doc
            for part in dotted.split("."):
                assert isinstance(node, dict) and part in node, f"{path.name} {kind}: {dotted}"
                node = node[part]
        if kind in ("Deployment", "StatefulSet"):
            sel = doc["spec"]["selector"]["matchLabels"]
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert sel.items() <= labels.items(), f"{doc['metadata']['name']}: selector does not match its pods"
            for c in doc["spec"]["template"]["spec"]["containers"]:
                assert c["image"] and c["command"] and c["resources"]["requests"], c["name"]
                assert c["securityContext"]["allowPrivilegeEscalation"] is False
                assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert doc["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_selectors_match_and_do_not_overlap() -> None:
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for _, d in workloads()}
    owners = {d["metadata"]["name"]: d["spec"]["selector"]["matchLabels"] for _, d in workloads()}
    for name, sel in owners.items():
        others = [o for o, labels in pods.items() if o != name and sel.items() <= labels.items()]
        assert not others, f"{name}'s selector also takes the pods of {others}"
    for path, doc in manifests():
        if doc["kind"] in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
            sel = doc["spec"].get("selector") or doc["spec"].get("podSelector")
            sel = sel.get("matchLabels", sel)
            assert any(sel.items() <= labels.items() for labels in pods.values()), f"{path.name}: selects no pod"


def test_volumes_secrets_and_configmaps_exist() -> None:
    secrets = secrets_example()
    cms = config_maps()
    claims = {d["metadata"]["name"] for _, d in manifests() if d["kind"] == "PersistentVolumeClaim"}
    for _, doc in workloads():
        spec = doc["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        templates = {t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])}
        for c in spec.get("initContainers", []) + spec["containers"]:
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes or m["name"] in templates, f"{c['name']}: volume {m['name']}"
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]]["stringData"], f"{ref}"
        for v in volumes.values():
            sources = v.get("projected", {}).get("sources", [])
            if any("tls/tls.key" in {i["path"] for i in src.get("secret", {}).get("items", [])} for src in sources):
                assert v["projected"].get("defaultMode") == 0o440, "the TLS key readable by the pod's group only"
                assert spec["securityContext"].get("fsGroup") == spec["securityContext"]["runAsUser"]
            for src in sources + [v]:
                if "configMap" in src:
                    cm = src["configMap"]
                    assert cm["name"] in cms, cm["name"]
                    for item in cm.get("items", []):
                        assert item["key"] in cms[cm["name"]], item
                if "secret" in src:
                    sec = src["secret"]
                    for item in sec.get("items", []):
                        assert item["key"] in secrets[sec.get("name") or sec.get("secretName")]["stringData"], item
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in claims


def mount_of(container: dict[str, Any], spec: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    """The volume a container path lies on (the longest mountPath prefix) and the path inside it."""
    best = max((m for m in container["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")),
               key=lambda m: len(m["mountPath"]), default=None)
    assert best is not None, f"{container['name']}: {path} is on no volume"
    volume = next(v for v in spec["volumes"] if v["name"] == best["name"])
    return volume, path[len(best["mountPath"].rstrip("/")) + 1:]


def projected_paths(volume: dict[str, Any]) -> set[str]:
    out = set()
    for src in volume.get("projected", {}).get("sources", []):
        for kind in ("configMap", "secret"):
            out |= {i["path"] for i in src.get(kind, {}).get("items", [])}
    return out


def sharpeye_containers() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    out = []
    for _, doc in workloads():
        spec = doc["spec"]["template"]["spec"]
        for c in spec["containers"]:
            if c["image"].startswith("sharpeye:"):
                out.append((doc["metadata"]["name"], spec, c))
    return out


def test_container_commands_are_real_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = set()
    for name, spec, c in sharpeye_containers():
        program, ns = parse_with_program(monkeypatch, c["command"])
        seen.add(program)
        for arg in ("config", "redis_url_file"):
            value = getattr(ns, arg, None)
            if value is None:
                continue
            volume, inside = mount_of(c, spec, value)
            assert inside in projected_paths(volume), f"{name}: {value} is not in its projected volume"
        if program == "pipeline.runtime.worker":
            assert ns.shard == "0/1" and not ns.camera, f"{name}: leases, not shards, spread the cameras"
            volume, _ = mount_of(c, spec, ns.heartbeat)
            assert "emptyDir" in volume, f"{name}: the heartbeat needs a writable folder"
            for probe in ("startupProbe", "livenessProbe"):
                cmd = c[probe]["exec"]["command"]
                assert ns.heartbeat in cmd[-1], f"{name} {probe}: reads another file than --heartbeat"
    assert seen == {"pipeline.runtime.worker", "dashboard", "history.archiver", "sharpeye-retention"}


def test_worker_probe_reads_a_real_heartbeat(tmp_path: Path) -> None:
    from pipeline.runtime.heartbeat import Heartbeat

    for name, _, c in sharpeye_containers():
        if "livenessProbe" not in c or "exec" not in c["livenessProbe"]:
            continue
        beat = tmp_path / f"{name}.heartbeat"
        cmd = [sys.executable, *c["livenessProbe"]["exec"]["command"][1:]]
        cmd[-1] = cmd[-1].replace("/run/sharpeye/heartbeat", str(beat))
        assert subprocess.run(cmd, timeout=30).returncode == 1, "no beat yet must fail"
        hb = Heartbeat(beat)
        hb()
        assert subprocess.run(cmd, timeout=30).returncode == 0, "a fresh beat must pass"
        hb.close()
        old = f"{time.monotonic() - 20:.3f}".rjust(23) + "\n"
        beat.write_text(old)
        assert subprocess.run(cmd, timeout=30).returncode == 1, "a beat 20 s old must fail"


def k8s_config(tmp_path: Path) -> Path:
    """The ConfigMap's streams.yaml where the pods see it, with its data_dir moved into tmp_path and the
    TLS pair (Secret sharpeye-dashboard-tls) made here."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "room")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls" / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                                 serialization.PrivateFormat.PKCS8,
                                                                 serialization.NoEncryption()))
    text = (K8S / "base" / "streams.yaml").read_text()
    assert "data_dir: /var/lib/sharpeye\n" in text
    path = tmp_path / "streams.yaml"
    path.write_text(text.replace("data_dir: /var/lib/sharpeye\n", f"data_dir: {tmp_path / 'data'}\n"))
    return path


def test_kubernetes_config_validates_and_matches_the_manifests(tmp_path: Path) -> None:
    from cli.args import validate_config

    cfg = validate_config(str(k8s_config(tmp_path)))
    assert cfg.cluster.enabled, "replicated workers without leases would all run every camera"
    assert cfg.redis_url is None, "the bus URL holds a password: it comes from the Secret, not the ConfigMap"
    assert cfg.dashboard.database_url and "@" in cfg.dashboard.database_url
    assert ":" not in cfg.dashboard.database_url.split("//", 1)[1].split("@", 1)[0], "password in the ConfigMap"
    assert cfg.dashboard.tls, "a dashboard on 0.0.0.0 needs TLS"
    for name, _spec, c in sharpeye_containers():
        if name != "sharpeye-dashboard":
            continue
        (port,) = c["ports"]
        assert port["containerPort"] == cfg.dashboard.port
        for probe in ("readinessProbe", "livenessProbe"):
            get = c[probe]["httpGet"]
            assert get["port"] == port["name"] and get["scheme"] == ("HTTPS" if cfg.dashboard.tls else "HTTP")
    service = next(d for _, d in manifests()
                   if d["kind"] == "Service" and d["metadata"]["name"] == "sharpeye-dashboard")
    assert service["spec"]["ports"][0]["targetPort"] == "https"


def test_dashboard_probe_paths_answer_as_the_manifest_says(tmp_path: Path, redis_url: str) -> None:
    """The readiness/liveness path serves without Redis (so a bus outage does not empty the Service);
    /healthz is 200 only while the bus answers."""
    from fastapi.testclient import TestClient

    from cli.args import validate_config
    from dashboard.app import create_app

    cfg = validate_config(str(k8s_config(tmp_path)))
    cfg = cfg.model_copy(update={"dashboard": cfg.dashboard.model_copy(update={"database_url": None})})
    paths = {c[p]["httpGet"]["path"] for name, _, c in sharpeye_containers() if name == "sharpeye-dashboard"
             for p in ("readinessProbe", "livenessProbe")}
    assert paths == {"/login"}
    with TestClient(create_app(cfg, redis_url, tls=True), base_url="https://testserver") as up:
        assert up.get("/login").status_code == 200
        assert up.get("/healthz").status_code == 200
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with TestClient(create_app(cfg, dead, tls=True), base_url="https://testserver") as down:
        assert down.get("/login").status_code == 200
        assert down.get("/healthz").status_code == 503


def test_gpu_workers_request_a_gpu_and_keep_off_cpu_nodes() -> None:
    (doc,) = [d for p, d in manifests() if p.parent.name == "gpu" and d["kind"] == "Deployment"]
    spec = doc["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert c["resources"]["requests"]["nvidia.com/gpu"] == c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    kust = load_docs(K8S / "gpu" / "kustomization.yaml")[0]
    assert kust["resources"][0] == "../base"
