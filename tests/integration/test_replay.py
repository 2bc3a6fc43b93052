"""``sharpeye replay`` and ``sharpeye preview`` on the person clip: the live analytics over a file.

The clip: an empty room, people walk in one at a time (first at ~6.5 s, leaves ~19.5 s; the
second enters ~23 s).  A 30 s excerpt, cut without re-encoding, keeps the tests fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import av
import cv2
import jsonschema
import numpy as np
import pytest

from pipeline.analyse.detect import Detector
from pipeline.config import Config, load_config
from pipeline.tools.replay import ReplayError, ReplayStats, parse_start, pick_camera, run_replay
from tests.support.config import write_config

ROOT = Path(__file__).resolve().parents[2]
START = "2024-05-01T10:00:00+08:00"
START_EPOCH = 1714528800.0
FLOOR = [[0.0, 0.56], [1.0, 0.56], [1.0, 1.0], [0.0, 1.0]]  # the room's wooden floor


def cut_clip(src: Path, dst: Path, start_s: float, end_s: float) -> Path:
    """Copy [start_s, end_s) of a video to ``dst`` without re-encoding, timestamps from 0.

    Cuts at keyframes (the person clip has one every second, closed GOPs), so the excerpt
    decodes cleanly from its first packet.
    """
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        ist = inp.streams.video[0]
        ost = out.add_stream_from_template(ist)
        tb = ist.time_base
        assert tb is not None
        if start_s > 0:
            inp.seek(int(start_s / tb), stream=ist, backward=True)
        offset = None
        for pkt in inp.demux(ist):
            if pkt.pts is None or pkt.dts is None:
                continue
            t = float(pkt.pts * tb)
            if offset is None:
                if not (pkt.is_keyframe and t >= start_s - 1e-6):
                    continue
                offset = pkt.pts
            if pkt.is_keyframe and t >= end_s - 1e-6:
                break
            pkt.pts -= offset
            pkt.dts -= offset
            pkt.stream = ost
            out.mux(pkt)
    return dst


def lobby_config(folder: Path, source: str | Path, end_after_s: float = 3.0, name: str = "lobby.yaml",
                 others: dict[str, dict[str, Any]] | None = None, **top: Any) -> Path:
    """A config where a person walking onto the lobby's floor raises an intrusion alert.

    ``others``: more cameras; ``top``: more top-level sections (``bus``, ``recordings`` ...).
    """
    lobby = {"source": source, "detect_fps": 5, "zones": {"floor": {"polygon": FLOOR}},
             "rules": {"intruder": {"kind": "intrusion", "zone": "floor", "labels": ["person"], "severity": "high"}}}
    return write_config(folder, {"lobby": lobby, **(others or {})}, name=name,
                        timezone="Asia/Shanghai", alerts={"end_after_s": end_after_s}, **top)


def alerts_by_id(messages: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in messages:
        out[m["alert_id"]].append(m)
    return dict(out)


@pytest.fixture(scope="session")
def event_schema() -> dict[str, Any]:
    return json.loads((ROOT / "docs/schemas/event.schema.json").read_text())


@pytest.fixture(scope="module")
def excerpt(person_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cut_clip(person_clip, tmp_path_factory.mktemp("clips") / "person-0-30.mp4", 0.0, 30.0)


@pytest.fixture(scope="module")
def config_path(excerpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lobby_config(tmp_path_factory.mktemp("cfg"), excerpt)


@pytest.fixture(scope="module")
def cfg(config_path: Path) -> Config:
    return load_config(config_path)


@pytest.fixture(scope="module")
def detector(cfg: Config) -> Detector:
    from pipeline.analyse.detect import Detector

    return Detector.from_config(cfg)


@pytest.fixture(scope="module")
def normal(cfg: Config, excerpt: Path, detector: Detector) -> tuple[list[dict[str, Any]], ReplayStats]:
    stats = ReplayStats()
    msgs = list(run_replay(cfg, excerpt, start=START_EPOCH, detector=detector, stats=stats))
    return msgs, stats


@pytest.fixture(scope="module")
def exhaustive(cfg: Config, excerpt: Path, detector: Detector) -> tuple[list[dict[str, Any]], ReplayStats]:
    stats = ReplayStats()
    msgs = list(run_replay(cfg, excerpt, start=START_EPOCH, exhaustive=True, detector=detector, stats=stats))
    return msgs, stats


def test_excerpt_is_a_clean_cut(excerpt: Path) -> None:
    with av.open(str(excerpt)) as c:
        times = [f.time for f in c.decode(video=0)]
    assert len(times) == 300 and times[0] == 0.0 and times[-1] == pytest.approx(29.9)


def check_lifecycles(messages: list[dict[str, Any]], schema: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Every message is valid; every alert is new, update*, end with one alert_id; returns them."""
    for m in messages:
        jsonschema.validate(m, schema)
    episodes = list(alerts_by_id(messages).values())
    for ep in episodes:
        phases = [m["phase"] for m in ep]
        assert phases[0] == "new" and phases[-1] == "end" and set(phases[1:-1]) <= {"update"}, phases
        assert len({m["start_time"] for m in ep}) == 1
        assert ep[-1]["end_time"] is not None and ep[-1]["end_time"] >= ep[0]["start_time"]
        assert all(m["rule"] == {"id": "intruder", "kind": "intrusion", "severity": "high"} for m in ep)
        assert ep[0]["labels"] == ["person"] and ep[0]["objects"]
    return episodes


