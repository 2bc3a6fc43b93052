"""Export failures on the command line, the cases tests/test_export.py does not cover: a disk that fills
while the ZIP or the case manifest is written, and manifest paths that would lead out of the recordings.

Real small filesystems (tmpfs, needs root like tests/test_disk_full.py): one sized by bytes for the
ZIP; one with its inodes used up but five for the case, so the export fits exactly and the case's
first file does not (deterministic, unlike counting bytes of manifests whose size varies).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from pipeline.config import Config
from pipeline.export import holds, signing
from pipeline.export.job import ExportRequest, run_export
from pipeline.export.manifest import render_text, write_signed
from pipeline.export.verify import verify
from tests.integration.test_export import cfg, cfg_path, cli, clip30, record, tmpfs  # noqa: F401 (fixtures)
from tests.support.record import T0

CASE = "Gate theft 2023-11-15"


@pytest.fixture
def data(cfg: Config, clip30: Path) -> Path:  # noqa: F811
    """The config's data folder with 30 s of cam1 recorded from T0."""
    record(cfg.data_path(), "cam1", clip30)
    return cfg.data_path()


def test_a_disk_that_fills_while_zipping_removes_the_partial_zip_and_keeps_the_export(
        data: Path, cfg_path: Path, cfg: Config, tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    dry = run_export(cfg, ExportRequest(["cam1"], T0, T0 + 30, out_dir=tmp_path / "dry"), user="tester")
    size = sum(f.stat().st_size for f in dry.folder.rglob("*") if f.is_file())
    holds.release(data, dry.id)
    with tmpfs(tmp_path / "usb", size * 3 // 2 // 1024) as disk:  # the export fits, a second copy (the ZIP) does not
        code, _, err = cli(capsys, "-c", str(cfg_path), "--camera", "cam1", "--start", str(T0), "--end",
                           str(T0 + 30), "-o", str(disk), "--zip")
        assert code == 1 and "disk full while writing the ZIP: the partial ZIP was removed" in err, err
        (folder,) = disk.iterdir()
        assert folder.is_dir() and f"the export itself is complete in {folder}" in err
        assert verify(folder).ok, "what is left is the whole, signed export"
        (hold,) = holds.all_holds(data).values()
        assert hold["path"] == str(folder) and not hold.get("pending"), "held as the folder it is"


def fill_inodes(disk: Path, leave: int) -> None:
    """Create empty files until the filesystem has no inode left, then delete ``leave`` of them."""
    made = []
    while True:
        p = disk / f"fill-{len(made)}"
        try:
            p.touch()
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
            break
        made.append(p)
    for p in made[:leave]:
        p.unlink()


def test_a_disk_that_fills_while_the_case_is_written_puts_the_case_back_and_removes_the_export(
        data: Path, cfg_path: Path, cfg: Config, tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    with tmpfs(tmp_path / "usb", 64 * 1024, inodes=100) as disk:
        args = ["-c", str(cfg_path), "--camera", "cam1", "--start", str(T0 + 1), "--end", str(T0 + 5), "-o", str(disk),
                "--case", CASE]
        code, _, err = cli(capsys, *args)
        assert code == 0, err
        case_dir = disk / "cases" / CASE
        before = {n: (case_dir / n).read_bytes() for n in ("case.txt", "case.json", "case.sig")}
        (first,) = holds.all_holds(data)
        # the next export needs 5 inodes (its folder, its video, manifest.txt/.json/.sig); the case's new
        # case.txt one more
        fill_inodes(disk, 5)
        code, _, err = cli(capsys, *args)
        assert code == 1 and f"disk full while adding the export to case {CASE!r}" in err, err
        assert "this export's folder were removed, nothing was exported; the case is as it was" in err
        assert sorted(p.name for p in case_dir.iterdir()) == sorted([*before, json.loads(before["case.json"])
                                                                     ["exports"][0]["folder"]])
        assert {n: (case_dir / n).read_bytes() for n in before} == before
        assert verify(case_dir).ok
        assert list(holds.all_holds(data)) == [first], "the failed export holds nothing"
        # room again: the same command works
        for p in disk.glob("fill-*"):
            p.unlink()
        code, _, err = cli(capsys, *args)
        assert code == 0, err
        assert verify(case_dir).ok and len(json.loads((case_dir / "case.json").read_text())["exports"]) == 2


def test_a_new_case_that_cannot_be_written_leaves_nothing(
        data: Path, cfg_path: Path, cfg: Config, tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    with tmpfs(tmp_path / "usb", 64 * 1024, inodes=100) as disk:
        (disk / "cases").mkdir()
        fill_inodes(disk, 6)  # the case folder, the export's 5: nothing for case.txt
        code, _, err = cli(capsys, "-c", str(cfg_path), "--camera", "cam1", "--start", str(T0 + 1), "--end",
                           str(T0 + 5), "-o", str(disk), "--case", CASE)
        assert code == 1 and "disk full while adding the export to case" in err, err
        assert list((disk / "cases").iterdir()) == [], "no half case left"
    assert holds.all_holds(data) == {}


def test_verify_never_reads_a_source_segment_outside_the_recordings(
        data: Path, cfg: Config, tmp_path: Path) -> None:  # noqa: F811
    """A manifest (signed by this installation's key, so only the path is wrong) naming ``../`` paths or a
    link out of the recordings: verify refuses to read them and says which."""
    rec = data / "recordings"
    res = run_export(cfg, ExportRequest(["cam1"], T0 + 1, T0 + 15), user="tester")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(os.urandom(100))
    (rec / "cam1" / "link.mp4").symlink_to(secret)
    doc = json.loads((res.folder / "manifest.json").read_text())
    segs = doc["cameras"][0]["segments"]
    segs[0]["path"] = "../../secret.bin"
    segs[1]["path"] = "cam1/link.mp4"
    files = doc.pop("files")
    del files["manifest.txt"]
    write_signed(res.folder, "manifest", doc, render_text(doc), signing.load_or_create_key(data), files)
    report = verify(res.folder, sources=[rec])
    assert not report.ok
    assert report.problems == [
        f"export {res.id}: source segment path '../../secret.bin' is not a relative recording path",
        f"export {res.id}: source segment 'cam1/link.mp4' leads out of the recordings (a link): not read"]
    assert verify(res.folder).ok, "the export itself is intact"
