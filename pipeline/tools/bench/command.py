"""``sharpeye bench``: how many cameras this machine carries, and what each one costs.

    sharpeye bench [--cameras N] [--resolution 720p|1080p] [--substream] [--content busy|idle|mixed]
                   [--detect-fps F] [--seconds T] [--capacity | --counts N [N ...]] [--baseline naive]
                   [--in-step] [--results-dir DIR] [--json]

A run serves N generated cameras over RTSP (the camera simulator, no re-encoding), runs the real
worker on them for T seconds after a warm-up, and reports per camera and in total: input, decoded
and detected fps, skipped frames, CPU seconds per camera-second and resident memory of the
pipeline's processes (worker + Redis; the simulator is reported but not counted), detector ms
p50/p99, alert latency p50/p99, and the floor (decode alone + detector alone for the same frames)
with the pipeline's cost as a ratio of it.  ``--baseline naive`` runs the same cameras through a
naive loop (see :mod:`pipeline.tools.bench.procs`); ``--capacity`` raises N until a camera falls behind;
``--counts 4 8`` runs each kind at each of those N (a series: the CPU cost per camera, hence an
estimate of capacity, without a wall-clock search, which a shared machine makes noisy).  Cameras are
independent (own start offset and keyframe phase, mirrored variants) unless ``--in-step``.  With
``--capacity``, ``--counts`` or ``--results-dir``, every run's JSON is written to a results
directory as soon as it is measured, and the whole document at the end.

Modules: :mod:`pipeline.tools.bench.content` makes the clips, :mod:`pipeline.tools.bench.run` runs and measures
one configuration, :mod:`pipeline.tools.bench.procs` holds the two measured child processes,
:mod:`pipeline.tools.bench.floor` measures the floor.  The JSON document is described in
docs/benchmarks.md and docs/schemas/bench.schema.json.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.tools.bench.floor import Floor
from pipeline.tools.bench.run import FALL_BEHIND_RATE, FALL_BEHIND_SKIPPED, Kind, Plan, Run, layout

log = logging.getLogger("sharpeye.bench")

SCHEMA = "sharpeye.bench/1"
MAX_CAMERAS = 64


class Results:
    """Writes every run's JSON to a directory as soon as it is measured (None: keeps nothing)."""

    def __init__(self, directory: Path | None):
        self.dir = directory
        self.n = 0
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def keep(self, run: dict[str, Any]) -> None:
        if self.dir is None:
            return
        self.n += 1
        name = f"{self.n:02d}-{run['kind']}-{run['cameras']}cam-{'held' if run['held'] else 'behind'}.json"
        (self.dir / name).write_text(json.dumps(run, indent=1, ensure_ascii=False))

    def finish(self, doc: dict[str, Any]) -> None:
        if self.dir is not None:
            (self.dir / "bench.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False))


def default_results_dir(plan: Plan, cache_dir: Path) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{stamp}-{plan.resolution}{'-sub' if plan.substream else ''}-{plan.content}"
    return cache_dir / "results" / name


def measure(plan: Plan, kind: Kind, floor: Floor, results: Results | None = None) -> dict[str, Any]:
    log.info("bench: %s, %d camera(s), %s%s, %s content, %g s", kind, plan.cameras, plan.resolution,
             " + sub-stream" if plan.substream else "", plan.content, plan.seconds)
    result = Run(plan, kind, floor).measure()
    if results is not None:
        results.keep(result)
    why = "; ".join(f"{p['id']}: {', '.join(p['reasons'])}" for p in result["per_camera"] if p["reasons"])
    log.info("bench: %s %d cameras: %s, %.3f cores/camera, detected %.1f fps%s", kind, plan.cameras,
             "held" if result["held"] else "FELL BEHIND", result["total"]["cpu_s_per_camera_s"] or 0,
             result["total"]["detected_fps"], f"; {why[:300]}" if why else "")
    return result


def capacity(plan: Plan, kind: Kind, floor: Floor, runs: list[dict[str, Any]], confirm: bool = True,
             max_cameras: int = MAX_CAMERAS, results: Results | None = None) -> dict[str, Any]:
    """Largest N at which every camera held, by projection from measured CPU then bisection.

    From a run that held, the next N is what the measured cores per camera project onto the
    machine's cores (at least N+1, at most 2N); after the first failure, bisect between the
    largest N that held and the smallest that failed.  Each step is a fresh, short run.  With
    ``confirm``, a step that falls behind is run once more and fails only if it falls behind
    again: on a shared machine one run can lose to somebody else's job.
    """
    lo, hi = 0, None
    n = max(1, plan.cameras)
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    while 1 <= n <= max_cameras:
        for attempt in (1, 2) if confirm else (1,):
            r = measure(plan.with_cameras(n), kind, floor, results)
            runs.append(r)
            steps.append({"cameras": n, "attempt": attempt, "held": r["held"], "cpu_cores": r["total"]["cpu_cores"],
                          "other_cores": r["machine"]["other_cores"],
                          "reasons": sorted({why for p in r["per_camera"] for why in p["reasons"]})[:5]})
            if r["held"]:
                break
        if r["held"]:
            lo, best = n, r
        else:
            hi = n
        if hi is not None and hi - lo <= 1:
            break
        if hi is None:
            used = r["total"]["cpu_cores"] + r["processes"].get("simulator", {}).get("cpu_cores", 0)
            projected = int(n * (os.cpu_count() or 1) / used) if used > 0 else 2 * n
            n = max(n + 1, min(2 * n, projected))
            if n > max_cameras and lo < max_cameras:
                n = max_cameras  # try the cap itself before giving up
        else:
            n = (lo + hi) // 2
    return {"max_cameras": lo, "smallest_failed": hi, "steps": steps, "run": best}


def run_bench(plan: Plan, do_capacity: bool, baseline: str | None, confirm: bool = True,
              max_cameras: int = MAX_CAMERAS, counts: list[int] | None = None,
              results_dir: Path | None = None) -> dict[str, Any]:
    floor = Floor()
    results = Results(results_dir)
    kinds: list[Kind] = ["pipeline"] + (["naive"] if baseline == "naive" else [])
    content = {c.detect_clip.path.name: c.detect_clip.describe() for c in layout(plan.with_cameras(2))}
    for c in layout(plan.with_cameras(2)):
        if c.record_clip:
            content[c.record_clip.path.name] = c.record_clip.describe()
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": host_info(),
        "settings": {"cameras": plan.cameras, "resolution": plan.resolution, "substream": plan.substream,
                     "content": plan.content, "detect_fps": plan.detect_fps, "seconds": plan.seconds,
                     "warmup_s": plan.warmup, "model": "yolox_nano", "model_threads": plan.threads,
                     "workers": plan.workers, "motion": plan.motion, "idle": plan.idle,
                     "capacity": do_capacity, "confirm_failures": confirm, "max_cameras": max_cameras,
                     "baseline": baseline, "counts": counts or None,
                     "independent": plan.independent, "variants": plan.variants, "seed": plan.seed,
                     "results_dir": str(results_dir) if results_dir else None, "reader_nice": plan.reader_nice,
                     "slot_depth": plan.slot_depth,
                     "criteria": {"detected_fps_min_share": FALL_BEHIND_RATE,
                                  "skipped_max_share": FALL_BEHIND_SKIPPED}},
        "content": list(content.values()),
        "runs": [],
        "pipeline": None, "naive": None, "capacity": None, "comparison": None, "estimate": None,
        "cameras": [{"id": c.camera_id, "content": c.kind, "file": c.detect_clip.path.name,
                     "start_s": c.start_s, "delay_s": c.delay_s}
                    for c in layout(plan.with_cameras(max([plan.cameras, *(counts or [])])))],
    }
    runs: list[dict[str, Any]] = doc["runs"]
    if do_capacity:
        doc["capacity"] = {}
        for kind in kinds:
            cap = capacity(plan, kind, floor, runs, confirm, max_cameras, results)
            doc[kind] = cap.pop("run")
            doc["capacity"][kind] = cap
    elif counts:
        for n in counts:  # pipeline and naive side by side at each N: the load drifts less between them
            for kind in kinds:
                r = measure(plan.with_cameras(n), kind, floor, results)
                runs.append(r)
                doc[kind] = r
    else:
        for kind in kinds:
            doc[kind] = measure(plan, kind, floor, results)
            runs.append(doc[kind])
    doc["comparison"] = compare(doc)
    doc["estimate"] = estimate(runs, plan.workers)
    doc["host"]["loadavg_end"] = list(os.getloadavg())
    results.finish(doc)
    return doc


