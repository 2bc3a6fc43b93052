"""Post-incident export (pipeline/export/): real segment files from the SegmentWriter, real MP4s, real Redis.

The footage is the recording tests' generated clip (320x240, 25 fps, a keyframe every 2 s, no
B-frames) fed through a SegmentWriter on a simulated clock (``T0`` + stream time), so a 30 s
recording is three 10 s segments made in well under a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from cli.main import main
from pipeline.config import Config, load_config
from pipeline.export import holds
from pipeline.export.cut import cut_camera
from pipeline.export.job import ExportError, ExportRequest, run_export
from pipeline.export.paths import UnsafeName, check_case_name, inside
from pipeline.export.protect import ExportProtection, protection_for
from pipeline.export.verify import verify
from pipeline.publish import bus
from pipeline.record.catalog import Recordings
from pipeline.record.janitor import Janitor
from pipeline.record.retention import Retention
from pipeline.record.segments import SegmentWriter
from tests.support.config import write_config
from tests.support.media import make_clip
from tests.support.record import FPS, T0, feed_file

FRAME = 1 / FPS
PASSWORD = "s3cret-pass"


@pytest.fixture(scope="module")
def clip30(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip30.mp4", 30, picture="texture", tune=None)


def record(data: Path, camera: str, clip: Path, **shift: float) -> Path:
    """Record ``clip`` for ``camera`` into ``data/recordings`` as 10 s segments (``shift``: a pause, see feed_file)."""
    writer = SegmentWriter(camera, data / "recordings", segment_s=10)
    feed_file(writer, clip, **shift)
    writer.close()
    return data / "recordings"


@pytest.fixture()
def cfg_path(tmp_path: Path) -> Path:
    cams = {c: {"source": f"rtsp://admin:{PASSWORD}@10.1.2.3:554/{c}/sub",
                "record_source": f"rtsp://admin:{PASSWORD}@10.1.2.3:554/{c}/main"} for c in ("cam1", "cam2")}
    return write_config(tmp_path, cams, data_dir=tmp_path / "data", timezone="Asia/Shanghai")


@pytest.fixture()
def cfg(cfg_path: Path) -> Config:
    return load_config(str(cfg_path))


def decoded(path: Path) -> tuple[list[np.ndarray], list[float], int]:
    """(frames as grey arrays, their times in s, decode errors) of the first video stream."""
    frames, times, errors = [], [], 0
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        for pkt in c.demux(v):
            try:
                for f in pkt.decode():
                    frames.append(f.to_ndarray(format="gray"))
                    times.append(float(f.time))
            except av.error.FFmpegError:
                errors += 1
    return frames, times, errors


def first_packet(path: Path) -> av.Packet:
    with av.open(str(path)) as c:
        return next(p for p in c.demux(c.streams.video[0]) if p.size)


def duration_s(path: Path) -> float:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return float(v.duration * v.time_base)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["export", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def manifest_of(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text())


# ------------------------------------------------------------------------------------------ the file


def test_export_across_segment_boundaries_is_frame_exact_faststart_and_bit_identical(
        clip30: Path, cfg: Config) -> None:
    record(cfg.data_path(), "cam1", clip30)
    res = run_export(cfg, ExportRequest(["cam1"], T0 + 5.0, T0 + 25.0), user="tester")
    (cut,) = res.cuts
    assert len(cut.used) == 3, "the range crosses two segment boundaries"
    (f,) = cut.files
    # starts at the keyframe before T (GOP 2 s: 4.0 s), ends with the last frame before the end
    assert f.start == pytest.approx(T0 + 4.0, abs=1e-3) and f.end == pytest.approx(T0 + 25.0, abs=1e-3)
    assert f.frames == 21 * FPS
    frames, times, errors = decoded(f.path)
    assert errors == 0 and len(frames) == 21 * FPS
    assert duration_s(f.path) == pytest.approx(21.0, abs=FRAME)
    assert times[0] == 0.0 and all(b - a == pytest.approx(FRAME, abs=1e-3) for a, b in zip(times, times[1:])), \
        "timestamps are continuous across the segment boundaries"
    first = first_packet(f.path)
    assert first.is_keyframe and first.dts == 0
    head = f.path.read_bytes()[:4096]
    assert b"moov" in head and head.find(b"moov") < max(head.find(b"mdat"), 4096), "+faststart: index first"
    # stream copy: every picture is the recorded one, bit for bit (the clip's frames 100 .. 624)
    original, _, _ = decoded(clip30)
    assert all(np.array_equal(a, b) for a, b in zip(frames, original[100:625]))
    m = res.manifest["cameras"][0]
    assert m["actual"]["start_offset_s"] == pytest.approx(-1.0)
    assert m["actual"]["start"]["local"].endswith("+08:00") and m["actual"]["start"]["utc"].endswith("Z")
    assert [s["path"].split("/")[-1] for s in m["segments"]] == [s.path.name for s in cut.used]
    assert m["gaps"] == [] and m["skipped_segments"] == []


def test_precise_starts_within_one_frame_of_T_and_copies_the_rest(clip30: Path, cfg: Config) -> None:
    record(cfg.data_path(), "cam1", clip30)
    t = T0 + 5.52  # 0.48 s before the keyframe at 6.0 s
    res = run_export(cfg, ExportRequest(["cam1"], t, T0 + 12.0, precise=True), user="tester")
    (f,) = res.cuts[0].files
    assert abs(f.start - t) <= FRAME, f"starts {f.start - t:+.3f} s from T"
    assert f.reencoded_frames == 12  # 5.52 .. 5.96
    frames, times, errors = decoded(f.path)
    assert errors == 0, "decodes cleanly from the first frame, through the switch back to copied packets"
    assert len(frames) == round((12.0 - 5.52) * FPS)
    assert first_packet(f.path).is_keyframe
    original, _, _ = decoded(clip30)
    k = round(5.52 * FPS)  # the clip's frame at T
    # re-encoded frames look like the originals; from the next keyframe on they are the originals
    psnr = [10 * np.log10(255 ** 2 / max(1e-9, np.mean((a.astype(float) - b) ** 2)))
            for a, b in zip(frames[:12], original[k:k + 12])]
    assert min(psnr) > 35, psnr
    assert all(np.array_equal(a, b) for a, b in zip(frames[12:], original[k + 12:k + len(frames)]))
    assert res.manifest["cameras"][0]["files"][0]["reencoded_frames"] == 12
    assert abs(res.manifest["cameras"][0]["actual"]["start_offset_s"]) <= FRAME


# ------------------------------------------------------------------------------------------ manifest, ZIP, verify


def flip_byte(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def rewrite_zip(src: Path, dest: Path, name_suffix: str, change: Any) -> None:
    """Copy a ZIP, passing the entry whose name ends with ``name_suffix`` through ``change``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, change(data) if info.filename.endswith(name_suffix) else data)


