"""The duty-shift simulation (``sharpeye bench shift``) for 90 s: the demo cameras through ``sharpeye run``, a
scripted operator over the dashboard's HTTP API.

What it must show: every alert id raised on the bus is stored in the history database; the lobby's alerts
are grouped into fewer room items (incidents) than alerts; the operator's actions went through the real
workflow (acknowledge, dispatch, the officer's steps by the officer link, close with a classification) and
left the queue empty, as the history database says too.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.assets import ROOT, clip, require_camsim

# little CPU, timings bounded by seconds: scripts/test runs it beside the timed e2e tests
pytestmark = [pytest.mark.e2e, pytest.mark.beside]
MINUTES = 1.5


def test_shift_stores_every_alert_and_groups_the_lobby(tmp_path: Path) -> None:
    require_camsim()
    clip("one-by-one-person-detection.mp4")  # skips (or fails on CI) without the shared clips
    clip("car-detection.mp4")
    work = tmp_path / "shift"
    res = subprocess.run([sys.executable, "-m", "cli.main", "bench", "shift", "--minutes", str(MINUTES),
                          "--json", "--workdir", str(work)],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    print(res.stderr[-3000:])  # the text report and progress (pytest -s)
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(res.stdout)

    # alerts stored == alerts raised: every alert id read from the Redis stream is in the history database
    assert doc["alerts_raised"] > 0
    assert doc["raised_equals_stored"] and doc["missing_from_history"] == []
    assert doc["alerts_stored"] == doc["alerts_raised"] == sum(doc["raised_by_camera"].values())
    db = sqlite3.connect(work / "data" / "history.sqlite")
    stored = {r[0]: r[1:] for r in db.execute("SELECT id, camera_id, incident_id, state, classification FROM alerts")}
    assert len(stored) == doc["alerts_stored_total"] >= doc["alerts_raised"]

    # grouping: the lobby's alerts are fewer room items than alerts (the person's intrusion and loitering on
    # one floor are one incident)
    lobby = doc["per_camera"]["lobby"]
    assert lobby["alerts"] == sum(1 for cam, *_ in stored.values() if cam == "lobby")
    heads = {inc or aid for aid, (cam, inc, *_) in stored.items() if cam == "lobby"}
    assert lobby["incidents"] == len(heads) >= 1
    assert lobby["incidents"] < lobby["alerts"]
    assert lobby["items_per_camera_hour_with_grouping"] < lobby["items_per_camera_hour_without_grouping"]

    # the scripted operator went through the workflow and cleared the queue: every incident closed
    op = doc["operator"]
    assert op["cleared"] and op["clear_queue_s"] is not None
    assert op["actions"].get("acknowledge", 0) >= 1 and op["actions"].get("close", 0) >= 1
    for step in ("dispatch", "signed_for", "on_scene", "feedback"):
        assert op["actions"].get(step, 0) >= 1, op["actions"]
    assert all(state in ("resolved", "false_alarm") and cls in ("genuine", "false_alarm")
               for _, _, state, cls in stored.values())
    steps = {r[0] for r in db.execute("SELECT action FROM actions WHERE alert_id IS NOT NULL")}
    assert {"acknowledge", "dispatch", "signed_for", "on_scene", "feedback", "close"} <= steps
    db.close()
    assert doc["run_exit"] == 0
