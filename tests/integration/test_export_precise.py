"""``--precise`` and stream copy on recordings with B-frames, in H.264 and H.265 (pipeline/export/cut.py).

The clips are encoded here with real encoders (libx264 ``bf=2``; libx265 with its defaults: B-frames
and an open GOP, so keyframes are CRA pictures followed by leading pictures) and fed through a real
SegmentWriter on a simulated clock, as tests/test_export.py does: 10 s segments whose names are the
wall clock of their first packet in decode order.  A frame's time is when it is shown: the
recording's clock minus the stream's reorder delay, so clip frame ``i`` is shown at ``z + i / FPS``
where ``z`` is the first segment's start (``T0`` minus the encoder's two-frame delay).
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.config import Config
from pipeline.export.cut import cut_camera
from pipeline.export.job import ExportRequest, run_export
from pipeline.export.verify import verify
from pipeline.record.catalog import Recordings
from tests.integration.test_export import cfg, cfg_path, cli, decoded, manifest_of, record  # noqa: F401 (fixtures)
from tests.support.record import FPS, T0

FRAME = 1 / FPS
GOP = 50  # 2 s


def make_b_clip(path: Path, seconds: float, codec: str, pix_fmt: str = "yuv420p") -> Path:
    """A moving picture with B-frames: keyframe every 2 s; libx264 bf=2 (closed GOP), libx265 bframes=2 (open GOP)."""
    out = av.open(str(path), "w")
    s = out.add_stream(codec, rate=FPS)
    s.width, s.height, s.pix_fmt = 320, 240, pix_fmt
    if codec == "libx264":
        s.codec_context.options = {"preset": "veryfast", "bf": "2", "g": str(GOP), "keyint_min": str(GOP),
                                   "sc_threshold": "0"}
    else:
        s.codec_context.options = {"preset": "veryfast", "x265-params": f"bframes=2:keyint={GOP}:min-keyint={GOP}:"
                                                                         "scenecut=0:log-level=error"}
    rng = np.random.default_rng(2)
    base = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    for i in range(int(seconds * FPS)):
        frame = av.VideoFrame.from_ndarray(np.roll(base, (i, 3 * i), axis=(0, 1)), format="rgb24")
        frame.pts = i
        frame.pict_type = av.video.frame.PictureType.NONE
        out.mux(s.encode(frame))
    out.mux(s.encode())
    out.close()
    return path


@pytest.fixture(scope="module")
def h264_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_b_clip(tmp_path_factory.mktemp("clip") / "b264.mp4", 30, "libx264")


@pytest.fixture(scope="module")
def hevc_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_b_clip(tmp_path_factory.mktemp("clip") / "b265.mp4", 30, "libx265")


def zero(rec: Path) -> float:
    """When the clip's first frame is shown on the recording's clock: the first segment's start."""
    return Recordings(rec).segments("cam1", T0 - 5, T0 + 60)[0].start


def packets(path: Path) -> list[tuple[int, int, bool]]:
    """(pts, dts, keyframe) of every packet, in file (decode) order."""
    with av.open(str(path)) as c:
        return [(int(p.pts), int(p.dts), bool(p.is_keyframe)) for p in c.demux(c.streams.video[0]) if p.size]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255 ** 2 / max(1e-9, np.mean((a.astype(float) - b) ** 2))))


def check_file(path: Path, original: list[np.ndarray], first: int, count: int, reencoded: int) -> None:
    """Decodes cleanly from its first frame, ``count`` frames shown one frame apart from time 0, DTS strictly
    increasing and never above PTS; re-encoded frames look like the originals, copied ones are them bit for bit."""
    frames, times, errors = decoded(path)
    assert errors == 0, "decodes cleanly from the first frame, through the switch back to copied packets"
    assert len(frames) == count
    assert times[0] == 0.0 and all(b - a == pytest.approx(FRAME, abs=1e-3) for a, b in zip(times, times[1:]))
    pk = packets(path)
    assert pk[0][2], "the file starts with a keyframe"
    dts = [d for _, d, _ in pk]
    assert all(b > a for a, b in zip(dts, dts[1:])), "DTS strictly increasing"
    assert all(p >= d for p, d, _ in pk), "PTS never below DTS"
    assert len(pk) == count
    low = [psnr(a, b) for a, b in zip(frames[:reencoded], original[first:first + reencoded])]
    assert not low or min(low) > 32, low  # random noise, the hardest picture to encode (camera scenes: > 40 dB)
    same = [np.array_equal(a, b) for a, b in zip(frames[reencoded:], original[first + reencoded:first + count])]
    assert all(same), f"{same.count(False)} copied frames differ from the recording"