def test_multi_camera_zip_is_signed_verify_accepts_it_and_names_one_changed_byte(
        clip30: Path, cfg_path: Path, cfg: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = cfg.data_path()
    for cam in ("cam1", "cam2"):
        record(data, cam, clip30)
    code, out, err = cli(capsys, "-c", str(cfg_path), "--camera", "cam1", "--camera", "cam2",
                         "--start", "2023-11-15T06:13:25", "--end", "2023-11-15T06:13:45+08:00", "--zip",
                         "--user", "inspector.li")
    assert code == 0, err
    (zpath,) = (data / "exports").glob("*.zip")
    assert not [p for p in (data / "exports").iterdir() if p.is_dir()], "the folder is replaced by its ZIP"
    with zipfile.ZipFile(zpath) as z:
        names = sorted(n.split("/", 1)[1] for n in z.namelist())
        doc = json.loads(z.read(f"{zpath.stem}/manifest.json"))
        text = z.read(f"{zpath.stem}/manifest.txt").decode()
        for name in ("cam1.mp4", "cam2.mp4", "manifest.txt"):
            assert doc["files"][name]["sha256"] == hashlib.sha256(z.read(f"{zpath.stem}/{name}")).hexdigest()
    assert names == ["cam1.mp4", "cam2.mp4", "manifest.json", "manifest.sig", "manifest.txt"]
    # the manifest: who, when, what, in the config's zone and UTC, passwords removed
    assert doc["exported_by"]["user"] == "inspector.li" and doc["exported_by"]["via"] == "command line"
    assert doc["requested"]["start"]["epoch"] == T0 + 5 and doc["requested"]["end"]["epoch"] == T0 + 25
    assert doc["requested"]["start"]["local"] == "2023-11-15T06:13:25.000+08:00"
    assert doc["requested"]["start"]["utc"] == "2023-11-14T22:13:25.000Z" and doc["time_zone"] == "Asia/Shanghai"
    assert doc["software"]["version"] and doc["model"]["name"] == "yolox_nano"
    assert [c["id"] for c in doc["cameras"]] == ["cam1", "cam2"]
    assert doc["cameras"][0]["source"] == "rtsp://admin:***@10.1.2.3:554/cam1/sub"
    assert PASSWORD not in json.dumps(doc) and PASSWORD not in text
    assert "Camera cam1" in text and "2023-11-15T06:13:25.000+08:00" in text
    # verify: accepted as made
    code, out, _ = cli(capsys, "verify", str(zpath), "-c", str(cfg_path))
    assert code == 0 and "OK" in out and "this installation's key" in out, out
    # one byte of a video
    bad = tmp_path / "bad-video.zip"
    rewrite_zip(zpath, bad, "cam2.mp4", lambda b: flip_byte(b, len(b) // 2))
    code, out, _ = cli(capsys, "verify", str(bad), "-c", str(cfg_path))
    assert code == 1 and "cam2.mp4: differs" in out and "cam1.mp4" not in out, out
    # one byte of the manifest, even one that keeps it valid JSON with the same content (indentation)
    bad = tmp_path / "bad-manifest.zip"
    rewrite_zip(zpath, bad, "manifest.json", lambda b: b.replace(b'\n  "id"', b'\n \t"id"', 1))
    code, out, _ = cli(capsys, "verify", str(bad), "-c", str(cfg_path))
    assert code == 1 and "manifest.json: the signature does not match" in out, out
    # a changed value in the manifest (a hash re-written to match an edited video) fails the same way
    bad = tmp_path / "bad-hash.zip"
    rewrite_zip(zpath, bad, "manifest.json", lambda b: flip_byte(b, b.index(b'"sha256": "') + 12))
    code, out, _ = cli(capsys, "verify", str(bad))
    assert code == 1 and "signature does not match" in out


def test_verify_folder_names_every_changed_missing_and_added_file(clip30: Path, cfg: Config) -> None:
    data = cfg.data_path()
    for cam in ("cam1", "cam2"):
        record(data, cam, clip30)
    res = run_export(cfg, ExportRequest(["cam1", "cam2"], T0 + 1, T0 + 9), user="tester")
    assert verify(res.folder).ok
    p = res.folder / "cam1.mp4"
    p.write_bytes(flip_byte(p.read_bytes(), 1000))
    (res.folder / "cam2.mp4").unlink()
    (res.folder / "notes.txt").write_text("added later")
    report = verify(res.folder)
    assert not report.ok
    text = "\n".join(report.problems)
    assert "cam1.mp4: differs" in text and "cam2.mp4: missing" in text and "notes.txt: not in the manifest" in text


def test_a_case_groups_exports_and_its_zip_verifies_as_a_whole(
        clip30: Path, cfg_path: Path, cfg: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = cfg.data_path()
    for cam in ("cam1", "cam2"):
        record(data, cam, clip30)
    case = "Xinhua St 2023-11-14 张三"
    for cam, (s, e) in (("cam1", (1, 5)), ("cam2", (10, 20))):
        code, _, err = cli(capsys, "-c", str(cfg_path), "--camera", cam, "--start", str(T0 + s), "--end", str(T0 + e),
                           "--case", case, "--description", "theft at the gate", "--zip")
        assert code == 0, err
    folder = data / "exports" / "cases" / case
    case_doc = json.loads((folder / "case.json").read_text())
    assert case_doc["description"] == "theft at the gate" and len(case_doc["exports"]) == 2
    index = json.loads((data / "exports" / "cases.json").read_text())
    assert index["cases"][case]["exports"] == [e["id"] for e in case_doc["exports"]]
    czip = folder.with_name(case + ".zip")
    assert verify(czip).ok and verify(folder).ok
    bad = tmp_path / "bad-case.zip"
    rewrite_zip(czip, bad, "cam2.mp4", lambda b: flip_byte(b, 5000))
    report = verify(bad)
    assert not report.ok and any("cam2.mp4: differs" in p for p in report.problems)
    # an export swapped for another (re-signed by the same key) is caught by the case's list of manifest hashes
    first = folder / case_doc["exports"][0]["folder"]
    (first / "manifest.json").write_bytes((first / "manifest.json").read_bytes() + b" ")
    assert not verify(folder).ok


# ------------------------------------------------------------------------------------------ failures


def test_a_gap_in_the_range_is_listed_with_its_reason_and_the_clock_jumps_over_it(clip30: Path, cfg: Config) -> None:
    record(cfg.data_path(), "cam1", clip30, shift_at=15.3, shift_s=20.0)  # nothing for 20 s after 15.3 s
    res = run_export(cfg, ExportRequest(["cam1"], T0, T0 + 50), user="tester")
    m = res.manifest["cameras"][0]
    (gap,) = [g for g in m["gaps"] if "no packets" in g["reason"]]
    assert gap["start"]["epoch"] == pytest.approx(T0 + 15.32, abs=1e-3)
    assert gap["end"]["epoch"] == pytest.approx(T0 + 36.0, abs=1e-3)
    assert gap["reason"] == "no packets for 20.0 s"
    (f,) = res.cuts[0].files
    frames, times, errors = decoded(f.path)
    assert errors == 0 and len(frames) == f.frames == sum(round(s.duration * FPS) for s in res.cuts[0].used)
    after = next(t for t in times if t > 15.4)
    assert after == pytest.approx(36.0, abs=FRAME), "file time = recording time since the first frame"
    assert "no packets for 20.0 s" in (res.folder / "manifest.txt").read_text()


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_segment_is_skipped_and_reported(clip30: Path, cfg: Config, damage: str) -> None:
    rec = record(cfg.data_path(), "cam1", clip30)
    segs = Recordings(rec).segments("cam1", T0, T0 + 30)
    broken = segs[1].path
    raw = broken.read_bytes()
    broken.write_bytes(os.urandom(len(raw)) if damage == "garbage" else raw[: len(raw) // 2])
    res = run_export(cfg, ExportRequest(["cam1"], T0, T0 + 30), user="tester")
    m = res.manifest["cameras"][0]
    (skipped,) = m["skipped_segments"]
    assert skipped["path"].endswith(broken.name)
    assert ("truncated" in skipped["reason"]) if damage == "truncated" else skipped["reason"]
    (gap,) = m["gaps"]
    assert gap["reason"].startswith("corrupt segment skipped")
    assert gap["start"]["epoch"] == pytest.approx(segs[1].start, abs=1e-3)
    assert gap["end"]["epoch"] == pytest.approx(segs[1].end, abs=1e-3)
    (f,) = res.cuts[0].files
    frames, times, errors = decoded(f.path)
    assert errors == 0 and len(frames) == 20 * FPS
    assert times[250] == pytest.approx(20.0, abs=FRAME), "the skipped 10 s stay a hole in the file's clock"
    assert any("corrupt segment skipped" in w for w in res.warnings)


def test_nothing_recorded_fails_with_a_clear_message_and_exit_2(
        clip30: Path, cfg_path: Path, cfg: Config, capsys: pytest.CaptureFixture[str]) -> None:
    record(cfg.data_path(), "cam1", clip30)
    code, _, err = cli(capsys, "-c", str(cfg_path), "--camera", "cam1", "--start", str(T0 + 100), "--end",
                       str(T0 + 200))
    assert code == 2 and "nothing recorded between 2023-11-15T06:15:00.000+08:00" in err, err
    assert not (cfg.data_path() / "exports").exists() or not any((cfg.data_path() / "exports").glob("2*"))
    # a range half recorded exports what exists and lists the rest as a gap
    res = run_export(cfg, ExportRequest(["cam1", "cam2"], T0 + 20, T0 + 60), user="tester")
    cam1, cam2 = res.manifest["cameras"]
    assert cam1["files"][0]["frames"] == 10 * FPS
    assert cam1["gaps"][-1]["start"]["epoch"] == pytest.approx(T0 + 30, abs=1e-3) and cam2["files"] == []
    assert cam2["gaps"][0]["reason"] == "not recorded"


@contextlib.contextmanager
def tmpfs(where: Path, size_kb: int, inodes: int | None = None) -> Iterator[Path]:
    """A small real filesystem (needs root, as tests/test_disk_full.py): failing to mount fails the test."""
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size_kb}k" + (f",nr_inodes={inodes}" if inodes else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True,
                       text=True, timeout=30)
    if r.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs at {where} (this test needs root): {r.stderr.strip()}", pytrace=False)
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def test_a_full_disk_removes_the_partial_file_and_says_so(
        clip30: Path, cfg_path: Path, cfg: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = record(cfg.data_path(), "cam1", clip30)
    size = sum(s.bytes for s in Recordings(rec).segments("cam1", T0, T0 + 30))
    with tmpfs(tmp_path / "usb", size // 2048) as disk:  # room for half of it
        code, _, err = cli(capsys, "-c", str(cfg_path), "--camera", "cam1", "--start", str(T0), "--end",
                           str(T0 + 30), "-o", str(disk))
        assert code == 1 and "disk full" in err and "partial file" in err and "removed" in err, err
        assert list(disk.rglob("*")) == [], "nothing half-written is left on the disk"
    assert holds.all_holds(cfg.data_path()) == {}, "a failed export holds nothing"


# ------------------------------------------------------------------------------------------ protection


def test_retention_keeps_exported_segments_until_released(
        clip30: Path, cfg_path: Path, cfg: Config, capsys: pytest.CaptureFixture[str]) -> None:
    data = cfg.data_path()
    rec = record(data, "cam1", clip30)
    segs = Recordings(rec).segments("cam1", T0, T0 + 30)
    res = run_export(cfg, ExportRequest(["cam1"], T0 + 12, T0 + 18), user="tester")
    assert [s.path for s in res.cuts[0].used] == [segs[1].path]
    # the janitor as the supervisor builds it (retention by age, the export's hook)
    janitor = Janitor.from_config(cfg, protected=protection_for(cfg))
    later = T0 + 30 * 86400
    result = janitor.sweep(later)
    assert result.deleted_files == 2 and result.kept_protected == 1
    assert [s.path for s in Recordings(rec).segments("cam1", T0, T0 + 30)] == [segs[1].path]
    code, out, _ = cli(capsys, "-c", str(cfg_path), "release", res.id)
    assert code == 0 and "released" in out
    assert janitor.sweep(later).deleted_files == 1
    assert Recordings(rec).segments("cam1", T0, T0 + 30) == []
    code, _, err = cli(capsys, "-c", str(cfg_path), "release", res.id)
    assert code == 2 and "no hold" in err


def test_an_open_alerts_clip_range_is_protected_until_it_ends(clip30: Path, cfg: Config, redis_url: str) -> None:
    rec = record(cfg.data_path(), "cam1", clip30)
    keys = bus.BusKeys("exp-protect")
    r = bus.connect(redis_url)
    msg = {"type": "alert", "alert_id": "cam1-a1", "phase": "new", "camera": {"id": "cam1", "name": "Cam1"},
           "start_time": T0 + 25.0, "clip": {"start": T0 + 21.0, "end": None}}
    bus.publish_event(r, keys, msg, maxlen=1000)
    hook = ExportProtection(cfg.data_path(), redis_url, keys.prefix, alerts_refresh_s=0)
    ret = Retention(rec, retain_days=1, protected=hook)
    assert ret.sweep(T0 + 86400 * 3).deleted_files == 2  # the third segment (20-30 s) holds the open clip
    assert [s.start for s in Recordings(rec).segments("cam1", T0, T0 + 30)] == [T0 + 20]
    bus.publish_event(r, keys, dict(msg, phase="end", clip={"start": T0 + 21.0, "end": T0 + 29.0}), maxlen=1000)
    assert ret.sweep(T0 + 86400 * 3).deleted_files == 1


def test_export_of_an_alert_takes_its_camera_and_clip_from_the_bus(
        clip30: Path, cfg_path: Path, cfg: Config, redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    record(cfg.data_path(), "cam2", clip30)
    keys = bus.BusKeys(cfg.bus.prefix)
    r = bus.connect(redis_url)
    r.delete(keys.events, keys.open_alerts)
    base = {"type": "alert", "alert_id": "cam2-x7", "camera": {"id": "cam2", "name": "Cam2"},
            "rule": {"id": "presence", "kind": "presence", "severity": "high"}, "labels": ["person"],
            "start_time": T0 + 8.0}
    bus.publish_event(r, keys, dict(base, phase="new", clip={"start": T0 + 3.0, "end": None}), maxlen=1000)
    bus.publish_event(r, keys, dict(base, phase="end", end_time=T0 + 14.0, clip={"start": T0 + 3.0,
                                                                                 "end": T0 + 19.0}), maxlen=1000)
    code, out, err = cli(capsys, "-c", str(cfg_path), "--alert", "cam2-x7", "--redis", redis_url, "--json")
    assert code == 0, err
    doc = json.loads(out)
    m = doc["manifest"]
    assert m["alert"]["alert_id"] == "cam2-x7" and m["alert"]["open"] is False
    assert [c["id"] for c in m["cameras"]] == ["cam2"]
    assert m["requested"]["start"]["epoch"] == T0 + 3.0 and m["requested"]["end"]["epoch"] == T0 + 19.0
    assert m["cameras"][0]["actual"]["start"]["epoch"] == pytest.approx(T0 + 2.0, abs=1e-3)  # the keyframe before
    code, _, err = cli(capsys, "-c", str(cfg_path), "--alert", "no-such-alert", "--redis", redis_url)
    assert code == 2 and "alert 'no-such-alert' is neither open nor in the events stream" in err


# ------------------------------------------------------------------------------------------ names and exit codes


@pytest.mark.parametrize("camera", ["../cam1", "..", "cam1/../../x", "/etc", "cam 1", ".hidden", "a" * 65])
def test_path_traversal_in_camera_ids_is_refused(
        camera: str, clip30: Path, cfg_path: Path, cfg: Config, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    record(cfg.data_path(), "cam1", clip30)
    before = sorted(p for p in tmp_path.rglob("*"))
    code, _, err = cli(capsys, "-c", str(cfg_path), "--camera", camera, "--start", str(T0), "--end", str(T0 + 5))
    assert code == 2 and "is not valid" in err, err
    assert sorted(p for p in tmp_path.rglob("*")) == before, "nothing was written anywhere"


@pytest.mark.parametrize("case", ["../../outside", "a/b", "..", ".hidden", " x", "/abs"])
def test_path_traversal_in_case_names_and_ids_is_refused(
        case: str, clip30: Path, cfg_path: Path, cfg: Config, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    record(cfg.data_path(), "cam1", clip30)
    code, _, err = cli(capsys, "-c", str(cfg_path), "--camera", "cam1", "--start", str(T0), "--end", str(T0 + 5),
                       "--case", case)
    assert code == 2 and "not valid" in err, err
    assert not (tmp_path / "outside").exists() and not (cfg.data_path() / "exports" / "cases").exists()
    code, _, err = cli(capsys, "-c", str(cfg_path), "release", "../holds")
    assert code == 2 and "not valid" in err


def test_a_symlink_cannot_lead_an_export_out_of_its_folder(tmp_path: Path) -> None:
    root = tmp_path / "exports"
    (root / "cases").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "cases" / "evil").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafeName):
        inside(root, "cases", check_case_name("evil"))
    assert inside(root, "cases", check_case_name("案件 2023-11.a")) == (root / "cases" / "案件 2023-11.a").resolve()


def test_cli_exit_codes_and_the_public_key(
        clip30: Path, cfg_path: Path, cfg: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = cfg.data_path()
    record(data, "cam1", clip30)
    assert cli(capsys, "-c", str(cfg_path), "--camera", "cam1")[0] == 2  # no range
    code, _, err = cli(capsys, "-c", str(cfg_path), "--camera", "cam1", "--start", "yesterday", "--end", str(T0))
    assert code == 2 and "is not a time" in err
    code, _, err = cli(capsys, "-c", str(cfg_path), "--camera", "cam9", "--start", str(T0), "--end", str(T0 + 5))
    assert code == 2 and "'cam9' is not in the config and has no recordings" in err
    code, _, err = cli(capsys, "-c", str(cfg_path), "--camera", "cam1", "--start", str(T0 + 5), "--end", str(T0))
    assert code == 2 and "after its start" in err
    assert cli(capsys, "verify", str(tmp_path / "nothing-here"))[0] == 2
    code, out, _ = cli(capsys, "-c", str(cfg_path), "key")
    assert code == 0 and out.startswith("ed25519 ")
    key_file = data / "keys" / "export-ed25519.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600 and (data / "keys").stat().st_mode & 0o777 == 0o700
    code, out2, _ = cli(capsys, "-c", str(cfg_path), "key")
    assert out2 == out, "the key is made once and kept"
    code, out, err = cli(capsys, "-c", str(cfg_path), "--camera", "cam1", "--start", str(T0), "--end", str(T0 + 5),
                         "-o", str(tmp_path / "out"))
    assert code == 0, err
    (folder,) = (tmp_path / "out").iterdir()
    assert verify(folder).ok and manifest_of(folder)["exported_by"]["user"]  # the OS user
    code, out, _ = cli(capsys, "-c", str(cfg_path), "list")
    assert code == 0 and folder.name in out
    # a manifest signed by another installation's key: verify names the key and fails against this one's
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    code, out, _ = cli(capsys, "verify", str(other), "--key", "A" * 43 + "=")
    assert code == 1 and "not by the expected key" in out


def test_a_short_range_over_a_boundary_starts_at_the_keyframe_before_and_ends_after_its_last_frame(
        clip30: Path, cfg: Config, tmp_path: Path) -> None:
    data = cfg.data_path()
    record(data, "cam1", clip30)
    cut = cut_camera(data / "recordings", "cam1", T0 + 9.9, T0 + 10.1, tmp_path)
    assert len(cut.used) == 2
    assert [f.frames for f in cut.files] == [53]  # 8.00 (keyframe) .. 10.08, the last frame starting before 10.1
    with pytest.raises(ExportError):
        run_export(cfg, ExportRequest([], T0, T0 + 1), user="x")
