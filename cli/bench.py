"""``sharpeye bench``: the command's arguments; the measuring is :mod:`pipeline.tools.bench.command`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from pipeline.analyse.models import DEFAULT_MODEL, fetch_model, load_manifest
from pipeline.tools.bench.command import MAX_CAMERAS, default_results_dir, format_report, run_bench
from pipeline.tools.bench.run import Plan


def cmd_bench(args: argparse.Namespace) -> int:
    if args.seconds < 2.5:
        print("--seconds must be at least 2.5 (the worker refreshes its counters every 2 s)", file=sys.stderr)
        return 2
    plan = Plan(cameras=args.cameras or (4 if args.capacity else 1), resolution=args.resolution,
                substream=args.substream, content=args.content, detect_fps=args.detect_fps,
                seconds=args.seconds, warmup=args.warmup, threads=args.threads, workers=args.workers,
                clip_seconds=args.clip_seconds, cache_dir=Path(args.cache_dir),
                motion=args.motion == "on", idle=None if args.idle == "default" else args.idle == "on",
                independent=not args.in_step, variants=args.variants, seed=args.seed, reader_nice=args.reader_nice,
                slot_depth=args.slot_depth)
    if args.sightings:
        return cmd_bench_sightings(args, plan)
    if args.capacity and args.counts:
        print("--capacity and --counts exclude each other", file=sys.stderr)
        return 2
    # the model first, from the shared store: without it, say so in one line before any simulator starts
    fetch_model(load_manifest(DEFAULT_MODEL))
    results_dir = Path(args.results_dir) if args.results_dir else None
    if results_dir is None and (args.capacity or args.counts):
        results_dir = default_results_dir(plan, plan.cache_dir)
    doc = run_bench(plan, args.capacity, args.baseline, confirm=not args.no_confirm, max_cameras=args.max_cameras,
                    counts=args.counts, results_dir=results_dir)
    if args.json:
        print(json.dumps(doc, indent=1, ensure_ascii=False))
    else:
        print(format_report(doc))
    return 0


def cmd_bench_sightings(args: argparse.Namespace, plan: Plan) -> int:
    """``--sightings``: worker CPU with sightings off, on, and on with plates (pipeline.tools.bench.sightings)."""
    from pipeline.tools.bench.command import host_info
    from pipeline.tools.bench.sightings import format_report as sightings_report
    from pipeline.tools.bench.sightings import run_series, settings_plan

    fetch_model(load_manifest(DEFAULT_MODEL))
    results_dir = Path(args.results_dir) if args.results_dir else None
    doc = run_series(settings_plan(plan), args.sightings_content, args.rounds, host_info(), results_dir)
    print(json.dumps(doc, indent=1, ensure_ascii=False) if args.json else sightings_report(doc))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``sharpeye bench`` on the CLI's subparsers."""
    p = sub.add_parser("bench", help="measure cameras per machine, CPU per camera and latency on simulated cameras",
                       description="Serve generated cameras over RTSP, run the pipeline (and optionally a naive "
                       "loop) on them, and report fps, CPU, memory, detector time and alert latency. "
                       "See docs/benchmarks.md.")
    p.add_argument("--cameras", type=int, default=None,
                   help="number of cameras (default 1; with --capacity: where the search starts, default 4)")
    p.add_argument("--resolution", choices=("720p", "1080p"), default="720p", help="main stream (default 720p)")
    p.add_argument("--substream", action="store_true",
                   help="detect on a 640x360 sub-stream; the main stream becomes record_source")
    p.add_argument("--content", choices=("busy", "idle", "mixed"), default="busy",
                   help="people walking (busy), a still room with sensor noise (idle), or half of each")
    p.add_argument("--detect-fps", type=float, default=5.0, help="detect fps per camera (default 5)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run (default 20)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds after all cameras stream, before measuring")
    p.add_argument("--capacity", action="store_true", help="raise the camera count until one falls behind")
    p.add_argument("--max-cameras", type=int, default=MAX_CAMERAS,
                   help=f"with --capacity: stop searching here (default {MAX_CAMERAS})")
    p.add_argument("--no-confirm", action="store_true",
                   help="with --capacity: count a step as failed at once, without running it a second time")
    p.add_argument("--baseline", choices=("naive",), default=None, help="also run the naive loop and compare")
    p.add_argument("--threads", type=int, default=1,
                   help="onnxruntime intra-op threads for worker and baseline (default 1: more cameras than 2 "
                   "on this 2-core machine)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes, cameras sharded over them as `sharpeye run` does (default: one per "
                   "CPU, since one worker's detect loop is serial; never more than cameras)")
    p.add_argument("--clip-seconds", type=float, default=None,
                   help="length of generated clips (default 45 s busy, 20 s idle; the simulator loops them)")
    p.add_argument("--motion", choices=("on", "off"), default="on",
                   help="motion gating (off: the detector on every sampled frame; default on)")
    p.add_argument("--idle", choices=("on", "off", "default"), default="default",
                   help="idle mode: keyframes only while still (default: on with --substream)")
    p.add_argument("--counts", type=int, nargs="+", default=None, metavar="N",
                   help="run each kind at each of these camera counts (CPU cost per camera and a capacity "
                   "estimate without a wall-clock search)")
    p.add_argument("--in-step", action="store_true",
                   help="every camera starts its clip at 0 together (default: own start offset, keyframe "
                   "phase and, for busy content, mirrored variants, as independent cameras are)")
    p.add_argument("--variants", type=int, default=2, help="busy content variants cycled over cameras "
                   "(1: the clip only, 2: and its mirror image; default 2)")
    p.add_argument("--reader-nice", type=int, default=0,
                   help="experiment: run the worker's reader (decode) threads at this nice value, the detect "
                   "thread at the default (see docs/benchmarks.md, stall hunt)")
    p.add_argument("--slot-depth", type=int, default=0,
                   help="experiment: sampled frames a camera may have waiting in the worker before the oldest "
                   "is skipped (default: the worker's own, 2)")
    p.add_argument("--seed", type=int, default=13, help="seed of the per-camera offsets (default 13)")
    p.add_argument("--results-dir", default=None,
                   help="write every run's JSON here as it is measured, and bench.json at the end (default with "
                   "--capacity or --counts: <cache-dir>/results/<UTC time>-<resolution>-<content>)")
    p.add_argument("--sightings", action="store_true",
                   help="measure what sightings cost: one camera per run with sightings off, on, and on with "
                   "plates (vehicle content), worker CPU per processed frame (see docs/benchmarks.md)")
    p.add_argument("--sightings-content", nargs="+", choices=("busy", "vehicles"), default=["busy", "vehicles"],
                   help="with --sightings: the contents measured (default both)")
    p.add_argument("--rounds", type=int, default=1,
                   help="with --sightings: each mode this many times, interleaved (default 1)")
    p.add_argument("--cache-dir", default=str(Plan().cache_dir), help="where generated clips are cached")
    p.add_argument("--json", action="store_true", help="print one JSON document (docs/schemas/bench.schema.json)")
    p.set_defaults(func=cmd_bench)
