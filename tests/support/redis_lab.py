"""A Redis primary, its replicas and three sentinels as real processes, for the bus HA tests.

Everything lives in a temporary folder and is killed by :meth:`RedisLab.close` (the tests call it in
``finally``; it is also registered with ``atexit``).  With ``netns=True`` every data node runs in its
own Linux network namespace, joined to the test's namespace by a veth pair on a private bridge, so a
node's link can be cut (:meth:`RedisLab.cut`: the bridge port goes down, packets vanish, no TCP reset)
and healed; the sentinels and the clients stay in the test's namespace.  Namespaces, veths and the
bridge carry a random tag and are removed on close.

``python -m tests.support.redis_lab publish ...`` is the publisher the failover tests run as a separate process:
alerts at a steady rate through a real :class:`~pipeline.publish.outbox.Outbox` on a Sentinel URL, every
acknowledged (``send`` returned) message id appended to a file.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

SERVICE = "mymaster"


def free_port() -> int:
    """A port below the kernel's ephemeral range (32768+), free now: an outgoing connection cannot take it
    between this check and redis-server's bind, as it could a port the kernel handed out (seen once)."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=20)


def have_netns() -> bool:
    """Whether this process may create network namespaces and bridges (root, CAP_NET_ADMIN)."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        return False
    name = f"seprobe{uuid.uuid4().hex[:6]}"
    try:
        _run("ip", "netns", "add", name)
    except (subprocess.CalledProcessError, OSError):
        return False
    _run("ip", "netns", "del", name, check=False)
    return True


@dataclass
class Node:
    """One redis-server (data node or sentinel)."""

    name: str
    host: str  # the address clients use
    port: int
    folder: Path
    sentinel: bool = False
    netns: str | None = None
    veth: str | None = None  # the bridge side of its link (netns mode)
    proc: subprocess.Popen[bytes] | None = None
    log: Any = field(default=None, repr=False)

    @property
    def conf(self) -> Path:
        return self.folder / ("sentinel.conf" if self.sentinel else "redis.conf")

    def client(self, timeout: float = 1.0) -> redis.Redis[bytes]:
        return redis.Redis(self.host, self.port, socket_timeout=timeout, socket_connect_timeout=timeout)


class RedisLab:
    """``replicas`` replicas of one primary, watched by ``sentinels`` sentinels (quorum: a majority)."""

    def __init__(self, root: Path, replicas: int = 2, sentinels: int = 3, down_after_ms: int = 1000,
                 failover_timeout_ms: int = 3000, min_replicas_to_write: int = 1, min_replicas_max_lag: int = 2,
                 netns: bool = False):
        self.root = Path(root)
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.min_replicas_to_write = min_replicas_to_write
        self.min_replicas_max_lag = min_replicas_max_lag
        self.use_netns = netns
        self.tag = uuid.uuid4().hex[:4]
        self.bridge = f"sebr{self.tag}"
        self.subnet = f"10.{random.randint(100, 199)}.{random.randint(0, 255)}"
        self.nodes: list[Node] = []
        self.sentinels: list[Node] = []
        self._namespaces: list[str] = []
        self._closed = False
        n = 1 + replicas
        for i in range(n):
            if netns:
                node = Node(f"node{i}", f"{self.subnet}.{10 + i}", 6379, self.root / f"node{i}",
                            netns=f"se{self.tag}n{i}", veth=f"se{self.tag}h{i}")
            else:
                node = Node(f"node{i}", "127.0.0.1", free_port(), self.root / f"node{i}")
            self.nodes.append(node)
        bind = f"{self.subnet}.1" if netns else "127.0.0.1"
        for i in range(sentinels):
            self.sentinels.append(Node(f"sentinel{i}", bind, free_port(), self.root / f"sentinel{i}", sentinel=True))
        atexit.register(self.close)

    # ------------------------------------------------------------------ addresses
    @property
    def url(self) -> str:
        """The Sentinel URL of the bus."""
        return "redis+sentinel://" + ",".join(f"{s.host}:{s.port}" for s in self.sentinels) + f"/{SERVICE}"

    def node_at(self, host: str, port: int) -> Node:
        for node in self.nodes:
            if node.host == host and node.port == int(port):
                return node
        raise KeyError(f"{host}:{port} is not a node of this lab")

    def primary(self) -> Node:
        """The primary according to the first sentinel that answers."""
        for s in self.sentinels:
            try:
                host, port = s.client(0.5).sentinel_get_master_addr_by_name(SERVICE)
                return self.node_at(host.decode() if isinstance(host, bytes) else host, port)
            except (redis.RedisError, OSError, TypeError):
                continue
        raise RuntimeError("no sentinel answers")

    def role(self, node: Node) -> str:
        """``master``/``slave``, or ``down`` when it does not answer."""
        try:
            return str(node.client(0.5).info("replication")["role"])
        except (redis.RedisError, OSError):
            return "down"

    # ------------------------------------------------------------------ life cycle
    def start(self) -> RedisLab:
        # a second start would spawn a second set and lose the first one's processes (``with`` starts already)
        assert all(n.proc is None for n in self.nodes + self.sentinels), "this lab is started already"
        if self.use_netns:
            self._make_network()
        primary = self.nodes[0]
        for node in self.nodes:
            self._start_first_time(node, lambda n: self._write_node_conf(n, None if n is primary else primary))
        for s in self.sentinels:
            self._start_first_time(s, lambda n: self._write_sentinel_conf(n, primary))
        self.wait_settled(primary, 30)
        return self

    def _start_first_time(self, node: Node, write_conf: Any) -> None:
        """Write the config and start; on loopback, a port taken meanwhile by another process means another port."""
        for attempt in range(5):
            write_conf(node)
            self._spawn(node)
            try:
                self._wait_ping(node)
                return
            except RuntimeError as e:
                if node.netns or "Address already in use" not in str(e) or attempt == 4:
                    raise
                node.port = free_port()

    def wait_settled(self, primary: Node, timeout: float) -> None:
        """Until every sentinel names ``primary``, sees every other sentinel and every live replica is in sync."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                ok = True
                live = [n for n in self.nodes if n is not primary and self.role(n) != "down"]
                for s in self.sentinels:
                    st = s.client(0.5).sentinel_master(SERVICE)
                    if (st["ip"], int(st["port"])) != (primary.host, primary.port) or \
                            int(st["num-other-sentinels"]) < len(self.sentinels) - 1 or \
                            int(st["num-slaves"]) < len(live) or "s_down" in str(st.get("flags", "")):
                        ok = False
                        last = f"{s.name}: {st.get('ip')}:{st.get('port')} flags {st.get('flags')} sentinels " \
                               f"{st.get('num-other-sentinels')} replicas {st.get('num-slaves')}"
                        break
                info = primary.client(0.5).info("replication")
                online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                          and v.get("state") == "online"]
                if len(online) < len(live):  # connected_slaves also counts a replica still waiting for its sync
                    ok, last = False, f"{len(online)} of {len(live)} replicas in sync"
                if ok:
                    primary.client(0.5).set("lab:settled", "1")  # NOREPLICAS until the replicas' acks are fresh
                    return
            except (redis.RedisError, OSError) as e:
                last = repr(e)
            time.sleep(0.2)
        raise TimeoutError(f"sentinels did not settle on {primary.name}: {last}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for node in self.sentinels + self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                try:
                    os.kill(node.proc.pid, signal.SIGCONT)  # a stopped process must die too
                    node.proc.kill()
                    node.proc.wait(10)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            if node.log is not None:
                node.log.close()
                node.log = None
        for ns in self._namespaces:
            _run("ip", "netns", "del", ns, check=False)  # takes its end of the veth pair (not always at once)
        if self.use_netns:
            for node in self.nodes:
                if node.veth:
                    _run("ip", "link", "del", node.veth, check=False)
            _run("ip", "link", "del", self.bridge, check=False)
        self._namespaces.clear()

    def __enter__(self) -> RedisLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ faults
    def kill(self, node: Node) -> None:
        """``kill -9``."""
        assert node.proc is not None
        node.proc.kill()
        node.proc.wait(10)

    def restart(self, node: Node) -> None:
        """Start a killed node again with its own config file (an old primary comes back as a primary)."""
        self._spawn(node)
        self._wait_ping(node)

    def freeze(self, node: Node) -> None:
        assert node.proc is not None
        os.kill(node.proc.pid, signal.SIGSTOP)

    def thaw(self, node: Node) -> None:
        assert node.proc is not None
        os.kill(node.proc.pid, signal.SIGCONT)

    def cut(self, node: Node) -> None:
        """Cut the node's link (netns mode): nothing reaches it or leaves it, and no connection is reset."""
        assert node.veth is not None, "cut() needs netns=True"
        _run("ip", "link", "set", node.veth, "down")

    def heal(self, node: Node) -> None:
        assert node.veth is not None
        _run("ip", "link", "set", node.veth, "up")

    # ------------------------------------------------------------------ internals
    def _make_network(self) -> None:
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for i, node in enumerate(self.nodes):
            assert node.netns and node.veth
            peer = f"se{self.tag}p{i}"
            _run("ip", "netns", "add", node.netns)
            self._namespaces.append(node.netns)
            _run("ip", "link", "add", node.veth, "type", "veth", "peer", "name", peer)
            _run("ip", "link", "set", peer, "netns", node.netns)
            _run("ip", "link", "set", node.veth, "master", self.bridge)
            _run("ip", "link", "set", node.veth, "up")
            ns = ("ip", "netns", "exec", node.netns)
            _run(*ns, "ip", "addr", "add", f"{node.host}/24", "dev", peer)
            _run(*ns, "ip", "link", "set", peer, "up")
            _run(*ns, "ip", "link", "set", "lo", "up")

    def _write_node_conf(self, node: Node, primary: Node | None) -> None:
        node.folder.mkdir(parents=True, exist_ok=True)
        lines = [f"port {node.port}", f"bind {node.host}", "protected-mode no", f"dir {node.folder}",
                 "appendonly yes", "appendfsync everysec", 'save ""', "daemonize no",
                 f"min-replicas-to-write {self.min_replicas_to_write}",
                 f"min-replicas-max-lag {self.min_replicas_max_lag}",
                 "repl-ping-replica-period 1", "repl-timeout 5",
                 # a full resync (an old primary rejoining) starts at once, not after the default 5 s wait for
                 # more replicas: with min-replicas-to-write a primary whose replicas all resync refuses writes
                 "repl-diskless-sync-delay 0"]
        if primary is not None:
            lines.append(f"replicaof {primary.host} {primary.port}")
        node.conf.write_text("\n".join(lines) + "\n")

    def _write_sentinel_conf(self, s: Node, primary: Node) -> None:
        s.folder.mkdir(parents=True, exist_ok=True)
        quorum = len(self.sentinels) // 2 + 1
        s.conf.write_text("\n".join([
            f"port {s.port}", f"bind {s.host}", "protected-mode no", f"dir {s.folder}", "daemonize no",
            f"sentinel monitor {SERVICE} {primary.host} {primary.port} {quorum}",
            f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}",
            f"sentinel failover-timeout {SERVICE} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {SERVICE} 1"]) + "\n")

    def _spawn(self, node: Node) -> None:
        argv = ["redis-server", str(node.conf)] + (["--sentinel"] if node.sentinel else [])
        if node.netns:
            argv = ["ip", "netns", "exec", node.netns] + argv  # ip execs redis-server: the pid is Redis's
        if node.log is None:
            node.log = open(node.folder / "log.txt", "ab")
        node.proc = subprocess.Popen(argv, stdout=node.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def _wait_ping(self, node: Node, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert node.proc is not None
            if node.proc.poll() is not None:
                raise RuntimeError(f"{node.name} exited: {(node.folder / 'log.txt').read_text()[-2000:]}")
            try:
                if node.client(0.5).ping():
                    return
            except (redis.RedisError, OSError):
                time.sleep(0.05)
        raise TimeoutError(f"{node.name} does not answer at {node.host}:{node.port}")


# --------------------------------------------------------------------------- the publisher process


def alert_message(camera: str, alert_id: str, phase: str, n: int) -> dict[str, Any]:
    """A bus alert message (docs/schemas/event.schema.json) with a unique id."""
    return {"schema": "sharpeye.event/1", "type": "alert", "id": uuid.uuid4().hex, "alert_id": alert_id,
            "phase": phase, "time": time.time(), "start_time": time.time(), "camera": {"id": camera, "name": camera},
            "rule": {"id": "people", "kind": "presence", "severity": "high"}, "labels": ["person"], "score": 0.9,
            "seq": n}


def publish(args: argparse.Namespace) -> int:
    """Alerts (new, one update, end) at ``--rate`` messages a second for ``--seconds``, through an outbox."""
    from pipeline.publish import bus
    from pipeline.publish.outbox import Outbox

    keys = bus.BusKeys(args.prefix)
    ob = Outbox(Path(args.outbox), bus.connect(args.url), keys, maxlen=1_000_000, wait_replicas=args.wait_replicas,
                wait_timeout_ms=args.wait_timeout_ms)
    ob.start()
    sent = open(args.sent, "a", buffering=1)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))  # stop sending, then drain
    t0 = time.monotonic()
    n = 0
    phases = ("new", "update", "end")
    try:
        while time.monotonic() - t0 < args.seconds and not stopping:
            alert = f"a{n // 3:06d}"
            msg = alert_message(f"cam{n % 4}", alert, phases[n % 3], n)
            ob.send(msg)  # acknowledged: on disk in the outbox
            sent.write(json.dumps({"id": msg["id"], "phase": msg["phase"], "t": msg["time"]}) + "\n")
            n += 1
            time.sleep(max(0.0, t0 + n / args.rate - time.monotonic()))
        deadline = time.monotonic() + args.drain_s
        while time.monotonic() < deadline and (ob.depth() or ob.unconfirmed()):
            time.sleep(0.1)
    finally:
        stats = {"sent": n, "depth": ob.depth(), "unconfirmed": ob.unconfirmed(), **vars(ob.stats)}
        ob.stop(drain_s=0)
        sent.close()
        Path(args.stats).write_text(json.dumps(stats))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.support.redis_lab")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("publish", help="alerts at a steady rate through an outbox")
    p.add_argument("--url", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--outbox", required=True)
    p.add_argument("--sent", required=True)
    p.add_argument("--stats", required=True)
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--drain-s", type=float, default=20.0)
    p.add_argument("--wait-replicas", type=int, default=1)
    p.add_argument("--wait-timeout-ms", type=int, default=1000)
    args = ap.parse_args(argv)
    import logging
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s publisher %(levelname)s: %(message)s")
    return publish(args)


if __name__ == "__main__":
    sys.exit(main())
