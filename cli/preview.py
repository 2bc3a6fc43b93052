"""``sharpeye preview``: the command's arguments and output; the drawing is :mod:`pipeline.tools.preview`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cli.args import add_command, load_or_exit
from pipeline.config import redact_url

SUMMARY = "a JPEG of a camera with its zones, lines, masks and detections drawn"
DESCRIPTION = ("Open the camera's live source, decode about --seconds of video, run detector and tracker on the "
               "frames sampled at detect_fps, and draw zones, lines, masks and detections on the last one.")


def cmd_preview(args: argparse.Namespace) -> int:
    """``sharpeye preview``: write the annotated picture and print its path and a summary."""
    import cv2

    from pipeline.analyse.detect import Detector
    from pipeline.tools.preview import capture, summary

    cfg = load_or_exit(args.config)
    if args.camera not in cfg.cameras:
        print(f"sharpeye preview: camera {args.camera!r} is not in {args.config} "
              f"(cameras: {', '.join(cfg.cameras)})", file=sys.stderr)
        return 2
    import av.error

    try:
        res = capture(cfg, args.camera, args.seconds, Detector.from_config(cfg))
    except (av.error.FFmpegError, OSError, RuntimeError) as e:  # say what failed, never the password
        cam = cfg.cameras[args.camera]
        print(f"sharpeye preview: {args.camera}: {redact_url(str(e))} ({redact_url(cam.source)})",
              file=sys.stderr)
        return 1
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", res.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        print("sharpeye preview: JPEG encoding failed", file=sys.stderr)
        return 1
    out.write_bytes(buf.tobytes())
    print(summary(out, args.camera, cfg.cameras[args.camera], res))
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``preview`` on the ``sharpeye`` command's subparsers."""
    p = add_command(subparsers, "preview", cmd_preview, SUMMARY, DESCRIPTION)
    p.add_argument("camera", help="camera id")
    p.add_argument("--output", "-o", required=True, help="JPEG to write")
    p.add_argument("--seconds", type=float, default=2.0, help="seconds of video to decode (default 2)")
    return p