def test_one_alert_per_person_with_a_full_lifecycle(normal: tuple[list[dict[str, Any]], ReplayStats],
                                                    event_schema: dict[str, Any]) -> None:
    msgs, _ = normal
    episodes = check_lifecycles(msgs, event_schema)
    # person 1 walks in at ~6.5 s and leaves at ~19.5 s; person 2 walks in at ~23 s (still there at 30 s)
    assert len(episodes) == 2, [(m["phase"], m["time"] - START_EPOCH) for m in msgs]
    first, second = (ep[0]["start_time"] - START_EPOCH for ep in episodes)
    assert 6.5 <= first <= 8.5 and 23.0 <= second <= 25.5
    assert 19.0 <= episodes[0][-1]["end_time"] - START_EPOCH <= 20.0  # last seen, not the end message time
    assert set(episodes[0][0]["track_ids"]).isdisjoint(episodes[1][0]["track_ids"])
    assert episodes[1][-1]["frame_time"] is None  # ended by the flush at the end of the video


def test_exhaustive_runs_the_detector_on_every_frame(normal: tuple[list[dict[str, Any]], ReplayStats],
                                                     exhaustive: tuple[list[dict[str, Any]], ReplayStats],
                                                     event_schema: dict[str, Any]) -> None:
    ref_msgs, ref = exhaustive
    _, st = normal
    assert ref.decoded == ref.sampled == ref.detected == 300 and ref.detector_share == 1.0
    assert ref.reasons == {"exhaustive": 300}
    assert st.decoded == 300 and st.sampled == 150  # 10 fps clip sampled at detect_fps 5
    assert st.detected <= st.sampled < st.decoded and st.detector_share <= 0.5
    assert sum(st.reasons.values()) == st.sampled
    assert st.wall_s > 0 and st.fps > 0 and st.video_s == pytest.approx(29.9)
    # the reference sees the same two people, a little earlier at most
    ref_eps = check_lifecycles(ref_msgs, event_schema)
    assert len(ref_eps) == 2
    norm_eps = list(alerts_by_id(normal[0]).values())
    for r, n in zip(ref_eps, norm_eps):
        assert -0.5 <= n[0]["start_time"] - r[0]["start_time"] <= 1.0


