"""Export speed: ``python -m pipeline.export.bench [--minutes 10] [--cameras 1 4] [--repeat 3] [--json]``.

A benchmark, not a test: it makes a 1080p recording of N cameras (10 s segments written by the
real ``SegmentWriter``) and times :func:`~pipeline.export.job.run_export` over a range of
``--minutes``, the whole export included (stream copy, sha256 of every file, manifest, signature,
hold).  The figure that matters is real-time speed: range seconds / export seconds (goal: 200x).

The footage is generated once and cached (``$SHARPEYE_CACHE_DIR/bench``, default ``./.cache/bench``):
1920x1080, 25 fps, a keyframe every 2 s, no B-frames, about 4 Mbit/s (what a 1080p IP camera sends),
a moving picture with low-frequency sensor noise on every frame so x264 cannot make it smaller
than a camera would.  A 60 s clip is encoded (a minute or so) and its packets are repeated on a
continuing timeline to make the recording, so ten minutes of four cameras take seconds to lay down.
Stream copy costs the same whatever the pictures show: only bytes and packets count.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from pipeline.config import parse_config
from pipeline.export.job import ExportRequest, run_export
from pipeline.record.packets import PacketCapture, StoredPacket
from pipeline.record.segments import SegmentWriter

log = logging.getLogger("sharpeye.bench.export")

T0 = 1_700_000_000.0
W, H, FPS, GOP, BITRATE = 1920, 1080, 25, 50, 4_000_000
CLIP_S = 60


def cache_dir() -> Path:
    return Path(os.environ.get("SHARPEYE_CACHE_DIR") or Path.cwd() / ".cache") / "bench"


def make_clip(dest: Path, seconds: int = CLIP_S) -> Path:
    """The 1080p clip (cached): a drifting random texture plus fresh noise each frame, ABR 4 Mbit/s capped."""
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    rng = np.random.default_rng(7)
    import cv2

    base = cv2.resize(rng.integers(0, 255, (H // 8, W // 8, 3), dtype=np.uint8), (W, H),
                      interpolation=cv2.INTER_LINEAR)
    with av.open(str(tmp), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.bit_rate = BITRATE
        vs.codec_context.gop_size = GOP
        vs.codec_context.max_b_frames = 0
        vs.options = {"preset": "ultrafast", "maxrate": str(BITRATE), "bufsize": str(2 * BITRATE),
                      "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=0"}
        for i in range(seconds * FPS):
            noise = cv2.resize(rng.normal(0, 2, (H // 4, W // 4)).astype(np.float32), (W, H))
            img = np.clip(np.roll(base, 4 * i, axis=1) + noise[..., None], 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pict_type = av.video.frame.PictureType.NONE
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
    os.replace(tmp, dest)
    return dest


def record(clip: Path, recordings: Path, cameras: list[str], seconds: float) -> int:
    """``seconds`` of each camera as 10 s segments, from the clip's packets repeated; returns bytes written."""
    cap = PacketCapture()
    packets: list[StoredPacket] = []
    with av.open(str(clip)) as c:
        s = c.streams.video[0]
        tb = s.time_base or Fraction(1, 90000)
        for p in c.demux(s):
            if p.dts is not None:
                packets += cap.capture(p, s, T0 + float(p.dts * tb))
    step = packets[1].dts - packets[0].dts
    span = packets[-1].dts - packets[0].dts + step
    tbs = packets[0].template.time_base
    total = 0
    for cam in cameras:
        w = SegmentWriter(cam, recordings, segment_s=10)
        k = 0
        while True:
            off = k * span
            if float(off * tbs) >= seconds:
                break
            for sp in packets:
                w.write(StoredPacket(sp.data, sp.pts + off, sp.dts + off, sp.keyframe, sp.wall + float(off * tbs),
                                     sp.duration, sp.template))
            k += 1
        w.close()
        total += w.stats.bytes
    return total


