"""The soak (scripts/soak) for 3 minutes: the demo set-up with alerts coming, nothing may grow by more
than 10 % (above the script's noise floors), nothing may be restarted, nothing may be left behind.

Why in the suite: a leak of file descriptors, threads or memory, or a child the supervisor keeps
restarting, passes every test of seconds.  Three minutes will not find a slow leak (the 60-minute
``scripts/soak`` does), but it finds the fast ones and keeps the script itself working.
The table is printed (``pytest -s`` shows it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.assets import ROOT, require_camsim

# little CPU, timings bounded by seconds: scripts/test runs it beside the timed e2e tests
pytestmark = pytest.mark.beside

MINUTES = 3
MAX_GROWTH_PCT = 10.0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _ours(work: Path) -> list[int]:
    """Live processes of this soak: the pids it wrote to ``soak.pids`` (simulator, ``sharpeye run``)
    and every process whose command line names the work folder (workers, dashboard, redis-server)."""
    pids: set[int] = set()
    try:
        for line in (work / "soak.pids").read_text().splitlines():
            name, pid = line.split()
            # a reused pid belongs to somebody else: check that it is still what the soak started
            marker = "camsim.py" if name == "camsim" else "cli.main run"
            if marker in _cmdline(int(pid)):
                pids.add(int(pid))
    except (OSError, ValueError):
        pass
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid() and str(work) in _cmdline(int(d)):
            pids.add(int(d))
    return sorted(p for p in pids if _alive(p))


def _stop_everything(proc: subprocess.Popen[str], work: Path) -> list[str]:
    """Stop the soak (SIGINT: it stops its own set-up), then anything still there; return what was
    left behind after the soak itself had ended (killed here, and reported)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    deadline = time.monotonic() + 10
    while (left := _ours(work)) and time.monotonic() < deadline:
        time.sleep(0.2)
    report = [f"{p} {_cmdline(p)[:120]}" for p in left]
    for p in left:
        for kill in (os.killpg, os.kill):
            try:
                kill(p, signal.SIGKILL)
                break
            except (ProcessLookupError, PermissionError):
                continue
    return report


def _within(g: dict[str, Any], floor: float) -> bool:
    """Growth at most MAX_GROWTH_PCT percent, or no more than the noise floor in absolute terms."""
    grew = g["end"] - g["start"]
    return grew <= floor or (g["start"] > 0 and 100.0 * grew / g["start"] <= MAX_GROWTH_PCT)


@pytest.mark.slow
def test_three_minute_soak_grows_nothing_restarts_nothing_leaves_nothing(tmp_path: Path) -> None:
    require_camsim()
    work = tmp_path / "soak"
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "soak"), "--minutes", str(MINUTES), "--json",
                             "--max-growth", str(MAX_GROWTH_PCT), "--workdir", str(work)],
                            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=MINUTES * 60 + 480)  # + start-up (model, first frames) and stop
    finally:
        left = _stop_everything(proc, work)
    print("\n" + err)
    assert proc.returncode in (0, 1), f"soak could not run (exit {proc.returncode}):\n{err[-4000:]}"
    report = json.loads(out)
    floors = report["floors"]

    roles = {row["role"] for row in report["processes"]}
    assert {"supervisor", "dashboard", "archiver", "redis-server"} <= roles, roles
    assert any(r.startswith("worker-") for r in roles), roles
    for row in report["processes"]:
        assert len(row["pids"]) == 1, f"{row['role']} restarted: pids {row['pids']}"
        if row["role"].startswith("other:"):
            continue
        assert row["start"] and row["end"], f"{row['role']} not measured at start and end"
        for k in ("rss_kib", "fds", "threads"):
            g = {"start": row["start"][k], "end": row["end"][k]}
            assert _within(g, floors[k]), f"{row['role']} {k} grew {g['start']} -> {g['end']}"
    rd = report["redis"]
    g = {"start": rd["start"]["used_memory"], "end": rd["end"]["used_memory"]}
    assert _within(g, floors["used_memory"]), f"redis used_memory grew {g['start']} -> {g['end']}"

    alerts = report["alerts"]
    assert alerts["alerts_started_in_window"] > 0, alerts
    assert alerts["duplicates"] == 0, alerts
    assert report["metrics_scrapes"]["failed"] == 0, report["metrics_scrapes"]
    assert report["restart_log"] == []
    assert report["left_behind"] == [] and left == [], (report["left_behind"], left)
    assert report["ok"] and proc.returncode == 0, report["failures"]
