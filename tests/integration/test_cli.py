"""The ``sharpeye`` command as a newcomer meets it: every command and verb answers ``--help``, the exit
codes are documented, and the one model store (``$SHARPEYE_MODELS_DIR``) is used by every command;
with an empty store and no network (``SHARPEYE_OFFLINE=1``) each command says in one line where it
looked and how to install the file, and exits 1."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import build_parser
from cli.main import main as sharpeye

ROOT = Path(__file__).resolve().parents[2]


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path of the argparse tree: (), ("users",), ("users", "add"), ..."""
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


def test_every_command_and_verb_answers_help() -> None:
    paths = list(commands(build_parser()))
    assert {("users",), ("users", "add"), ("users", "list"), ("export", "verify"), ("fetch-model",),
            ("detect",), ("bench",), ("run",)} <= set(paths)
    for path in paths:
        for flag in ("--help", "-h"):
            out = io.StringIO()
            with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
                sharpeye([*path, flag])
            assert done.value.code == 0, f"sharpeye {' '.join(path)} {flag}"
            assert out.getvalue().startswith(f"usage: sharpeye {' '.join(path)}".rstrip()), path
    print(f"{len(paths)} commands and verbs answer --help and -h")


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=cwd or ROOT, input=stdin)


def test_top_level_help_documents_exit_codes_and_users_is_a_real_command() -> None:
    top = run("--help")
    assert top.returncode == 0, top.stderr
    assert "exit status:" in top.stdout
    for code, meaning in (("0", "done"), ("1", "runtime failure"), ("2", "usage or config problem")):
        assert any(line.split()[:1] == [code] and meaning in line for line in top.stdout.splitlines()), code
    users = run("users", "--help")  # through the real entry point (it used to be "unrecognized arguments")
    assert users.returncode == 0, users.stderr
    assert "{add,passwd,disable,enable,list}" in users.stdout


@pytest.mark.parametrize("argv", [["users"], ["users", "add"], ["no-such-command"], ["detect"],
                                  ["export", "verify"], ["fetch-model", "--from"]])
def test_a_usage_problem_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        sharpeye(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: sharpeye") and "error:" in err


@pytest.fixture
def offline_env(tmp_path: Path) -> dict[str, str]:
    """An empty model store and mirror, downloading forbidden: a machine with no network and no file."""
    (tmp_path / "mirror").mkdir()
    return {**os.environ, "SHARPEYE_MODELS_DIR": str(tmp_path / "store"),
            "SHARPEYE_ASSET_MIRROR": str(tmp_path / "mirror"), "SHARPEYE_OFFLINE": "1",
            "PYTHONPATH": str(ROOT)}


def assert_one_line_about_the_store(res: subprocess.CompletedProcess[str], command: str, store: Path) -> None:
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    (line,) = lines
    assert line.startswith(f"sharpeye {command}: ") and "Traceback" not in res.stderr
    assert str(store / "yolox_nano.onnx") in line  # where it looked
    assert "sharpeye fetch-model yolox_nano --from FILE" in line  # how to install the file
    assert "SHARPEYE_OFFLINE=1" in line
    assert res.stdout == ""


def test_without_the_model_and_without_network_each_command_says_so_in_one_line(
        tmp_path: Path, offline_env: dict[str, str], person_clip: Path) -> None:
    store = tmp_path / "store"
    work = tmp_path / "elsewhere"
    work.mkdir()
    detect = run("detect", str(person_clip), "--max-frames", "1", env=offline_env, cwd=work)
    assert_one_line_about_the_store(detect, "detect", store)

    fetch = run("fetch-model", env=offline_env, cwd=work)
    assert_one_line_about_the_store(fetch, "fetch-model", store)

    cache, results = tmp_path / "bench-cache", tmp_path / "bench-results"
    bench = run("bench", "--cameras", "2", "--seconds", "15", "--cache-dir", str(cache),
                "--results-dir", str(results), env=offline_env, cwd=work)
    assert_one_line_about_the_store(bench, "bench", store)
    assert not cache.exists() and not results.exists()  # failed before generating clips or starting a simulator
    assert not (store / "yolox_nano.onnx").exists() and list(work.iterdir()) == []


def test_fetch_model_from_a_file_checks_the_sha256_and_installs_into_the_store(
        tmp_path: Path, offline_env: dict[str, str], yolox_onnx: Path) -> None:
    store = tmp_path / "store"
    wrong = tmp_path / "yolox_nano.onnx"
    wrong.write_bytes(yolox_onnx.read_bytes()[:-1] + b"\0")  # same size, one byte changed
    refused = run("fetch-model", "--from", str(wrong), env=offline_env)
    assert refused.returncode == 1, refused.stderr
    assert "sha256 mismatch" in refused.stderr and "not installed" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert not (store / "yolox_nano.onnx").exists()
    assert not store.exists() or list(store.iterdir()) == []  # no temporary file left behind

    missing = run("fetch-model", "--from", str(tmp_path / "nothing.onnx"), env=offline_env)
    assert missing.returncode == 1 and "nothing.onnx: no such file" in missing.stderr

    installed = run("fetch-model", "--from", str(yolox_onnx), env=offline_env)
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.strip() == str(store / "yolox_nano.onnx")
    digest = hashlib.sha256((store / "yolox_nano.onnx").read_bytes()).hexdigest()
    assert digest == hashlib.sha256(yolox_onnx.read_bytes()).hexdigest()

    again = run("fetch-model", env=offline_env)  # in place and verified: no source needed
    assert again.returncode == 0 and again.stdout.strip() == str(store / "yolox_nano.onnx")


def test_a_config_says_where_its_model_lives_with_model_path(
        tmp_path: Path, offline_env: dict[str, str], yolox_onnx: Path, car_clip: Path) -> None:
    from pipeline.config import load_config
    from tests.support.config import write_config

    (tmp_path / "site").mkdir()
    (tmp_path / "other").mkdir()
    cfg_path = write_config(tmp_path / "site", {"gate": {"source": str(car_clip)}}, model={"path": "data/models"})
    cfg = load_config(str(cfg_path))
    assert cfg.models_path() == (tmp_path / "site" / "data" / "models").resolve()
    installed = run("fetch-model", "-c", str(cfg_path), "--from", str(yolox_onnx), env=offline_env)
    assert installed.returncode == 0, installed.stderr
    assert Path(installed.stdout.strip()) == cfg.models_path() / "yolox_nano.onnx"
    assert not (tmp_path / "store").exists()  # not the shared store: the config said so
    checked = run("check", str(cfg_path), env=offline_env)
    assert checked.returncode == 0, checked.stderr

    plain = write_config(tmp_path / "other", {"gate": {"source": str(car_clip)}})
    assert load_config(str(plain)).models_path() is None  # no model.path: the shared store
