"""``sharpeye plates IMAGE_OR_VIDEO [--json]``: read licence plates from a file (for engineers tuning a checkpoint).

An image gives every plate found in it. A video is read every ``--every`` frames over the whole
picture (no vehicle detector, no tracker: the file is assumed to show a checkpoint or car park);
reads of one plate in different frames (the same text, or one character apart) are voted into one
result with the first and last time it was read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def cmd_plates(args: argparse.Namespace) -> int:
    from pipeline.analyse.detect import iter_media
    from pipeline.analyse.plates import PlateReader, PlateVote, one_apart

    try:
        reader = PlateReader(threads=args.threads, min_confidence=args.min_confidence)
    except FileNotFoundError as e:
        print(f"sharpeye plates: {e}", file=sys.stderr)
        return 2
    groups: list[dict[str, Any]] = []  # one per plate: its vote, first and last time, frames
    frames = 0
    try:
        for index, pts, img in iter_media(args.source, every=args.every):
            frames += 1
            for read in reader.read_all(img):
                g = next((g for g in groups if one_apart(g["vote"].result().text, read.text)), None)
                if g is None:
                    g = {"vote": PlateVote(), "first": pts, "last": pts, "frames": []}
                    groups.append(g)
                g["vote"].add(read)
                g["last"] = pts
                g["frames"].append(index)
            if args.max_frames and frames >= args.max_frames:
                break
    except (FileNotFoundError, ValueError) as e:
        print(f"sharpeye plates: {e}", file=sys.stderr)
        return 2
    results = []
    for g in groups:
        res = g["vote"].result()
        rec = {"file": str(Path(args.source)), **res.to_dict(), "first_s": round(float(g["first"]), 3),
               "last_s": round(float(g["last"]), 3), "frames": g["frames"]}
        results.append(rec)
    results.sort(key=lambda r: (-r["reads"], -r["confidence"]))
    for rec in results:
        if args.json:
            print(json.dumps(rec, ensure_ascii=False), flush=True)
        else:
            print(f"{rec['plate']:12s} {rec['colour']:7s} confidence {rec['confidence']:.3f}  reads {rec['reads']}"
                  f"  {rec['first_s']:.2f}-{rec['last_s']:.2f}s  box {rec['box']}", flush=True)
    if not results and not args.json:
        print(f"no plate read in {frames} frame(s) of {args.source}")
    return 0 if results else 1


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``plates`` on the ``sharpeye`` command's subparsers."""
    p = subparsers.add_parser(
        "plates", help="read licence plates from an image or a video file",
        description="Find and read mainland licence plates (PP-OCR models shipped in a wheel), check them "
        "against the plate grammar and vote across frames. Exit 0 if a plate was read, 1 if none.")
    p.add_argument("source", help="image (jpg, png, ...) or video file")
    p.add_argument("--json", action="store_true", help="one JSON object per plate")
    p.add_argument("--every", type=int, default=5, help="read every N-th frame of a video (default 5)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many read frames (0: all)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for the OCR models (default 2)")
    p.add_argument("--min-confidence", type=float, default=0.6,
                   help="drop reads whose mean character confidence is lower (default 0.6)")
    p.set_defaults(func=cmd_plates)
    return p
