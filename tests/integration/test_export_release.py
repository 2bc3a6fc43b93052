"""``sharpeye export release --case NAME``: every export of a case released at once (real exports, real holds.json)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Config
from pipeline.export import holds
from pipeline.export.job import ExportRequest, run_export
from tests.integration.test_export import cfg, cfg_path, cli, clip30, record  # noqa: F401 (fixtures)
from tests.support.record import T0

CASE = "Xinhua St 2023-11-14 张三"


def test_release_by_case_releases_every_export_of_the_case_and_nothing_else(
        clip30: Path, cfg_path: Path, cfg: Config, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    data = cfg.data_path()
    for cam in ("cam1", "cam2"):
        record(data, cam, clip30)
    a = run_export(cfg, ExportRequest(["cam1"], T0 + 1, T0 + 5, case=CASE), user="tester")
    b = run_export(cfg, ExportRequest(["cam2"], T0 + 10, T0 + 20, case=CASE, zip=True), user="tester")
    other = run_export(cfg, ExportRequest(["cam1"], T0 + 20, T0 + 25, case="another case"), user="tester")
    alone = run_export(cfg, ExportRequest(["cam2"], T0 + 2, T0 + 4), user="tester")
    assert set(holds.all_holds(data)) == {a.id, b.id, other.id, alone.id}

    code, out, err = cli(capsys, "-c", str(cfg_path), "release", "--case", CASE)
    assert code == 0, err
    assert f"released {a.id} (case {CASE})" in out and f"released {b.id} (case {CASE})" in out
    assert f"case {CASE}: 2 of its 2 export(s) released" in out
    assert set(holds.all_holds(data)) == {other.id, alone.id}, "only the case's exports are released"

    # again: known case, nothing held any more: said, not an error
    code, out, _ = cli(capsys, "-c", str(cfg_path), "release", "--case", CASE)
    assert code == 0 and "0 of its 2 export(s) released; 2 were not held (released before)" in out

    # ids and cases together
    code, out, err = cli(capsys, "-c", str(cfg_path), "release", alone.id, "--case", "another case")
    assert code == 0, err
    assert f"released {alone.id}:" in out and f"released {other.id} (case another case)" in out
    assert holds.all_holds(data) == {}


def test_release_of_an_unknown_or_unsafe_case_fails_clearly(
        clip30: Path, cfg_path: Path, cfg: Config, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    data = cfg.data_path()
    record(data, "cam1", clip30)
    res = run_export(cfg, ExportRequest(["cam1"], T0 + 1, T0 + 5, case=CASE), user="tester")
    code, _, err = cli(capsys, "-c", str(cfg_path), "release", "--case", "no such case")
    assert code == 2 and f"no case named 'no such case' (cases: {CASE})" in err, err
    code, _, err = cli(capsys, "-c", str(cfg_path), "release", "--case", "../../etc")
    assert code == 2 and "case name '../../etc' is not valid" in err, err
    code, _, err = cli(capsys, "-c", str(cfg_path), "release")
    assert code == 2 and "give export id(s) or --case NAME" in err
    assert set(holds.all_holds(data)) == {res.id}, "a failed release releases nothing"


def test_a_case_known_only_from_its_holds_is_released_too(
        clip30: Path, cfg_path: Path, cfg: Config, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    """The case index lost (or never written: the export failed between its hold and the case): the holds
    still name the case, so its exports are released by it."""
    data = cfg.data_path()
    record(data, "cam1", clip30)
    res = run_export(cfg, ExportRequest(["cam1"], T0 + 1, T0 + 5, case=CASE), user="tester")
    (data / "exports" / "cases.json").unlink()
    code, out, err = cli(capsys, "-c", str(cfg_path), "release", "--case", CASE)
    assert code == 0 and f"released {res.id} (case {CASE})" in out, err
    assert holds.all_holds(data) == {}
