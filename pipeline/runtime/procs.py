"""Process plumbing for the supervisor: process groups, parent-death signals, port checks.

Every child of ``sharpeye run`` is started in its own session (so its process group id is its
pid) and is killed as a group, which also takes any grandchild with it.  A child also asks the
kernel to send it SIGTERM if the supervisor dies without cleaning up (``kill -9`` of the
supervisor, an OOM kill): the one exit path no ``finally`` can cover.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from typing import Any


@functools.cache
def _setpriv() -> str | None:
    """util-linux ``setpriv`` (every Debian has it) when it knows ``--pdeathsig``."""
    path = shutil.which("setpriv")
    if path is None:
        return None
    try:
        usage = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "--pdeathsig" in usage else None


def die_with_parent(argv: list[str], sig: int = signal.SIGTERM) -> list[str]:
    """``argv`` wrapped so that the child receives ``sig`` when the thread that started it dies.

    ``setpriv --pdeathsig`` sets the kernel's parent-death signal and then execs ``argv`` (same
    pid; the setting survives the exec).  Not a ``preexec_fn``: Python code between fork and exec
    in a process with threads (the worker's decoders, the supervisor's loops) can deadlock on a
    lock another thread held at the fork — seen as a ``Popen`` that never returned while a test
    restarted Redis beside a running worker.  The death signal is tied to the forking *thread*:
    the supervisor starts children only from its main thread.  Without ``setpriv`` the child
    runs unwrapped and only the supervisor's ``finally`` stops it.  Not covered: a parent killed in
    the millisecond between the fork and setpriv's ``prctl``.
    """
    setpriv = _setpriv()
    if setpriv is None:
        return list(argv)
    return [setpriv, "--pdeathsig", signal.Signals(sig).name.removeprefix("SIG"), "--", *argv]


def start_child(argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (its process group is its pid, killed as a group) with the
    parent-death signal (:func:`die_with_parent`): how every long-lived child is started."""
    return subprocess.Popen(die_with_parent(argv), start_new_session=True, **popen)


def kill_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def group_alive(pgid: int) -> bool:
    """True while any process (zombies included) is left in the group."""
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def stop_children(children: Iterable[subprocess.Popen[Any]], timeout: float = 10) -> None:
    """Terminate every child still running, then reap each, killing one still there after ``timeout`` s."""
    children = list(children)
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on, or None when it can.

    Checked before anything is started, so a busy dashboard port is a one-line refusal instead
    of a dashboard that crashes in a restart loop.  SO_REUSEADDR as uvicorn sets it, so a port in
    TIME_WAIT after a previous run is not mistaken for a busy one.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        return f"dashboard host {host!r} cannot be resolved: {e.strerror}"
    family, socktype, proto, _, addr = infos[0]
    with socket.socket(family, socktype, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return (f"dashboard port {port} on {host} is already in use by another program; "
                        f"stop it or set dashboard.port (or pass --port)")
            return f"cannot listen on {host}:{port} for the dashboard: {e.strerror}"
    return None