def estimate(runs: list[dict[str, Any]], workers: int) -> dict[str, Any]:
    """Capacity per kind from CPU cost, fitted over every run of that kind: cores = fixed + per camera × N.

    Process CPU seconds barely depend on what else runs on the machine, so this holds where a
    wall-clock search is noise.  Bounds: ``cpu`` (cores ÷ cost, the fixed part taken off),
    ``cpu_with_simulator`` (when the simulator shares the cores), ``serial`` (each process's serial
    loop, on one core at most: the worker processes, or the naive loop's one).  With runs at a
    single N the fixed part cannot be separated and is counted per camera (pessimistic).  Only runs
    that held are fitted when there are any: a loop that fell behind did less work per camera (it
    skipped frames), so its cost per camera understates what keeping up costs.
    """
    out: dict[str, Any] = {}
    for kind in ("pipeline", "naive"):
        every = [r for r in runs if r["kind"] == kind and r["seconds"] > 0]
        if not every:
            continue
        rs = [r for r in every if r["held"]] or every
        cpus = rs[0]["cost"]["cpus"]
        ns = [r["cameras"] for r in rs]

        def fit(values: list[float], ns: list[int] = ns) -> tuple[float, float]:
            if len(set(ns)) < 2:
                per = float(np.mean([v / n for v, n in zip(values, ns)]))
                return 0.0, per
            slope, fixed = np.polyfit(np.asarray(ns, float), np.asarray(values, float), 1)
            return max(0.0, float(fixed)), float(slope)

        def bound(limit: float, fixed: float, per: float) -> int | None:
            return int((limit - fixed) / per) if per > 0 and limit > fixed else None

        cores = [r["total"]["cpu_cores"] for r in rs]
        sim = [r["processes"].get("simulator", {}).get("cpu_cores", 0.0) for r in rs]
        fixed, per = fit(cores)
        s_fixed, s_per = fit(sim)
        loops = [r for r in rs if r.get("detect_loop")]
        serial_per = (float(np.mean([r["detect_loop"]["on_cpu_s"] / r["detect_loop"]["wall_s"] / r["cameras"]
                                     for r in loops])) if loops else None)
        processes = workers if kind == "pipeline" else 1
        b_cpu = bound(cpus, fixed, per)
        b_serial = int(processes / serial_per) if serial_per else None
        est = {"cameras_measured": [r["cameras"] for r in every], "held": [r["held"] for r in every],
               "cameras_fitted": ns, "fitted_runs_held": all(r["held"] for r in rs),
               "fixed_cores": round(fixed, 3), "cpu_s_per_camera_s": round(per, 4),
               "simulator_fixed_cores": round(s_fixed, 3), "simulator_cpu_s_per_camera_s": round(s_per, 4),
               "serial_loop_cpu_s_per_camera_s": round(serial_per, 4) if serial_per else None,
               "processes": processes, "cpus": cpus,
               "capacity_cpu": b_cpu,
               "capacity_cpu_with_simulator": bound(cpus, fixed + s_fixed, per + s_per),
               "capacity_serial": b_serial}
        bounds = [b for b in (b_cpu, b_serial) if b is not None]
        est["capacity"] = min(bounds) if bounds else None
        out[kind] = est
    if "pipeline" in out and "naive" in out and out["pipeline"]["capacity"] and out["naive"]["capacity"]:
        out["ratio"] = round(out["pipeline"]["capacity"] / out["naive"]["capacity"], 2)
    return out