def evict(folder: Path) -> None:
    """Drop ``folder``'s files from the page cache (written back first), so the next read comes from the disk.

    Only these files: ``POSIX_FADV_DONTNEED`` per file, not a global ``drop_caches`` that would slow
    everything else on the machine.
    """
    for p in folder.rglob("*.mp4"):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def run(minutes: float, camera_counts: list[int], repeat: int, work: Path, precise: bool,
        cold: bool = False) -> dict[str, Any]:
    clip = make_clip(cache_dir() / f"export-{W}x{H}-{FPS}fps-{BITRATE // 1000}k-{CLIP_S}s.mp4")
    seconds = minutes * 60
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    cams = [f"cam{i + 1}" for i in range(max(camera_counts))]
    t = time.monotonic()
    recorded = record(clip, data / "recordings", cams, seconds + 30)
    log.info("recorded %d cameras x at least %.0f s (%.0f MB) in %.1f s", len(cams), seconds + 30, recorded / 1e6,
             time.monotonic() - t)
    cfg = parse_config(json.dumps({
        "data_dir": str(data), "grid_cells": {"G1": {"name": "G1", "officer": {"name": "N", "phone": "000"}}},
        "cameras": {c: {"name": c, "source": "rtsp://127.0.0.1:1/x", "grid_cell": "G1"} for c in cams}}))
    start, end = T0 + 15.0, T0 + 15.0 + seconds  # mid-GOP start: the file starts at the keyframe before
    results = []
    for n in camera_counts:
        for mode in ["copy", "precise"] if precise else ["copy"]:
            times, size = [], 0
            for _ in range(repeat):
                out = work / "out"
                shutil.rmtree(out, ignore_errors=True)
                if cold:
                    evict(data / "recordings")
                t = time.monotonic()
                res = run_export(cfg, ExportRequest(cams[:n], start, end, out_dir=out, precise=mode == "precise"),
                                 user="bench")
                times.append(time.monotonic() - t)
                size = sum(f.path.stat().st_size for c in res.cuts for f in c.files)
                shutil.rmtree(out)
            med = statistics.median(times)
            results.append({"cameras": n, "mode": mode, "cache": "cold" if cold else "warm", "range_s": seconds,
                            "runs_s": [round(x, 3) for x in times],
                            "median_s": round(med, 3), "x_real_time": round(seconds / med, 1),
                            "camera_seconds_per_s": round(n * seconds / med, 1), "bytes": size,
                            "mb_per_s": round(size / med / 1e6, 1)})
            log.info("%d camera(s), %s: %.2f s median -> %.0fx real time", n, mode, med, seconds / med)
    return {"schema": "sharpeye.bench.export/1", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version(),
                        "pyav": av.__version__},
            "footage": {"width": W, "height": H, "fps": FPS, "keyframe_s": GOP / FPS, "bitrate_kbps": BITRATE // 1000,
                        "segment_s": 10},
            "results": results}


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def format_report(doc: dict[str, Any]) -> str:
    lines = [f"{'cameras':>7} {'mode':>8} {'cache':>6} {'range':>7} {'median':>8} {'x real time':>12} "
             f"{'cam-s/s':>8} {'MB/s':>7}"]
    for r in doc["results"]:
        lines.append(f"{r['cameras']:>7} {r['mode']:>8} {r['cache']:>6} {r['range_s']:>6.0f}s {r['median_s']:>7.2f}s "
                     f"{r['x_real_time']:>11.0f}x {r['camera_seconds_per_s']:>8.0f} {r['mb_per_s']:>7.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.export.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the exported range (default 10)")
    ap.add_argument("--cameras", type=int, nargs="+", default=[1, 4], help="camera counts to time (default 1 4)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per configuration; the median is reported")
    ap.add_argument("--precise", action="store_true", help="also time --precise")
    ap.add_argument("--cold", action="store_true", help="evict the recordings from the page cache before each run "
                    "(read from the disk, as an export of old footage does)")
    ap.add_argument("--work", help="folder for the recording and the exports (default: a temporary folder)")
    ap.add_argument("--json", action="store_true", help="print the JSON document")
    args = ap.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s: %(message)s")
    if args.work:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        doc = run(args.minutes, args.cameras, args.repeat, work, args.precise, args.cold)
    else:
        with tempfile.TemporaryDirectory(prefix="sharpeye-export-bench-") as tmp:
            doc = run(args.minutes, args.cameras, args.repeat, Path(tmp), args.precise, args.cold)
    print(json.dumps(doc, indent=2) if args.json else format_report(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
