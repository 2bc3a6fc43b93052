"""`sharpeye bench` smoke test: a short run on a real simulator, Redis and worker prints JSON that
matches docs/schemas/bench.schema.json.  No timed assertions: the machine is shared and slow."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import av
import jsonschema
import numpy as np
import pytest

from pipeline.tools.bench.content import ClipSpec, ensure_clip
from pipeline.tools.simulator import RtspSimulator
from tests.support.assets import ROOT, require_camsim, require_redis_server

SCHEMA = json.loads((ROOT / "docs" / "schemas" / "bench.schema.json").read_text())


@pytest.fixture(scope="module", autouse=True)
def _needs_servers(person_clip: Path) -> None:
    require_camsim()
    require_redis_server()


def test_short_clips_are_cached_with_camera_like_encoding(tmp_path: Path, person_clip: Path) -> None:
    spec = ClipSpec.make("busy", "720p", seconds=4)
    clip = ensure_clip(spec, tmp_path, person_clip)
    assert (clip.frames, clip.keyframe_interval) == (100, 2.0)
    assert ensure_clip(spec, tmp_path, person_clip).path == clip.path  # second call: the cached file
    assert len(list(tmp_path.glob("*.mp4"))) == 1


def test_simulated_camera_starts_at_its_offset_after_its_delay(tmp_path: Path, person_clip: Path) -> None:
    """An independent camera: first frame = the file's keyframe at or before the start offset, sent
    after the delay (so its keyframes fall between the other cameras'); later loops start at 0."""
    clip = ensure_clip(ClipSpec.make("busy", "720p", seconds=4), tmp_path, person_clip)  # keyframes at 0, 2 s
    with av.open(str(clip.path)) as c:
        ref = np.stack([f.to_ndarray(format="gray")[::16, ::16].astype(np.float32) for f in c.decode(video=0)])
    opts = {"rtsp_transport": "tcp", "timeout": "5000000", "analyzeduration": "100000", "probesize": "32768"}
    with RtspSimulator({"a": clip.path, "b": clip.path}, starts={"b": 2.7}, delays={"b": 1.0}, lean=True) as sim:
        first_packet_s = {}
        for mount in ("a", "b"):
            t0 = time.monotonic()
            with av.open(sim.url(mount), options=opts) as c:
                frames = []
                for pkt in c.demux(video=0):
                    first_packet_s.setdefault(mount, time.monotonic() - t0)
                    frames += [f.to_ndarray(format="gray")[::16, ::16].astype(np.float32) for f in pkt.decode()]
                    if len(frames) >= 60:
                        break
            index = [int(np.abs(ref - f).mean(axis=(1, 2)).argmin()) for f in frames]
            if mount == "b":
                # from the keyframe at 2 s (frame 50) to the end, then looped to 0 (frames repeat 10 -> 25 fps,
                # so a frame may match the first of its identical copies)
                assert index[0] == 50 and index[49] >= 97 and index[50] == 0, index
            else:
                assert index[0] == 0, index
    assert first_packet_s["b"] > first_packet_s["a"] + 0.6, first_packet_s


def test_short_bench_with_naive_baseline_prints_json_matching_the_schema(tmp_path: Path) -> None:
    # 6 s clips keep the one-time encoding short; they are cached for the next run
    out = subprocess.run([sys.executable, "-m", "cli.main", "bench", "--counts", "2", "--seconds", "5",
                          "--warmup", "1", "--clip-seconds", "6", "--baseline", "naive", "--json",
                          "--results-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert [r["kind"] for r in doc["runs"]] == ["pipeline", "naive"]
    kept = sorted(p.name for p in tmp_path.glob("*.json"))  # every run as measured, then the document
    assert [k.split("-")[:3] for k in kept] == [["01", "pipeline", "2cam"], ["02", "naive", "2cam"], ["bench.json"]]
    cams = doc["cameras"]  # independent cameras: their own offsets, the second one mirrored
    assert len(cams) == 2 and cams[0]["start_s"] != cams[1]["start_s"] and "mirror" in cams[1]["file"]
    for kind in ("pipeline", "naive"):
        run = doc[kind]
        assert run["cameras"] == 2 and len(run["per_camera"]) == 2
        assert run["total"]["decoded_fps"] > 0 and run["total"]["cpu_cores"] > 0
        assert run["floor"]["cores"] > 0
        loop = run["detect_loop"]  # the serial loop's thread was found and its time accounted for
        assert loop["on_cpu_s"] > 0 and loop["idle_s"] > 0
        assert run["cost"]["cpu_s_per_camera_s"] > 0 and run["cost"]["capacity_estimate"] > 0
        assert doc["estimate"][kind]["capacity"] > 0
    stages = doc["pipeline"]["stages"]
    assert stages["s_per_camera_s"]["decode"] > 0 and stages["ms_per_frame"]["detect"] > 0
    assert doc["naive"]["stages"] is None
    assert doc["comparison"]["cpu_per_camera"] is not None
    tables = subprocess.run([sys.executable, "-m", "pipeline.tools.bench.tables", str(tmp_path)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert tables.returncode == 0, tables.stderr[-2000:]
    assert "| 720p busy | pipeline | 2 |" in tables.stdout and "| 720p busy | naive | 2 |" in tables.stdout