def compare(doc: dict[str, Any]) -> dict[str, Any] | None:
    """Naive ÷ pipeline: above 1 means the pipeline is cheaper (or carries more cameras)."""
    p, n = doc.get("pipeline"), doc.get("naive")
    if not p or not n:
        return None

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a is not None and b else None

    cap = doc.get("capacity") or {}
    return {
        "cpu_per_camera": ratio(n["total"]["cpu_s_per_camera_s"], p["total"]["cpu_s_per_camera_s"]),
        "rss": ratio(n["total"]["rss_mb"], p["total"]["rss_mb"]),
        "floor_ratio": {"pipeline": p["floor"]["ratio"], "naive": n["floor"]["ratio"]},
        "capacity": ratio(cap.get("pipeline", {}).get("max_cameras"), cap.get("naive", {}).get("max_cameras"))
        if cap else None,
    }


def host_info() -> dict[str, Any]:
    import av
    import cv2
    import onnxruntime

    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    return {"cpus": os.cpu_count(), "memory_gb": round(mem / 2**30, 1), "machine": platform.machine(),
            "python": platform.python_version(), "av": av.__version__, "onnxruntime": onnxruntime.__version__,
            "opencv": cv2.__version__, "code": code_version(), "loadavg_start": list(os.getloadavg())}


