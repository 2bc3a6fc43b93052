"""Export manifest → source segments: the sha256 and size of every recorded file the export read.

Real segments from the SegmentWriter (tests/test_export.py's recording), real exports; an older
manifest (made before source hashes existed) is produced by removing them and signing again with
the installation's key, exactly as that version wrote it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from pipeline.config import Config
from pipeline.export import signing
from pipeline.export.job import ExportRequest, run_export
from pipeline.export.manifest import render_text, write_signed
from pipeline.export.verify import verify
from pipeline.record.catalog import Recordings
from tests.integration.test_export import cfg, cfg_path, cli, clip30, manifest_of, record  # noqa: F401 (fixtures)
from tests.support.record import T0


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_gives_each_source_segments_sha256_and_size(clip30: Path, cfg: Config) -> None:  # noqa: F811
    rec = record(cfg.data_path(), "cam1", clip30)
    res = run_export(cfg, ExportRequest(["cam1"], T0 + 5, T0 + 25), user="tester")
    segs = res.manifest["cameras"][0]["segments"]
    on_disk = Recordings(rec).segments("cam1", T0 + 5, T0 + 25)
    assert len(segs) == len(on_disk) == 3
    for entry, info in zip(segs, on_disk):
        assert entry["sha256"] == sha(info.path) and entry["bytes"] == info.path.stat().st_size
        assert (rec / entry["path"]) == info.path
    text = (res.folder / "manifest.txt").read_text()
    assert all(f"sha256 {sha(i.path)}" in text and i.path.name in text for i in on_disk)
    assert manifest_of(res.folder) == res.manifest, "what the library returns is what was written and signed"


def test_a_skipped_corrupt_segment_is_identified_by_its_hash_too(clip30: Path, cfg: Config) -> None:  # noqa: F811
    rec = record(cfg.data_path(), "cam1", clip30)
    broken = Recordings(rec).segments("cam1", T0, T0 + 30)[1].path
    broken.write_bytes(os.urandom(broken.stat().st_size))
    res = run_export(cfg, ExportRequest(["cam1"], T0, T0 + 30), user="tester")
    (skipped,) = res.manifest["cameras"][0]["skipped_segments"]
    assert skipped["sha256"] == sha(broken) and skipped["bytes"] == broken.stat().st_size
    assert f"sha256 {sha(broken)}" in (res.folder / "manifest.txt").read_text()


def test_verify_rehashes_the_sources_still_on_disk_and_names_a_changed_one(
        clip30: Path, cfg_path: Path, cfg: Config, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    rec = record(cfg.data_path(), "cam1", clip30)
    res = run_export(cfg, ExportRequest(["cam1"], T0 + 1, T0 + 25), user="tester")
    report = verify(res.folder, sources=[rec])
    assert report.ok, report.problems
    assert report.sources == [f"export {res.id}: 3 of 3 source segment(s) with sha256 recorded; on disk: 3 match"]
    code, out, _ = cli(capsys, "verify", str(res.folder), "-c", str(cfg_path), "--recordings")
    assert code == 0 and "on disk: 3 match" in out, out
    segs = Recordings(rec).segments("cam1", T0, T0 + 30)
    segs[0].path.unlink()  # retention deleted it after release: reported, not a failure
    changed = segs[2].path
    raw = bytearray(changed.read_bytes())
    raw[len(raw) // 2] ^= 1
    changed.write_bytes(bytes(raw))
    report = verify(res.folder, sources=[rec])
    assert not report.ok
    (problem,) = report.problems
    assert str(changed) in problem and "differs from what was exported" in problem
    assert "on disk: 1 match, 1 no longer on disk" in report.sources[0]
    code, out, _ = cli(capsys, "verify", str(res.folder), "-c", str(cfg_path), "--recordings")
    assert code == 1 and f"DIFFERS {changed}" in out
    assert verify(res.folder).ok, "without --recordings only the export itself is checked"


def test_an_older_manifest_without_source_hashes_still_verifies_and_says_not_recorded(
        clip30: Path, cfg_path: Path, cfg: Config, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    data = cfg.data_path()
    rec = record(data, "cam1", clip30)
    res = run_export(cfg, ExportRequest(["cam1"], T0 + 1, T0 + 15), user="tester")
    doc = json.loads((res.folder / "manifest.json").read_text())
    for cam in doc["cameras"]:
        for s in cam["segments"]:
            del s["sha256"]
    files = doc.pop("files")
    del files["manifest.txt"]
    old = write_signed(res.folder, "manifest", doc, render_text(doc), signing.load_or_create_key(data), files)
    assert "sha256" not in json.dumps(old["cameras"][0]["segments"])
    assert "sha256 not recorded" in (res.folder / "manifest.txt").read_text()
    report = verify(res.folder, sources=[rec])
    assert report.ok, report.problems
    assert report.sources == [f"export {res.id}: 2 source segment(s); their sha256: not recorded (a manifest made "
                              "before source hashes were added)"]
    code, out, _ = cli(capsys, "verify", str(res.folder), "-c", str(cfg_path), "--recordings")
    assert code == 0 and "not recorded" in out and out.rstrip().splitlines()[-1].startswith("OK:")