@pytest.mark.parametrize("end", [12.0, 12.3, 25.0])
def test_precise_with_b_frames_starts_within_one_frame_with_the_exact_frame_count(
        h264_b: Path, cfg: Config, end: float) -> None:  # noqa: F811
    z = zero(record(cfg.data_path(), "cam1", h264_b))
    t = z + 5.52  # 0.48 s before the keyframe shown at 6.0 s
    res = run_export(cfg, ExportRequest(["cam1"], t, z + end, precise=True), user="tester")
    (f,) = res.cuts[0].files
    assert abs(f.start - t) <= FRAME, f"starts {f.start - t:+.3f} s from T"
    count = round((end - 5.52) * FPS)  # every frame shown in [T, end), no more
    assert f.frames == count and f.reencoded_frames == 12
    assert f.end == pytest.approx(z + 5.52 + count * FRAME, abs=1e-3) and f.duration_s == pytest.approx(count * FRAME)
    original, _, _ = decoded(h264_b)
    check_file(f.path, original, round(5.52 * FPS), count, 12)
    assert len(res.cuts[0].used) == (1 if end <= 10 else 2 if end <= 20 else 3)
    assert abs(res.manifest["cameras"][0]["actual"]["start_offset_s"]) <= FRAME
    assert verify(res.folder).ok


@pytest.mark.parametrize("start,end", [(8.5, 14.0), (9.9, 10.5)])
def test_precise_first_gop_running_into_the_next_segment(h264_b: Path, cfg: Config, start: float,  # noqa: F811
                                                         end: float) -> None:
    """The GOP at T is the segment's last: its re-encoded frames end the segment and the next one goes on
    (decode and display timelines continuous across the boundary)."""
    z = zero(record(cfg.data_path(), "cam1", h264_b))
    res = run_export(cfg, ExportRequest(["cam1"], z + start, z + end, precise=True), user="tester")
    (f,) = res.cuts[0].files
    first = math.ceil((start - FRAME / 2) * FPS - 1e-9)  # the first frame shown within half a frame of T
    count = math.ceil(end * FPS - 1e-9) - first  # up to the last frame shown before the end
    reencoded = 10 * FPS - first  # up to the keyframe that starts the second segment
    assert abs(f.start - (z + start)) <= FRAME and f.frames == count and f.reencoded_frames == reencoded
    assert f.end == pytest.approx(z + (first + count) * FRAME, abs=1e-3), "after the last frame shown"
    assert f.duration_s == pytest.approx(count * FRAME) and len(res.cuts[0].used) == 2
    original, _, _ = decoded(h264_b)
    check_file(f.path, original, first, count, reencoded)