def code_version() -> dict[str, Any]:
    """Which pipeline was measured: the commit, and a digest of the package's sources (edits included).

    The bench's own modules are left out of the digest: two runs with the same digest measured the
    same pipeline, whatever was changed in the bench.
    """
    root = Path(__file__).resolve().parents[2]  # the pipeline package
    bench = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*.py") if bench not in p.parents):
        digest.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"commit": commit, "sources_sha256": digest.hexdigest()[:16]}


# ------------------------------------------------------------------------------ text report


def format_run(r: dict[str, Any]) -> list[str]:
    t, f = r["total"], r["floor"]
    lines = [
        f"{r['kind']}: {r['cameras']} camera(s) over {r['seconds']:.0f} s: {'held' if r['held'] else 'FELL BEHIND'}",
        f"  fps in/decoded/sampled/detected/gated: {t['input_fps']:.1f} / {t['decoded_fps']:.1f} / "
        f"{t['sampled_fps']:.1f} / {t['detected_fps']:.1f} / {t['gated_fps']:.1f}; "
        f"skipped {t['skipped']} ({t['skipped_pct']} %)",
        f"  CPU {t['cpu_cores']:.2f} cores = {t['cpu_s_per_camera_s']:.3f} s per camera-second; "
        f"RSS {t['rss_mb']} MB (max {t['rss_mb_max']})",
        f"  detector ms p50/p99 {r['detector_ms']['p50']} / {r['detector_ms']['p99']}; "
        f"{r['latency_ms']['kind']} latency ms p50/p99 {r['latency_ms']['p50']} / {r['latency_ms']['p99']} "
        f"(n={r['latency_ms']['n']}); detect loop gaps ms p99/max {r['detect_gap_ms']['p99']} / "
        f"{r['detect_gap_ms']['max']}",
        f"  floor {f['cores']:.3f} cores (decode {f['decode_cores']:.3f} + inference {f['inference_cores']:.3f}); "
        f"cost / floor = {f['ratio']}",
        f"  machine: {r['machine']['busy_cores']} cores busy, {r['machine']['other_cores']} by other processes; "
        f"simulator {r['processes'].get('simulator', {}).get('cpu_cores')} cores (not counted); "
        f"load {r['machine']['loadavg'][0]}",
    ]
    c = r.get("cost") or {}
    if c:
        lines.append(f"  cost per camera-second: {c['cpu_s_per_camera_s']} CPU s (simulator "
                     f"{c['simulator_cpu_s_per_camera_s']}, serial loop {c['serial_loop_cpu_s_per_camera_s']}); "
                     f"capacity estimate {c['capacity_estimate']} (cpu {c['capacity_cpu']}, "
                     f"with simulator {c['capacity_cpu_with_simulator']}, serial {c['capacity_serial']})")
    loop = r.get("detect_loop")
    if loop:
        lines.append(f"  serial loop(s): waiting for work {loop['idle_share']:.0%}, "
                     f"on a core {loop['on_cpu_share']:.0%}, queued for a core {loop['queued_share']:.0%}, "
                     f"blocked {loop['blocked_share']:.0%}; "
                     f"all threads queued {loop['all_threads_queued_cores']} cores")
    if r.get("stages"):
        per = r["stages"]["s_per_camera_s"]
        lines.append("  stage s per camera-s: " + ", ".join(f"{k} {v:.4f}" for k, v in
                                                           sorted(per.items(), key=lambda kv: -kv[1]) if v))
    if r.get("recording") is not None:
        lines.append(f"  recording: {r['recording']['segments']} file(s), {r['recording']['bytes']} bytes")
    for p in r["per_camera"]:
        lines.append(f"    {p['id']} {p['content']:4s} {p['width']}x{p['height']}: in {p['input_fps']:5.1f} "
                     f"dec {p['decoded_fps']:5.1f} det {p['detected_fps']:4.1f} gated {p['gated_fps']:4.1f} fps, "
                     f"skipped {p['skipped']}, latency p50 {p['latency_ms']['p50']} ms"
                     + ("" if p["held"] else "  ← " + "; ".join(p["reasons"])))
    return lines


