"""Hosts on one machine: each a Linux network namespace with its own address, joined by a private bridge.

The test's own namespace is on the bridge too (address ``<subnet>.1``), so servers it starts there
(redis-server, the RTSP simulator) bound to that address are reachable from every host, and nothing
else is: a host has no route out.  :meth:`NetLab.cut` takes a host's bridge port down (packets
vanish, no TCP reset: what a pulled cable or a dead switch port does), :meth:`NetLab.heal` brings it
back.  Names carry a random tag; :meth:`NetLab.close` (also registered with ``atexit``) kills what runs
in the namespaces and removes them, their veths and the bridge, whatever happened before.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass
from typing import Any


def _ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *argv], capture_output=True, text=True, check=check, timeout=20)


def netns_unavailable() -> str | None:
    """Why namespaces cannot be made here (not root, no ``ip``, refused), or None."""
    if os.geteuid() != 0:
        return "not root"
    if not shutil.which("ip"):
        return "no ip command (iproute2)"
    name = f"seclprobe{uuid.uuid4().hex[:4]}"
    try:
        _ip("netns", "add", name)
    except (subprocess.CalledProcessError, OSError) as e:
        return f"ip netns add refused: {getattr(e, 'stderr', e)}"
    _ip("netns", "del", name, check=False)
    return None


@dataclass
class Host:
    name: str
    netns: str
    veth: str  # the bridge side of its link
    address: str


class NetLab:
    """A bridge in this namespace and ``hosts`` namespaces on it."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:4]
        self.bridge = f"secl{self.tag}"
        self.subnet = f"10.{random.randint(200, 249)}.{random.randint(0, 255)}"
        self.gateway = f"{self.subnet}.1"
        self.hosts: dict[str, Host] = {}
        self._made_bridge = False
        self._closed = False
        atexit.register(self.close)

    def start(self) -> NetLab:
        _ip("link", "add", self.bridge, "type", "bridge")
        self._made_bridge = True
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        return self

    def add_host(self, name: str) -> Host:
        n = len(self.hosts) + 10
        host = Host(name, f"secl{self.tag}{name}", f"secl{self.tag}v{n}", f"{self.subnet}.{n}")
        peer = f"secl{self.tag}p{n}"
        _ip("netns", "add", host.netns)
        self.hosts[name] = host
        _ip("link", "add", host.veth, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", host.netns)
        _ip("link", "set", host.veth, "master", self.bridge)
        _ip("link", "set", host.veth, "up")
        _ip("-n", host.netns, "link", "set", "lo", "up")
        _ip("-n", host.netns, "link", "set", peer, "name", "eth0")
        _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", host.netns, "link", "set", "eth0", "up")
        return host

    def command(self, name: str, argv: list[str]) -> list[str]:
        """``argv`` run inside host ``name``."""
        return ["ip", "netns", "exec", self.hosts[name].netns, *argv]

    def popen(self, name: str, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command(name, argv), **kw)

    def cut(self, name: str) -> None:
        _ip("link", "set", self.hosts[name].veth, "down")

    def heal(self, name: str) -> None:
        _ip("link", "set", self.hosts[name].veth, "up")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for host in self.hosts.values():
            pids = _ip("netns", "pids", host.netns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGCONT)
                    os.kill(int(pid), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
            _ip("netns", "del", host.netns, check=False)  # takes its end of the veth, and so the pair, along
            _ip("link", "del", host.veth, check=False)
        if self._made_bridge:
            _ip("link", "del", self.bridge, check=False)
