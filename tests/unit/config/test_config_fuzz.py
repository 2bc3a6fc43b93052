"""`sharpeye check` fuzzed with Hypothesis: whatever the file holds, the answer is exit 0, or exit 2
with ``FILE:LINE: ...`` lines, never a traceback.

Trees are built from the real schema's keys and value types (so they get deep into validation)
mixed with junk keys and values; bytes are random; text mutations damage a valid file.  Most runs
call the CLI's `main` in-process for speed; a few go through a real `python -m cli.main check`.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import types
import typing
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from cli import main as cli
from pipeline.config import schema

ROOT = Path(__file__).resolve().parents[3]
FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.filter_too_much, HealthCheck.data_too_large])

GOOD: dict[str, Any] = {
    "grid_cells": {"G1": {"name": "Xinhua Street", "officer": {"name": "Wang Wei", "phone": "13800000000"}}},
    "cameras": {"lobby": {"name": "Lobby", "source": "rtsp://admin:s3cret-pw@127.0.0.1:8554/lobby",
                          "grid_cell": "G1"}},
}

# values a person (or a bad editor) might type, next to the well-typed ones
TRICKY = st.sampled_from([
    "rtsp://admin:s3cret-pw@10.0.0.5:554/x", "rtsp://h:0/x", "rtsp://h:99999/x", "rtsp://[::1/x", "rtsp://:pw@/x",
    "redis://:s3cret-pw@h:6379/0", "rediss://h", "unix://", "http://h", "redis://h/db", "file:///nope.mp4",
    "clip.mp4", "model.onnx", "models/x.json", "yolox_nano", "person", "car", "22:00", "24:00", "25:61",
    "mon", "intrusion", "line_crossing", "G1", "lobby", "zone", "Asia/Shanghai", "Mars/Olympus", "",
    "2020-13-45", "~", "null", ".nan", "-.inf", "0x1F", "1e400", "新华街", "\x7f", "a\nb",
])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=16), TRICKY)
JUNK_KEYS = st.one_of(st.text(max_size=10), st.sampled_from(["cameras", "kind", "name", "zones", "<<", "x y"]))
IDS = st.one_of(st.sampled_from(["lobby", "gate", "G1", "yard", "door", "night", "bad id", "0"]), st.text(max_size=8))


def for_type(ann: Any) -> st.SearchStrategy[Any]:
    """A strategy for values of a schema type, with junk mixed in at every level."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return st.deferred(lambda: model_tree(ann))
    if origin is typing.Annotated:
        return for_type(args[0])
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*[for_type(a) for a in args])
    if origin is typing.Literal:
        return st.one_of(st.sampled_from(args), SCALARS)
    if origin is dict:
        return st.one_of(st.dictionaries(IDS, for_type(args[1]), max_size=3), SCALARS)
    if origin is list:
        return st.one_of(st.lists(for_type(args[0]), max_size=4), SCALARS)
    if origin is tuple:
        items = [a for a in args if a is not Ellipsis]
        return st.one_of(st.tuples(*[for_type(a) for a in items]).map(list), SCALARS)
    if ann is float:
        return st.one_of(st.floats(-5, 100), SCALARS)
    if ann is int:
        return st.one_of(st.integers(-5, 70000), SCALARS)
    if ann is bool:
        return st.one_of(st.booleans(), SCALARS)
    return SCALARS


_TREES: dict[type, st.SearchStrategy[dict[Any, Any]]] = {}


def model_tree(model: type[BaseModel]) -> st.SearchStrategy[dict[Any, Any]]:
    """A mapping with some of the model's keys (values of roughly their type) and some junk keys."""
    if model not in _TREES:
        fields = {n: f for n, f in model.model_fields.items() if n != "path"}
        known = st.sampled_from(sorted(fields)).flatmap(
            lambda n: st.tuples(st.just(n), for_type(fields[n].annotation)))
        junk = st.tuples(JUNK_KEYS, SCALARS)
        _TREES[model] = st.lists(st.one_of(known, known, known, junk), max_size=min(len(fields), 6)).map(dict)
    return _TREES[model]


def merged(tree: dict[Any, Any]) -> dict[Any, Any]:
    """The tree over a valid config, so many examples are nearly valid and reach the deeper checks."""
    out = {**GOOD, **tree}
    if isinstance(tree.get("cameras"), dict):
        out["cameras"] = {**GOOD["cameras"], **tree["cameras"]}
    return out


CONFIG_TREES = st.one_of(model_tree(schema.Config), model_tree(schema.Config).map(merged))


def dump(tree: Any) -> str:
    return yaml.safe_dump(tree, allow_unicode=True, sort_keys=False, width=100)


