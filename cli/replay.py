"""``sharpeye replay``: the command's arguments and output; the replay itself is :mod:`pipeline.tools.replay`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cli.args import add_command, add_json_arg
from pipeline.config import ConfigError

SUMMARY = "run a camera's analytics over a video file, as fast as possible"
DESCRIPTION = ("Run the live pipeline of one camera (sampling, motion gating, detector, tracker, rules, alert "
               "lifecycle) over a video file as fast as the machine allows, and print the alert messages it "
               "would publish. Frame times are START + pts; START defaults to now.")


def cmd_replay(args: argparse.Namespace) -> int:
    """``sharpeye replay``: print the alerts of a video, then the stats."""
    from pipeline.tools.replay import ReplayError, ReplayStats, format_message, replay_input, run_replay

    try:
        cfg, cid, tz, start = replay_input(args.config, args.camera, args.start, args.video)
    except ConfigError as e:
        print("\n".join(e.problems), file=sys.stderr)
        return 2
    except ReplayError as e:
        print(f"sharpeye replay: {e}", file=sys.stderr)
        return 2
    stats = ReplayStats()
    try:
        for msg in run_replay(cfg, args.video, cid, exhaustive=args.exhaustive, start=start,
                              snapshots=args.snapshots, stats=stats):
            if args.json:
                print(json.dumps(msg, ensure_ascii=False), flush=True)
            else:
                print(format_message(msg, start, tz), flush=True)
    except ReplayError as e:  # found only once decoding starts: not a video, no video stream
        print(f"sharpeye replay: {e}", file=sys.stderr)
        return 2
    if args.stats:
        print(json.dumps(stats.to_dict()), flush=True)
    else:
        print(stats.summary(), file=sys.stderr)
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``replay`` on the ``sharpeye`` command's subparsers."""
    p = add_command(subparsers, "replay", cmd_replay, SUMMARY, DESCRIPTION)
    p.add_argument("video", help="video file (any format PyAV reads)")
    p.add_argument("--camera", help="camera whose zones, rules and motion settings apply "
                   "(default: the config's only camera)")
    p.add_argument("--exhaustive", action="store_true",
                   help="run the detector on every decoded frame, no sampling, no gating (the reference)")
    add_json_arg(p, "one bus message (JSON) per line")
    p.add_argument("--start", help="wall clock of the video's pts 0, ISO 8601 (no offset: the config's "
                   "time zone); makes results reproducible and sets the time schedules see (default: now)")
    p.add_argument("--snapshots", metavar="DIR", help="write alert snapshots under DIR (as under data_dir)")
    p.add_argument("--stats", action="store_true",
                   help='print the stats as a final JSON line {"type": "stats", ...} instead of to stderr')
    return p