def test_precise_b_frames_from_the_command_line(
        h264_b: Path, cfg_path: Path, cfg: Config, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    z = zero(record(cfg.data_path(), "cam1", h264_b))
    code, out, err = cli(capsys, "-c", str(cfg_path), "--camera", "cam1", "--start", f"{z + 13.37:.3f}", "--end",
                         f"{z + 16.0:.3f}", "--precise")
    assert code == 0, err
    folder = Path(out.split(": ", 1)[1].splitlines()[0])
    (cam,) = manifest_of(folder)["cameras"]
    (f,) = cam["files"]
    # 13.37 lies between the frames at 13.36 and 13.40: the one within half a frame is first
    assert abs(cam["actual"]["start_offset_s"]) <= FRAME and f["frames"] == 66 and f["reencoded_frames"] == 16
    original, _, _ = decoded(h264_b)
    check_file(folder / "cam1.mp4", original, round(13.36 * FPS), 66, 16)


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_precise_keeps_a_full_range_camera_stream_full_range(cfg: Config, tmp_path: Path,  # noqa: F811
                                                             codec: str) -> None:
    """Many IP cameras send full-range (yuvj420p) video: the re-encoded GOP stays full range, so its pictures
    match the copied ones (a range conversion would shift every level)."""
    clip = make_b_clip(tmp_path / "full.mp4", 12, codec, "yuvj420p")
    z = zero(record(cfg.data_path(), "cam1", clip))
    res = run_export(cfg, ExportRequest(["cam1"], z + 5.52, z + 8.0, precise=True), user="tester")
    (f,) = res.cuts[0].files
    assert f.reencoded_frames == 12 and abs(f.start - (z + 5.52)) <= FRAME
    extra = f.frames - round((8.0 - 5.52) * FPS)  # H.265: 8.0 is a CRA, its leading pictures need it
    assert (extra == 0) if codec == "libx264" else (extra == 1 and "1 frame(s) shown" in res.cuts[0].notes[-1])
    original, _, _ = decoded(clip)
    check_file(f.path, original, round(5.52 * FPS), f.frames, 12)


def test_stream_copy_with_b_frames_is_frame_exact_across_segments_and_starts_at_the_keyframe_shown(
        h264_b: Path, cfg: Config, tmp_path: Path) -> None:  # noqa: F811
    rec = record(cfg.data_path(), "cam1", h264_b)
    z = zero(rec)
    cut = cut_camera(rec, "cam1", z + 5.52, z + 25.0, tmp_path)
    (f,) = cut.files
    assert f.start == pytest.approx(z + 4.0, abs=1e-3), "the keyframe shown at or before T"
    assert f.frames == 21 * FPS and f.end == pytest.approx(z + 25.0, abs=1e-3) and len(cut.used) == 3
    whole = cut_camera(rec, "cam1", z, z + 30.0, tmp_path / "whole")
    assert whole.files[0].frames == 30 * FPS, "whole segments: every packet, none twice"
    original, _, _ = decoded(h264_b)
    check_file(f.path, original, 4 * FPS, 21 * FPS, 0)


@pytest.mark.parametrize("start,end", [(5.52, 9.0), (13.0, 14.0), (12.5, 25.0), (5.52, 12.0), (10.5, 14.0),
                                       (9.9, 25.0)])
def test_precise_hevc_open_gop_with_b_frames(hevc_b: Path, cfg: Config, start: float, end: float) -> None:  # noqa: F811
    rec = record(cfg.data_path(), "cam1", hevc_b)
    z = zero(rec)
    assert av.codec.Codec("libx265", "w"), "this FFmpeg has libx265 (else --precise says so and copies from the key)"
    res = run_export(cfg, ExportRequest(["cam1"], z + start, z + end, precise=True), user="tester")
    (f,) = res.cuts[0].files
    assert f.codec == "hevc" and abs(f.start - (z + start)) <= FRAME
    first = round((f.start - z) * FPS)
    shown = round((end - (f.start - z)) * FPS)  # frames shown in [start, end)
    # every frame shown before the end is in; a reference frame shown after it may be too (said in the notes)
    extra = f.frames - shown
    assert 0 <= extra <= 2
    assert (extra > 0) == any("shown at or after the requested end" in n for n in res.cuts[0].notes)
    assert f.reencoded_frames == min(shown, round((np.ceil((f.start - z) / 2) * 2 - (f.start - z)) * FPS))
    original, _, _ = decoded(hevc_b)
    check_file(f.path, original, first, f.frames, f.reencoded_frames)
    segments = [s for s in sorted(rec.rglob("*.mp4"))]
    assert segments and verify(res.folder).ok
    assert any("libx265" in n for n in res.cuts[0].notes)


def test_hevc_stream_copy_from_an_open_gop_keyframe_leaves_its_leading_pictures_out(
        hevc_b: Path, cfg: Config, tmp_path: Path) -> None:  # noqa: F811
    rec = record(cfg.data_path(), "cam1", hevc_b)
    z = zero(rec)
    # the second segment starts with a CRA keyframe (12.0 s) followed by pictures shown before it
    cut = cut_camera(rec, "cam1", z + 12.0, z + 20.0, tmp_path)
    (f,) = cut.files
    assert f.start == pytest.approx(z + 12.0, abs=1e-3)
    # 20.0 is a CRA whose leading pictures (19.92, 19.96) are decoded after it: it is in, and said to be
    assert f.frames == 8 * FPS + 1 and f.end == pytest.approx(z + 20.04, abs=1e-3)
    assert cut.notes == ["1 frame(s) shown at or after the requested end are in the file: frames shown before the "
                         "end are predicted from them (stream copy cannot leave them out)"]
    original, _, _ = decoded(hevc_b)
    check_file(f.path, original, 12 * FPS, 8 * FPS + 1, 0)


def test_precise_refuses_a_codec_it_cannot_re_encode_with_a_clear_note(cfg: Config, tmp_path: Path) -> None:  # noqa: F811
    """MPEG-4 Part 2 (a camera's old stream): the file starts at the keyframe and the notes say why."""
    clip = tmp_path / "mpeg4.mp4"
    out = av.open(str(clip), "w")
    s = out.add_stream("mpeg4", rate=FPS)
    s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
    s.codec_context.gop_size = GOP
    s.codec_context.time_base = Fraction(1, FPS)
    for i in range(12 * FPS):
        frame = av.VideoFrame.from_ndarray(np.full((240, 320, 3), i % 255, np.uint8), format="rgb24")
        frame.pts = i
        out.mux(s.encode(frame))
    out.mux(s.encode())
    out.close()
    record(cfg.data_path(), "cam1", clip)
    res = run_export(cfg, ExportRequest(["cam1"], T0 + 5.52, T0 + 8.0, precise=True), user="tester")
    (f,) = res.cuts[0].files
    assert f.codec == "mpeg4" and f.start < T0 + 5.52 - FRAME and f.reencoded_frames == 0
    (note,) = [n for n in res.cuts[0].notes if n.startswith("--precise")]
    assert "mpeg4 is not re-encoded (H.264 and H.265 only)" in note
    assert f"starts at the keyframe {f.start - (T0 + 5.52):+.3f} s from the requested start" in note
