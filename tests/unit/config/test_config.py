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
    r = subprocess.run([sys.executable, "-m", "cli.main", "check", str(good)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 1 and "OK: 1 cameras" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD + "    detect_fps: 0\n    colour: red\n")
    r = subprocess.run([sys.executable, "-m", "cli.main", "check", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{bad}:") for line in lines)
    assert "s3cret" not in r.stderr


def test_demo_config_is_valid() -> None:
    root = Path(__file__).resolve().parents[3]
    r = subprocess.run([sys.executable, "-m", "cli.main", "check", str(root / "streams.yaml")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- check once, refuse early


def run_check(path: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *(cmd or ("check",)), str(path)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[3], timeout=120)


def test_a_gbk_file_names_the_file_and_the_byte(tmp_path: Path) -> None:
    p = tmp_path / "streams.yaml"
    p.write_bytes(GOOD.replace("Xinhua Street", "新华街").encode("gbk"))
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    (msg,) = ei.value.problems
    offset = GOOD.encode().index(b"Xinhua")
    assert msg.startswith(f"{p}:3: (file): not UTF-8 text: byte 0xd0 at offset {offset} (line 3, column 11)")
    r = run_check(p)
    assert r.returncode == 2 and r.stderr == msg + "\n" and "Traceback" not in r.stderr


def test_a_binary_file_gets_one_line(tmp_path: Path) -> None:
    p = tmp_path / "streams.yaml"
    p.write_bytes(b"cameras:\n  a: \x00\x01\x02binary")
    (msg,) = problems_of(p)
    assert msg.startswith(f"{p}:2: (file): not a text file: character U+0000 at byte offset 14")
    p.write_bytes(bytes(range(256)) * 4)
    (msg,) = problems_of(p)
    assert msg.startswith(f"{p}:2: (file): not UTF-8 text: byte 0x80 at offset 128 (line 2, column 118)")


def problems_of(p: Path, classes: list[str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        load_config(p, classes=classes)
    return ei.value.problems


def test_recursive_alias_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    msgs = problems(tmp_path, GOOD + "    masks: &m [[[0, 0], [1, 0], *m]]\n")
    assert any(":10: cameras.lobby.masks.0.2: recursive alias: this value contains itself" in m for m in msgs)


def test_billion_laughs_stops_quickly(tmp_path: Path) -> None:
    import time
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join(['*' + chr(96 + i)] * 9)}]" for i in range(1, 10)]
    t0 = time.monotonic()
    (msg,) = problems(tmp_path, GOOD + "\n".join(lines) + "\n")
    assert time.monotonic() - t0 < 10
    assert "the file expands to more than 200000 values once its aliases" in msg
    # aliases as such stay allowed
    cfg = load_config(write(tmp_path, GOOD + "    zones:\n      a: &z {polygon: [[0, 0], [1, 0], [1, 1]]}\n"
                            "      b: *z\n"))
    assert cfg.cameras["lobby"].zones["a"] == cfg.cameras["lobby"].zones["b"]


def test_everything_is_reported_in_one_pass_after_a_duplicate_key(tmp_path: Path) -> None:
    text = GOOD.replace("grid_cell: G1", "grid_cell: G9") + """\
    detect_fps: 100
    detect_fps: 5
    when: 2020-13-45
    colour: !colour red
  hall:
    name: Hall
    source: rtsp://10.0.0.9:70000/hall
    grid_cell: G1
    rules:
      night: {kind: intrusion, zone: nowhere, schedule: []}
"""
    msgs = problems(tmp_path, text)
    f = tmp_path / "streams.yaml"
    expected = [
        f"{f}:9: cameras.lobby.grid_cell: grid cell 'G9' is not defined",
        f"{f}:10: cameras.lobby.detect_fps: Input should be less than or equal to 30",
        f"{f}:11: cameras.lobby.detect_fps: duplicate key 'detect_fps' (first at line 10)",
        f"{f}:12: cameras.lobby.when: cannot read the value '2020-13-45': month must be in 1..12",
        f"{f}:12: cameras.lobby.when: unknown key",
        f"{f}:13: cameras.lobby.colour: cannot read the value 'red': could not determine a constructor",
        f"{f}:13: cameras.lobby.colour: unknown key",
        f"{f}:16: cameras.hall.source: 'rtsp://10.0.0.9:70000/hall': Port out of range 0-65535",
        f"{f}:19: cameras.hall.rules.night.schedule: an empty schedule never arms the rule",
        f"{f}:19: cameras.hall.rules.night.zone: zone 'nowhere' does not exist on this camera",
    ]
    assert len(msgs) == len(expected), "\n".join(msgs)
    for want in expected:
        assert any(m.startswith(want) for m in msgs), (want, msgs)


@pytest.mark.parametrize("url, problem", [
    ("http://127.0.0.1:6379", "the scheme must be redis://, rediss:// (TLS) or unix://"),
    ("127.0.0.1:6379", "the scheme must be"),
    ("redis://", "has no host"),
    ("redis://127.0.0.1:port/0", "Port could not be cast to integer value"),
    ("redis://127.0.0.1:0/0", "port 0 cannot be connected to"),
    ("redis://:pw@127.0.0.1:6379/zero", "database 'zero' is not a number"),
    ("redis://bad host:6379", "'bad host' is not a host name or IP address"),
    ("rediss://[::1:6380", "is not a URL"),
    ("unix://", "names no socket file"),
    ("redis://h/0?socket_timeout=soon", "socket_timeout='soon' is not a number"),
])
def test_an_unusable_redis_url_is_refused(tmp_path: Path, url: str, problem: str) -> None:
    (msg,) = problems(tmp_path, f"redis_url: '{url}'\n" + GOOD)
    assert msg.startswith(f"{tmp_path / 'streams.yaml'}:1: redis_url: ") and problem in msg, msg
    assert ":pw@" not in msg


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://:pw@r.example:6380", "redis://localhost",
                                 "unix:///var/run/redis.sock?db=1", "redis://[::1]:6379/3"])
def test_a_usable_redis_url_passes(tmp_path: Path, url: str) -> None:
    assert load_config(write(tmp_path, f"redis_url: '{url}'\n" + GOOD)).redis_url == url


@pytest.mark.parametrize("source, problem", [
    ("rtsp://admin:s3cret@/lobby", "has no host"),
    ("rtsp://10.0.0.5:abc/x", "Port could not be cast to integer value"),
    ("rtsp://10.0.0.5:0/x", "port 0 cannot be connected to"),
    ("rtsp://10.0.0.5:65536/x", "Port out of range"),
    ("rtsp://cam..local/x", "is not a host name or IP address"),
    ("rtsp://[fe80::1:554/x", "is not a URL"),
    ("rtsp://[not:an:ip]/x", "does not appear to be an IPv4 or IPv6 address"),
])
def test_camera_urls_need_a_host_and_a_valid_port(tmp_path: Path, source: str, problem: str) -> None:
    (msg,) = problems(tmp_path, GOOD.replace("rtsp://admin:s3cret@127.0.0.1:8554/lobby", source))
    assert ":8: cameras.lobby.source: " in msg and problem in msg, msg
    assert "s3cret" not in msg


def test_model_path_is_taken_from_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.args import validate_config

    monkeypatch.chdir("/")  # the current folder plays no part
    cfg_dir = tmp_path / "site"
    cfg_dir.mkdir()
    missing = write(cfg_dir, "model: {name: models/custom.onnx}\n" + GOOD)
    (msg,) = problems_of(missing)
    assert msg.startswith(f"{missing}:1: model.name: model file '{cfg_dir / 'models/custom.onnx'}' not found")
    r = run_check(missing)
    assert r.returncode == 2 and r.stderr.strip() == msg
    (cfg_dir / "models").mkdir()
    (cfg_dir / "models" / "custom.onnx").write_bytes(b"not really onnx")
    (cfg_dir / "models" / "custom.json").write_text(
        '{"name": "custom", "input_size": [64, 64], "format": "yolov8", "classes": ["cat", "dog"]}')
    cfg = load_config(missing)
    assert cfg.model.name == str(cfg_dir / "models" / "custom.onnx")
    # the labels are checked against the model's classes, as `run` will read them
    (msg,) = validate_config_problems(validate_config, missing)
    assert ":10: cameras.lobby: " not in msg and "cameras.lobby.alert_labels: label 'person' is not a class" in msg
    good = write(cfg_dir, "model: {name: models/custom.onnx}\n" + GOOD + "    alert_labels: [cat]\n")
    assert validate_config(str(good)).cameras["lobby"].alert_labels == ["cat"]


def validate_config_problems(validate: object, p: Path) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        validate(str(p))  # type: ignore[operator]
    return ei.value.problems


def test_an_unknown_model_is_refused_at_check(tmp_path: Path) -> None:
    p = write(tmp_path, "model:\n  name: yolox_nanoo\n" + GOOD)
    r = run_check(p)
    assert r.returncode == 2
    assert r.stderr.startswith(f"{p}:2: model.name: cannot use the model 'yolox_nanoo': model manifest not found")


def test_run_refuses_what_check_refuses(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD + "    rules:\n      r: {kind: presence, schedule: []}\n    alert_labels: [persn]\n")
    checked, ran = run_check(p), run_check(p, "run", "--config")
    assert checked.returncode == ran.returncode == 2
    assert checked.stderr == ran.stderr
    assert ":11: cameras.lobby.rules.r.schedule: an empty schedule" in ran.stderr
    assert ":12: cameras.lobby.alert_labels: label 'persn' is not a class of the model 'yolox_nano'" in ran.stderr
    assert not (tmp_path / "data").exists()  # refused before anything started


def test_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("")
    (msg,) = problems(tmp_path, GOOD)
    assert msg == f"{tmp_path / 'streams.yaml'}:1: data_dir: '{tmp_path / 'data'}' exists and is not a folder"


def test_keys_that_are_lists_and_merge_keys_are_problems(tmp_path: Path) -> None:
    msgs = problems(tmp_path, GOOD + "? [a, b]\n: 1\nbase: &b {name: x}\n<<: *b\n")
    assert any(":10: (top level): a key must be a plain name or number" in m for m in msgs)
    assert any(":13: (top level): YAML merge keys (<<) are not supported" in m for m in msgs)


def test_a_config_mounted_like_a_kubernetes_configmap_reloads_after_the_symlink_swap(tmp_path: Path) -> None:
    """A ConfigMap volume is ``streams.yaml -> ..data/streams.yaml``, ``..data -> ..<timestamp>/``; an update
    swaps ``..data`` and deletes the old folder.  The config keeps the path it was given (not the resolved
    one), so the worker's reload reads the new file instead of failing on a deleted one."""
    import os
    import shutil

    from pipeline.config.load import reload_config

    def version(name: str, text: str) -> None:
        (tmp_path / name).mkdir()
        (tmp_path / name / "streams.yaml").write_text(text)

    version("..v1", GOOD)
    os.symlink("..v1", tmp_path / "..data")
    os.symlink("..data/streams.yaml", tmp_path / "streams.yaml")
    cfg = load_config(tmp_path / "streams.yaml")
    assert cfg.path == tmp_path / "streams.yaml"
    version("..v2", GOOD.replace("name: Lobby", "name: Front lobby"))
    os.symlink("..v2", tmp_path / "..data.tmp")
    os.replace(tmp_path / "..data.tmp", tmp_path / "..data")  # atomic, as the kubelet does
    shutil.rmtree(tmp_path / "..v1")
    new, refused = reload_config(cfg.path, cfg)
    assert refused == [] and new.cameras["lobby"].name == "Front lobby"
