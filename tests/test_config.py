"""Config validation: every problem reported as FILE:LINE: path: message, never a password."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config, redact_url

GOOD = """\
grid_cells:
  G1:
    name: Xinhua Street
    officer: {name: Wang Wei, phone: "13800000000"}
cameras:
  lobby:
    name: Lobby
    source: rtsp://admin:s3cret@127.0.0.1:8554/lobby
    grid_cell: G1
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "streams.yaml"
    p.write_text(text)
    return p


def problems(tmp_path: Path, text: str, classes: list[str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, text), classes=classes)
    return ei.value.problems


def test_good_config_gets_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    cam = cfg.cameras["lobby"]
    assert cam.detect_fps == 5.0 and cam.alert_labels == ["person"] and cam.min_score == 0.5
    assert cfg.redis_url is None and cfg.dashboard.port == 8080
    assert cfg.data_path() == (tmp_path / "data").resolve()
    assert list(cam.effective_rules()) == ["presence"]


def test_unknown_key_names_file_line_and_field(tmp_path: Path) -> None:
    (msg,) = problems(tmp_path, GOOD + "    colour: red\n")
    assert msg.startswith(f"{tmp_path / 'streams.yaml'}:10: cameras.lobby.colour: unknown key")


def test_wrong_type_says_what_is_allowed(tmp_path: Path) -> None:
    (msg,) = problems(tmp_path, GOOD + "    detect_fps: fast\n")
    assert ":10: cameras.lobby.detect_fps:" in msg
    assert "valid number" in msg and "0.1-30" in msg


def test_out_of_range(tmp_path: Path) -> None:
    (msg,) = problems(tmp_path, GOOD + "    detect_fps: 100\n")
    assert ":10: cameras.lobby.detect_fps:" in msg and "less than or equal to 30" in msg


def test_missing_source(tmp_path: Path) -> None:
    text = GOOD.replace("    source: rtsp://admin:s3cret@127.0.0.1:8554/lobby\n", "")
    (msg,) = problems(tmp_path, text)
    assert ":6: cameras.lobby.source: required field is missing" in msg


def test_duplicate_camera_id(tmp_path: Path) -> None:
    text = GOOD + "  lobby:\n    name: Again\n    source: rtsp://h/x\n    grid_cell: G1\n"
    (msg,) = problems(tmp_path, text)
    assert ":10: cameras.lobby: duplicate key 'lobby' (first at line 6)" in msg


def test_malformed_yaml(tmp_path: Path) -> None:
    (msg,) = problems(tmp_path, GOOD + "  hall: {name: x\n  other: 1\n")
    assert ": (syntax): malformed YAML" in msg
    assert msg.split(":")[1] in ("10", "11")


def test_unknown_grid_cell_and_label(tmp_path: Path) -> None:
    text = GOOD.replace("grid_cell: G1", "grid_cell: G9") + "    alert_labels: [persn]\n"
    msgs = problems(tmp_path, text, classes=["person", "car"])
    assert any(":9: cameras.lobby.grid_cell: grid cell 'G9' is not defined" in m for m in msgs)
    assert any(":10: cameras.lobby.alert_labels: label 'persn' is not a class" in m for m in msgs)


def test_geometry_and_rule_references(tmp_path: Path) -> None:
    text = GOOD + """\
    zones:
      bowtie: {polygon: [[0, 0], [1, 1], [1, 0], [0, 1]]}
    lines:
      door: {a: [0.5, 0.5], b: [0.5, 0.5]}
"""
    msgs = problems(tmp_path, text)
    assert any(":11: cameras.lobby.zones.bowtie.polygon: polygon edges cross" in m for m in msgs)
    assert any(":13: cameras.lobby.lines.door: line has zero length" in m for m in msgs)
    text = GOOD + """\
    zones:
      yard: {polygon: [[0, 0], [1, 0], [1, 1]]}
    rules:
      night: {kind: intrusion, zone: gate, schedule: [{start: "22:00", end: "06:00"}]}
      bad_time: {kind: loitering, zone: yard, schedule: [{start: "25:00", end: "06:00"}]}
"""
    msgs = problems(tmp_path, text)
    assert any(":14: cameras.lobby.rules.bad_time.schedule.0.start: '25:00' is not a time of day" in m for m in msgs)
    text = text.replace('start: "25:00"', 'start: "21:00"')
    msgs = problems(tmp_path, text)
    assert msgs == [f"{tmp_path / 'streams.yaml'}:13: cameras.lobby.rules.night.zone: zone 'gate' does not "
                    "exist on this camera (zones: yard)"]


def test_password_never_printed(tmp_path: Path) -> None:
    assert redact_url("rtsp://admin:s3cret@10.0.0.5:554/ch1") == "rtsp://admin:***@10.0.0.5:554/ch1"
    text = GOOD.replace("rtsp://admin:s3cret@127.0.0.1:8554/lobby", "rtsp://admin:s3cret@/lobby")
    (msg,) = problems(tmp_path, text)
    assert "s3cret" not in msg and "***" in msg


def test_check_cli_exit_codes(tmp_path: Path) -> None:
    good = write(tmp_path, GOOD)
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "check", str(good)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 1 and "OK: 1 cameras" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD + "    detect_fps: 0\n    colour: red\n")
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "check", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{bad}:") for line in lines)
    assert "s3cret" not in r.stderr


def test_demo_config_is_valid() -> None:
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "check", str(root / "streams.yaml")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