def format_report(doc: dict[str, Any]) -> str:
    s = doc["settings"]
    out = [f"sharpeye bench: {s['resolution']}{' + 640x360 sub-stream' if s['substream'] else ''}, "
           f"{s['content']} content, detect {s['detect_fps']:g} fps, model threads {s['model_threads']}, "
           f"{doc['host']['cpus']} CPUs (load {doc['host']['loadavg_start'][0]:.2f} at start)"]
    if doc["capacity"]:
        for kind, cap in doc["capacity"].items():
            steps = ", ".join(f"{st['cameras']}{'✓' if st['held'] else '✗'}" for st in cap["steps"])
            out.append(f"capacity {kind}: {cap['max_cameras']} cameras (steps {steps})")
    for kind in ("pipeline", "naive"):
        if doc.get(kind):
            out += format_run(doc[kind])
    for kind, e in (doc.get("estimate") or {}).items():
        if kind == "ratio":
            out.append(f"estimated capacity pipeline ÷ naive: {e}×")
            continue
        out.append(f"estimate {kind}: {e['capacity']} cameras on {e['cpus']} cores (fixed {e['fixed_cores']} + "
                   f"{e['cpu_s_per_camera_s']} per camera; cpu bound {e['capacity_cpu']}, with simulator "
                   f"{e['capacity_cpu_with_simulator']}, serial bound {e['capacity_serial']}); measured at "
                   + ", ".join(f"{n}{'✓' if h else '✗'}" for n, h in zip(e["cameras_measured"], e["held"])))
    if doc.get("settings", {}).get("results_dir"):
        out.append(f"every run's JSON: {doc['settings']['results_dir']}")
    if doc["comparison"]:
        c = doc["comparison"]
        out.append(f"naive ÷ pipeline: CPU per camera {c['cpu_per_camera']}×, memory {c['rss']}×"
                   + (f", capacity pipeline ÷ naive {c['capacity']}×" if c["capacity"] else ""))
    return "\n".join(out)
