"""scripts/camsim.py (the RTSP camera simulator) and its helper pipeline/tools/simulator.py, against a real server."""
from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import av
import pytest

from pipeline.tools.simulator import CAMSIM, SYSTEM_PYTHON, RtspSimulator
from tests.support.assets import require_camsim
from tests.support.media import make_clip

# Short probing: the default (about 1 s of analysis, 2.8 s on the person clip) is too slow for tests.
OPTS = {"rtsp_transport": "tcp", "timeout": "5000000", "analyzeduration": "100000", "probesize": "32768"}


@pytest.fixture(autouse=True)
def _needs_camsim() -> None:
    require_camsim()


def read_packets(url: str, seconds: float, options: dict = OPTS):
    """Read the video for ``seconds``: (stream types and codecs, (width, height), timestamped packets
    as (pts s, keyframe, size), frames decoded)."""
    with av.open(url, options=options) as c:
        streams = [(s.type, s.codec_context.name) for s in c.streams]
        video = c.streams.video[0]
        tb = video.time_base
        assert tb is not None
        packets, frames = [], 0
        deadline = time.monotonic() + seconds
        for pkt in c.demux(video):
            if pkt.pts is not None:  # the first live packet may carry none
                packets.append((float(pkt.pts * tb), pkt.is_keyframe, pkt.size))
            frames += len(pkt.decode())
            if time.monotonic() > deadline:
                break
        return streams, (video.codec_context.width, video.codec_context.height), packets, frames


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "short.mp4", 2, fps=10, gop=10, tune=None)


@pytest.fixture(scope="module")
def short_clip_bframes_audio(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "short_b_aac.mp4", 2, fps=10, gop=10, tune=None,
                     bframes=2, audio=True)


def test_serves_person_clip_h264_768x432(person_clip: Path) -> None:
    with RtspSimulator({"cams/person": person_clip}) as sim:
        assert sim.ready_s is not None and sim.ready_s < 5
        t0 = time.monotonic()
        streams, size, packets, frames = read_packets(sim.url("cams/person"), 1.5)
        elapsed = time.monotonic() - t0
    assert streams == [("video", "h264")]
    assert size == (768, 432)
    assert len(packets) >= 5 and frames >= 5
    assert any(key for _, key, _ in packets)
    assert elapsed < 5


def test_loops_with_growing_timestamps(short_clip, short_clip_bframes_audio):
    results = {}

    def read(mount):
        results[mount] = read_packets(sim.url(mount), 5.0)

    with RtspSimulator({"short": short_clip, "short-b-aac": short_clip_bframes_audio}) as sim:
        threads = [threading.Thread(target=read, args=(m,)) for m in sim.mounts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
    for mount, (streams, size, packets, frames) in results.items():
        assert streams == [("video", "h264")], mount
        assert size == (320, 240)
        pts = [p for p, _, _ in packets]
        assert max(pts) > 3.5, f"{mount}: timestamps stopped at {max(pts):.2f} s (clip is 2 s)"
        # about 10 fps in real time, across at least two loops, keyframes every second
        assert len(packets) >= 35 and frames >= 35, mount
        assert sum(key for _, key, _ in packets) >= 3, mount
        # one frame every 0.1 s, no repeat and no hole at the loop points (the last few
        # packets are left out: with B-frames, frames reordered past the end are not read yet)
        body = sorted(p for p in pts if p < max(pts) - 0.35)
        steps = {round(b - a, 3) for a, b in zip(body, body[1:])}
        assert steps == {0.1}, f"{mount}: frame spacing {sorted(steps)}"
    pts = [p for p, _, _ in results["short"][2]]
    assert all(b > a for a, b in zip(pts, pts[1:])), "timestamps went backwards"


def test_car_clip_with_audio_serves_video_only(car_clip: Path) -> None:
    # the car clip has H.264 video and AAC audio
    with RtspSimulator({"car": car_clip}) as sim:
        streams, size, packets, _ = read_packets(sim.url("car"), 1.0)
    assert streams == [("video", "h264")]
    assert size == (768, 432)
    assert packets


def test_missing_file_exits_2_with_message(tmp_path):
    missing = tmp_path / "nope.mp4"
    r = subprocess.run([SYSTEM_PYTHON, str(CAMSIM), "--port", "0", f"cam={missing}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "not found" in r.stderr and str(missing) in r.stderr
    assert "READY" not in r.stdout
    with pytest.raises(RuntimeError, match="status 2.*not found"):
        RtspSimulator({"cam": missing}).start()


def test_helper_restart_same_port_and_pause(short_clip):
    with RtspSimulator({"a/b": short_clip}) as sim:
        port = sim.port
        url = sim.url("a/b")
        assert url == f"rtsp://127.0.0.1:{port}/a/b"
        sim.stop()
        with pytest.raises(av.error.FFmpegError):  # connection refused
            av.open(url, options=OPTS)
        sim.start()
        assert sim.port == port
        assert read_packets(url, 0.3)[2]
        # paused: the reader's socket timeout fires instead of blocking forever
        with av.open(url, options={**OPTS, "timeout": "1000000"}) as c:
            next(c.demux(c.streams.video[0]))
            sim.pause()
            t0 = time.monotonic()
            with pytest.raises(av.error.FFmpegError):
                for _ in c.demux(c.streams.video[0]):
                    assert time.monotonic() - t0 < 5, "stalled stream never timed out"
            assert time.monotonic() - t0 < 5
            sim.resume()
        assert read_packets(url, 0.3)[2]