MODE_WARNING = re.compile(r"warning: .+: mode 0[0-7]{3} lets other users in; should be ")


def assert_answer(path: Path, rc: int, out: str, err: str) -> None:
    """Exit 0 with one OK line, or exit 2 with FILE:LINE lines only, never a traceback or a password."""
    assert "Traceback" not in out + err, err
    assert "s3cret-pw" not in out + err, err
    if rc == 0:  # a config whose data_dir is its own folder also hears that the file is readable by others
        err = "".join(ln for ln in err.splitlines(keepends=True) if not MODE_WARNING.match(ln))
        assert err == "" and re.fullmatch(rf"{re.escape(str(path))}: OK: .*\n", out), (out, err)
        return
    assert rc == 2, (rc, out, err)
    lines = err.splitlines()
    assert lines and out == "", (out, err)
    bad = [ln for ln in lines if not re.match(rf"{re.escape(str(path))}:\d+: \S", ln)]
    assert not bad, bad


def check_in_process(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = cli.main(["check", str(path)])
    assert_answer(path, rc, out.getvalue(), err.getvalue())
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def cfg_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "streams.yaml"


@FUZZ
@given(tree=CONFIG_TREES)
def test_random_config_trees(cfg_path: Path, tree: dict[Any, Any]) -> None:
    cfg_path.write_text(dump(tree), encoding="utf-8")
    check_in_process(cfg_path)


@FUZZ
@given(raw=st.binary(max_size=600))
def test_random_bytes(cfg_path: Path, raw: bytes) -> None:
    cfg_path.write_bytes(raw)
    rc, _, _ = check_in_process(cfg_path)
    assert rc == 2  # no random bytes make a camera


@settings(FUZZ, max_examples=150)
@given(tree=model_tree(schema.Config).map(merged), data=st.data())
def test_damaged_text(cfg_path: Path, tree: dict[Any, Any], data: st.DataObject) -> None:
    """A valid-looking file with a few characters inserted or replaced: YAML syntax, indentation, anchors."""
    text = dump(tree)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        piece = data.draw(st.one_of(st.sampled_from([":", " ", "\n", "- ", "&a ", "*a", "<<: ", "!!int ", "? ",
                                                      "{", "]", "'", '"', "\t", "#", "|", "%", "\x00", "\ufeff"]),
                                    st.text(max_size=3)))
        cut = data.draw(st.integers(0, 2))
        text = text[:at] + piece + text[at + cut:]
    cfg_path.write_text(text, encoding="utf-8", errors="surrogatepass")
    check_in_process(cfg_path)


NASTY: dict[str, bytes] = {
    "gbk": "cameras:\n  lobby:\n    name: 大堂\n".encode("gbk"),
    "utf16": "cameras: {}\n".encode("utf-16"),
    "nul": b"cameras:\n  lobby: \x00\n",
    "recursive": b"cameras: &c {lobby: *c}\n",
    "laughs": b"a: &a [x,x,x,x,x,x,x,x,x,x]\n" + b"".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 10)}]\n".encode() for i in range(8)),
    "deep": b"cameras: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "dupes": dump(GOOD).encode() + b"cameras: {}\n",
    "tags": b"cameras: !!python/object:os.system {}\nversion: !!binary 'x'\ndata_dir: 2020-02-30\n",
    "empty": b"",
    "comment": b"# nothing\n",
}


@pytest.mark.parametrize("name", sorted(NASTY))
def test_nasty_files_in_process(cfg_path: Path, name: str) -> None:
    cfg_path.write_bytes(NASTY[name])
    rc, _, _ = check_in_process(cfg_path)
    assert rc == 2


@pytest.mark.parametrize("name", ["gbk", "laughs", "deep", "recursive"])
def test_nasty_files_through_the_real_command(tmp_path: Path, name: str) -> None:
    p = tmp_path / "streams.yaml"
    p.write_bytes(NASTY[name])
    r = subprocess.run([sys.executable, "-m", "cli.main", "check", str(p)], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert_answer(p, r.returncode, r.stdout, r.stderr)
    assert r.returncode == 2 and len(r.stderr.splitlines()) <= 3, r.stderr


@settings(FUZZ, max_examples=4)
@given(tree=model_tree(schema.Config).map(merged))
def test_random_trees_through_the_real_command(tmp_path_factory: pytest.TempPathFactory,
                                               tree: dict[Any, Any]) -> None:
    p = tmp_path_factory.mktemp("cmd") / "streams.yaml"
    p.write_text(dump(tree), encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "cli.main", "check", str(p)], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert_answer(p, r.returncode, r.stdout, r.stderr)
