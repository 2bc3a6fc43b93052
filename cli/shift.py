"""``sharpeye bench shift``: the arguments of the duty-shift simulation; the shift is :mod:`pipeline.tools.shift`."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any


def cmd_shift(args: argparse.Namespace) -> int:
    from pipeline.tools.shift import SetupError, ShiftPlan, format_report, run_shift

    if args.minutes <= 0 or args.ack_after < 0 or args.step <= 0:
        print("sharpeye bench shift: --minutes and --step must be > 0, --ack-after >= 0", file=sys.stderr)
        return 2
    plan = ShiftPlan(minutes=args.minutes, busy=args.busy, night=args.night, operator=args.operator == "on",
                     ack_after_s=args.ack_after, step_s=args.step, window_s=args.incident_window,
                     clear_timeout_s=args.clear_timeout)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="sharpeye-shift-"))
    work.mkdir(parents=True, exist_ok=True)
    ok = False
    try:
        doc = run_shift(plan, work)
        ok = doc["raised_equals_stored"]
    except SetupError as e:
        print(f"sharpeye bench shift: {e}", file=sys.stderr)
        return 1
    finally:
        if args.workdir is None and not args.keep and ok:
            shutil.rmtree(work, ignore_errors=True)
        elif not ok or args.keep:
            print(f"sharpeye bench shift: work folder kept: {work}", file=sys.stderr)
    if args.json:
        print(json.dumps(doc, indent=1, ensure_ascii=False))
        print(format_report(doc), file=sys.stderr)
    else:
        print(format_report(doc))
    return 0 if ok else 1


def add_parser(bench: argparse.ArgumentParser) -> None:
    """Register ``shift`` as a verb of the ``sharpeye bench`` parser (``sharpeye bench`` alone measures capacity)."""
    verbs: Any = bench.add_subparsers(dest="bench_verb", metavar="{shift}", required=False)
    p = verbs.add_parser("shift", help="a simulated duty shift: demo cameras, the real pipeline and dashboard, a "
                         "scripted operator", description="Serve the demo cameras (optionally the busy street by "
                         "day and night) over RTSP, run `sharpeye run` on them in a work folder of its own, and "
                         "work the room as a scripted operator over the dashboard's HTTP API (acknowledge, "
                         "dispatch, the officer's 签收/到场/反馈 by the officer link, close with a classification). "
                         "Reports room items per camera-hour with and without grouping into incidents, alerts "
                         "raised on the bus against alerts stored, overdue minutes and the time to clear the "
                         "queue. Exit 1 when an alert raised was not stored. See docs/benchmarks.md.")
    p.add_argument("--minutes", type=float, default=10.0, help="minutes of footage, from when every camera streams "
                   "(default 10)")
    p.add_argument("--busy", action="store_true", help="add the busy street mosaic (scripts/make_busy.py) by day")
    p.add_argument("--night", action="store_true", help="add the busy street mosaic by night")
    p.add_argument("--operator", choices=("on", "off"), default="on",
                   help="off: nobody handles the room (the flood as it builds up); default on")
    p.add_argument("--ack-after", type=float, default=20.0,
                   help="the operator acknowledges an item this many seconds after it appears (default 20)")
    p.add_argument("--step", type=float, default=5.0,
                   help="seconds between the operator's (and officer's) next steps of an item (default 5)")
    p.add_argument("--incident-window", type=float, default=None, metavar="S",
                   help="alerts.incident_window_s for the run (0: every alert its own room item; default: the "
                   "demo config's, 120 s)")
    p.add_argument("--clear-timeout", type=float, default=300.0,
                   help="seconds the operator may take to clear the queue after the footage ends (default 300)")
    p.add_argument("--workdir", help="work folder (default: a temp folder, removed after a good run)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (config, data, run.log)")
    p.add_argument("--json", action="store_true", help="the JSON report on stdout (the text on stderr)")
    p.set_defaults(func=cmd_shift)
