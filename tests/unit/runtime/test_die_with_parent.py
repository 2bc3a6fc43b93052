"""Children started through ``die_with_parent`` die with the process that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.runtime.procs import die_with_parent
from tests.support.waits import wait_for

PARENT = textwrap.dedent("""
    import subprocess, sys, threading, time
    from pipeline.runtime.procs import die_with_parent
    busy = threading.Lock()
    def hold():  # threads that take and drop locks while the main thread forks
        while True:
            with busy:
                time.sleep(0.0001)
    for _ in range(4):
        threading.Thread(target=hold, daemon=True).start()
    for _ in range(30):  # a preexec_fn here could hang in the child between fork and exec
        subprocess.Popen(die_with_parent(["true"])).wait(10)
    child = subprocess.Popen(die_with_parent(["sleep", "300"]))
    print(child.pid, flush=True)
    time.sleep(300)
""")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_child_dies_when_its_parent_is_killed_and_spawning_beside_threads_does_not_hang(tmp_path: Path) -> None:
    assert die_with_parent(["x"])[-1] == "x" and "--pdeathsig" in die_with_parent(["x"]), \
        "setpriv (util-linux) is on every Debian: without it children outlive a killed supervisor"
    root = Path(__file__).resolve().parents[3]
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=root, stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line.strip().isdigit(), "the parent started 30 children and the sleeper without hanging"
        child = int(line)
        # setpriv sets the death signal and then execs: killing the parent before that is a window the
        # signal cannot cover (about a millisecond after a start); the test waits until it is past
        wait_for(lambda: _cmdline(child).startswith("sleep"), 10, f"the child {child} to exec sleep")
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        wait_for(lambda: not _alive(child), 10, f"the child {child} ending after its parent was killed")
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
