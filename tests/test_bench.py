"""`sharpeye bench` smoke test: a short run on a real simulator, Redis and worker prints JSON that
matches docs/schemas/bench.schema.json.  No timed assertions: the machine is shared and slow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from pipeline.runtime.redis_server import find_redis_server
from pipeline.tools.bench.content import ClipSpec, ensure_clip
from tests.conftest import missing_asset, require_camsim

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "docs" / "schemas" / "bench.schema.json").read_text())


@pytest.fixture(scope="module", autouse=True)
def _needs_servers(person_clip: Path) -> None:
    require_camsim()
    try:
        find_redis_server()
    except FileNotFoundError as e:
        missing_asset(str(e))


def test_short_clips_are_cached_with_camera_like_encoding(tmp_path: Path, person_clip: Path) -> None:
    spec = ClipSpec.make("busy", "720p", seconds=4)
    clip = ensure_clip(spec, tmp_path, person_clip)
    assert (clip.frames, clip.keyframe_interval) == (100, 2.0)
    assert ensure_clip(spec, tmp_path, person_clip).path == clip.path  # second call: the cached file
    assert len(list(tmp_path.glob("*.mp4"))) == 1


def test_short_bench_with_naive_baseline_prints_json_matching_the_schema() -> None:
    # 6 s clips keep the one-time encoding short; they are cached for the next run
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "bench", "--cameras", "1", "--seconds", "5",
                          "--warmup", "1", "--clip-seconds", "6", "--baseline", "naive", "--json"],
                         capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert [r["kind"] for r in doc["runs"]] == ["pipeline", "naive"]
    for kind in ("pipeline", "naive"):
        run = doc[kind]
        assert run["cameras"] == 1 and len(run["per_camera"]) == 1
        assert run["total"]["decoded_fps"] > 0 and run["total"]["cpu_cores"] > 0
        assert run["floor"]["cores"] > 0
    assert doc["comparison"]["cpu_per_camera"] is not None
