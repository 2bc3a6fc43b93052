"""``sharpeye bench --sightings`` on a real simulator, Redis and worker: the vehicle content three ways
(sightings off, on, on with plates).  The JSON matches docs/schemas/bench-sightings.schema.json, frames
were counted, and plates were read only where they were on.  No timed assertions: the machine is shared."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from tests.support.assets import ROOT, require_camsim, require_redis_server

SCHEMA = json.loads((ROOT / "docs" / "schemas" / "bench-sightings.schema.json").read_text())


@pytest.fixture(scope="module", autouse=True)
def _needs_servers(person_clip: Path) -> None:
    require_camsim()
    require_redis_server()


def test_vehicle_content_off_on_and_plates_counts_frames_and_plate_reads(tmp_path: Path) -> None:
    # a 9 s window holds one pass of the 8 s vehicle clip: a track that ends, is written and read
    out = subprocess.run([sys.executable, "-m", "cli.main", "bench", "--sightings", "--sightings-content", "vehicles",
                          "--seconds", "9", "--warmup", "9", "--json", "--results-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert [(r["content"], r["mode"]) for r in doc["runs"]] == [("vehicles", m) for m in ("off", "on", "plates")]
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        "01-vehicles-off.json", "02-vehicles-on.json", "03-vehicles-plates.json", "bench.json"]
    runs = {r["mode"]: r for r in doc["runs"]}
    for r in runs.values():
        assert r["frames"]["decoded"] > 100 and r["processed_frames"] > 10, r["frames"]
        assert r["worker_cpu_s"] > 0 and r["worker_cpu_ms_per_frame"] > 0
    assert runs["off"]["sightings"]["sent_in_run"] == 0 and runs["off"]["wall"]["sightings_stage_s"] in (0, None)
    assert runs["on"]["sightings"]["sent_in_run"] >= 1
    assert runs["on"]["plates"]["reads_in_run"] == 0 and runs["off"]["plates"]["reads_in_run"] == 0
    plates = runs["plates"]
    assert plates["plates"]["reads_in_run"] >= 1, plates  # read inside the worker, counted by the wrapper
    assert plates["plates"]["valid_reads_in_run"] >= 1 and plates["sightings"]["sent_in_run"] >= 1
    summary = doc["summary"]["vehicles"]
    assert summary["off"]["increase_pct"] is None
    assert summary["on"]["increase_pct"] is not None and summary["plates"]["increase_pct"] is not None
    assert summary["plates"]["plate_reads"] == plates["plates"]["reads"]
    assert doc["verdict"]["holds"] is None  # busy content was not measured
