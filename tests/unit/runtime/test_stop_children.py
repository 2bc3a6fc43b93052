"""stop_children: every child ends, one that ignores SIGTERM is killed after the timeout, one already gone
is reaped without a signal."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from pipeline.runtime.procs import stop_children

IGNORES_TERM = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); " \
               "time.sleep(60)"


def test_children_end_and_one_that_ignores_sigterm_is_killed() -> None:
    polite = subprocess.Popen(["sleep", "60"])
    stubborn = subprocess.Popen([sys.executable, "-c", IGNORES_TERM], stdout=subprocess.PIPE, text=True)
    assert stubborn.stdout is not None and stubborn.stdout.readline() == "ready\n"
    done = subprocess.Popen(["true"])
    done.wait()
    t0 = time.monotonic()
    stop_children([polite, stubborn, done], timeout=0.5)
    assert polite.returncode == -signal.SIGTERM
    assert stubborn.returncode == -signal.SIGKILL
    assert done.returncode == 0
    assert time.monotonic() - t0 < 10