def test_cli_json_matches_the_library_and_writes_snapshots(
        config_path: Path, excerpt: Path, normal: tuple[list[dict[str, Any]], ReplayStats],
        event_schema: dict[str, Any], tmp_path: Path) -> None:
    snaps = tmp_path / "snaps"
    r = subprocess.run([sys.executable, "-m", "cli.main", "--log-level", "WARNING", "replay",
                        str(excerpt), "--config", str(config_path), "--json", "--stats",
                        "--start", "2024-05-01T10:00:00", "--snapshots", str(snaps)],
                       check=False, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    *msgs, stats = lines
    assert stats["type"] == "stats" and stats["mode"] == "normal" and stats["decoded"] == 300
    assert stats["start"] == START_EPOCH  # a naive --start is read in the config's time zone
    check_lifecycles(msgs, event_schema)

    def key(m: dict[str, Any]) -> tuple[Any, ...]:
        return m["phase"], m["time"], m["start_time"], m["end_time"], tuple(m["track_ids"])

    assert [key(m) for m in msgs] == [key(m) for m in normal[0]]  # same --start: same alerts, same times
    news = [m for m in msgs if m["phase"] == "new"]
    for m in news:
        snap = snaps / m["snapshot"]["path"]
        assert snap.read_bytes()[:2] == b"\xff\xd8" and m["snapshot"]["width"] == 768


def test_cli_readable_output_and_errors(config_path: Path, excerpt: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main as sharpeye  # in this process: the real entry point is run by the JSON test above

    two = lobby_config(tmp_path, excerpt, name="two.yaml", others={"other": {"source": "x.mp4"}})
    assert sharpeye(["replay", str(excerpt), "--config", str(two)]) == 2
    assert "--camera" in capsys.readouterr().err
    assert sharpeye(["replay", str(tmp_path / "missing.mp4"), "--config", str(config_path)]) == 2
    assert "not found" in capsys.readouterr().err


def test_camera_choice_and_start_parsing(cfg: Config) -> None:
    assert pick_camera(cfg, None) == "lobby"
    with pytest.raises(ReplayError, match="not in the config"):
        pick_camera(cfg, "nope")
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Shanghai")
    assert parse_start("2024-05-01T10:00:00", tz) == START_EPOCH
    assert parse_start("2024-05-01T02:00:00Z", tz) == START_EPOCH
    with pytest.raises(ReplayError, match="ISO 8601"):
        parse_start("yesterday", tz)


def test_preview_draws_zone_on_the_frame(excerpt: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    config = lobby_config(tmp_path, excerpt)
    out = tmp_path / "preview.jpg"
    assert main(["--log-level", "WARNING", "preview", "lobby", "--config", str(config), "-o", str(out),
                 "--seconds", "1"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(out)) and "768x432" in line and "1 zones" in line
    img = cv2.imread(str(out))
    assert img is not None and img.shape == (432, 768, 3)
    with av.open(str(excerpt)) as c:  # the raw frame preview drew on: the last sampled, at 1.0 s
        raw = next(f.to_ndarray(format="bgr24") for f in c.decode(video=0) if f.time >= 1.0 - 1e-6)
    diff = np.abs(img.astype(np.int16) - raw.astype(np.int16)).mean(axis=2)
    zone = np.zeros(diff.shape, np.uint8)
    cv2.fillPoly(zone, [np.array([[0, 242], [767, 242], [767, 431], [0, 431]], np.int32)], 1)
    inside = float(diff[(zone > 0)].mean())
    outside = float(diff[200:230, 150:350].mean())  # bare wall above the floor, away from any label
    assert inside > 15 and outside < 4, (inside, outside)


def test_quality_matching_rules() -> None:
    """scripts/quality.py: same rule, overlapping in time (late start allowed), each alert once."""
    import runpy

    quality = runpy.run_path(str(ROOT / "scripts" / "quality.py"), run_name="quality_script")
    E, match, episodes = quality["Episode"], quality["match"], quality["episodes"]
    ref = [E("r1", "a", 10.0, 20.0), E("r2", "a", 30.0, 30.0), E("r3", "b", 40.0, 45.0),
           E("r4", "a", 50.0, 55.0)]
    norm = [E("n1", "a", 10.6, 20.0),   # late start, overlapping: r1
            E("n2", "a", 30.8, 31.0),   # starts after r2 ended, within the 1 s allowance: r2
            E("n3", "a", 41.0, 44.0),   # overlaps r3 in time but another rule: extra
            E("n4", "a", 56.5, 58.0)]   # after r4, beyond the allowance: extra, r4 missed
    pairs = match(ref, norm, late_s=1.0)
    assert [(r.alert_id, n.alert_id if n else None) for r, n in pairs] == [
        ("r1", "n1"), ("r2", "n2"), ("r3", None), ("r4", None)]
    msgs = [{"type": "alert", "alert_id": "x", "phase": "new", "rule": {"id": "a"}, "start_time": 105.0,
             "end_time": None, "time": 105.0},
            {"type": "alert", "alert_id": "x", "phase": "end", "rule": {"id": "a"}, "start_time": 105.0,
             "end_time": 109.0, "time": 112.0}]
    assert episodes(msgs, 100.0) == [E("x", "a", 5.0, 9.0)]
