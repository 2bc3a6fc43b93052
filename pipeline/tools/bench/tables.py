"""Markdown tables from kept bench results: ``python -m pipeline.tools.bench.tables DIR [DIR ...]``.

Each DIR is a results directory of ``sharpeye bench`` (it holds ``bench.json``); the tables are
the ones docs/benchmarks.md shows, so the figures there can be re-made from the JSON rather than
copied by hand: every run (verdict, CPU cost per camera-second, simulator, serial loop, skipped
frames, latency, the machine's other load), the capacity estimate per kind, the per-stage time
of each pipeline run and where the serial loops' time went.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

STAGES = ("decode", "gray", "gate", "tamper", "queue_wait", "convert", "detect", "track", "rules", "snapshot",
          "publish")


def label(doc: dict[str, Any]) -> str:
    s = doc["settings"]
    extra = f", reader nice {s['reader_nice']}" if s.get("reader_nice") else ""
    extra += f", slot depth {s['slot_depth']}" if s.get("slot_depth") else ""
    return f"{s['resolution']}{' + sub' if s['substream'] else ''} {s['content']}{extra}"


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def runs_table(docs: list[dict[str, Any]]) -> str:
    head = ("| config | run | cameras | held | skipped % | CPU cores | CPU s per camera-s | simulator s per camera-s "
            "| serial loop s per camera-s | detected + gated fps | detector ms p50 / p99 | latency ms p50 / p99 (n) "
            "| other cores | load 1 min |")
    rows = [head, "|" + "|".join(["---"] * 14) + "|"]
    for doc in docs:
        for r in doc["runs"]:
            t, c, lat = r["total"], r.get("cost") or {}, r["latency_ms"]
            rows.append(
                f"| {label(doc)} | {r['kind']} | {r['cameras']} | {'✓' if r['held'] else '✗'} | {t['skipped_pct']} "
                f"| {t['cpu_cores']:.2f} | {_fmt(c.get('cpu_s_per_camera_s'), 4)} "
                f"| {_fmt(c.get('simulator_cpu_s_per_camera_s'), 4)} "
                f"| {_fmt(c.get('serial_loop_cpu_s_per_camera_s'), 4)} "
                f"| {t['detected_fps']:.1f} + {t['gated_fps']:.1f} | {_fmt(r['detector_ms']['p50'], 1)} / "
                f"{_fmt(r['detector_ms']['p99'], 1)} | {lat['kind']} {_fmt(lat['p50'], 0)} / {_fmt(lat['p99'], 0)} "
                f"({lat['n']}) | {r['machine']['other_cores']:.2f} | {r['machine']['loadavg'][0]:.1f} |")
    return "\n".join(rows)


def estimate_table(docs: list[dict[str, Any]]) -> str:
    """Re-fitted from the runs with the current rule (:func:`estimate`), so documents made by older
    bench versions are fitted the same way; an estimate fitted on runs that fell behind is marked."""
    from pipeline.tools.bench.command import estimate

    rows = ["| config | run | measured (held) | fixed cores | CPU s per camera-s | simulator s per camera-s "
            "| serial loop s per camera-s | cores ÷ cost | with simulator | serial bound | estimate |",
            "|" + "|".join(["---"] * 11) + "|"]
    for doc in docs:
        for kind in ("pipeline", "naive"):
            e = estimate(doc["runs"], doc["settings"]["workers"]).get(kind)
            if not e:
                continue
            held = ", ".join(f"{n}{'✓' if h else '✗'}" for n, h in zip(e["cameras_measured"], e["held"]))
            if not e["fitted_runs_held"]:
                held += " (none held: cost understated)"
            rows.append(f"| {label(doc)} | {kind} | {held} | {e['fixed_cores']:.3f} | {e['cpu_s_per_camera_s']:.4f} "
                        f"| {e['simulator_cpu_s_per_camera_s']:.4f} | {_fmt(e['serial_loop_cpu_s_per_camera_s'], 4)} "
                        f"| {_fmt(e['capacity_cpu'])} | {_fmt(e['capacity_cpu_with_simulator'])} "
                        f"| {_fmt(e['capacity_serial'])} | **{_fmt(e['capacity'])}** |")
    return "\n".join(rows)


def stage_table(docs: list[dict[str, Any]], only_largest: bool = True) -> str:
    rows = ["| config | cameras | held | unit | " + " | ".join(STAGES) + " | total |",
            "|" + "|".join(["---"] * (len(STAGES) + 5)) + "|"]
    for doc in docs:
        runs = [r for r in doc["runs"] if r["kind"] == "pipeline" and r.get("stages")]
        if only_largest and runs:
            runs = [max(runs, key=lambda r: r["cameras"])]
        for r in runs:
            st = r["stages"]
            per_s = st["s_per_camera_s"]
            total = sum(v for k, v in per_s.items() if k in STAGES and k != "queue_wait")
            rows.append(f"| {label(doc)} | {r['cameras']} | {'✓' if r['held'] else '✗'} | ms per frame | "
                        + " | ".join(_fmt(st["ms_per_frame"].get(k), 2) for k in STAGES) + " | |")
            rows.append("| | | | ms per camera-s | " + " | ".join(_fmt(per_s.get(k, 0) * 1000, 1) for k in STAGES)
                        + f" | {total * 1000:.1f} (without queue_wait) |")
    return "\n".join(rows)


def loop_table(docs: list[dict[str, Any]]) -> str:
    rows = ["| config | run | cameras | held | waiting for work | on a core | queued for a core | blocked "
            "| all threads queued (cores) | machine busy (cores) | others (cores) |",
            "|" + "|".join(["---"] * 11) + "|"]
    for doc in docs:
        for r in doc["runs"]:
            lp = r.get("detect_loop")
            if not lp:
                continue
            rows.append(f"| {label(doc)} | {r['kind']} | {r['cameras']} | {'✓' if r['held'] else '✗'} "
                        f"| {lp['idle_share']:.0%} | {lp['on_cpu_share']:.0%} | {lp['queued_share']:.0%} "
                        f"| {lp['blocked_share']:.0%} | {lp['all_threads_queued_cores']:.2f} "
                        f"| {r['machine']['busy_cores']:.2f} | {r['machine']['other_cores']:.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.tools.bench.tables", description=__doc__.split("\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="results directories (each with bench.json)")
    ap.add_argument("--all-stages", action="store_true", help="a stage row for every pipeline run, not the largest")
    args = ap.parse_args(argv)
    docs = [json.loads((d / "bench.json").read_text()) for d in args.dirs]
    print("### Runs\n\n" + runs_table(docs))
    print("\n### Capacity estimated from CPU cost\n\n" + estimate_table(docs))
    print("\n### Per-stage time\n\n" + stage_table(docs, not args.all_stages))
    print("\n### Serial loops\n\n" + loop_table(docs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
