"""``sharpeye bench --sightings``: what sightings and plate reading add to the worker's CPU.

    sharpeye bench --sightings [--sightings-content busy vehicles] [--rounds R] [--seconds T] [--warmup W]
                   [--resolution 720p|1080p] [--detect-fps F] [--json]

Each run is one simulated camera on the real worker (RTSP simulator, Redis, the worker process, as
every bench run; :class:`pipeline.tools.bench.run.Run`), its config differing only in the camera's
``sightings`` block:

* ``off``: ``sightings.enabled: false`` (the stage is not built);
* ``on``: the defaults (sightings of people and vehicles, no plates);
* ``plates``: the defaults and ``plates: true`` on that camera (vehicle content only: busy content has
  no vehicle, so it would measure ``on`` again).

Contents: ``busy`` is the bench's busy clip (people walking, see :mod:`pipeline.tools.bench.content`),
the content the cost limit is set on; ``vehicles`` is made here from the shared plate photos: the
truck photo (which YOLOX-Nano calls a bus) with the blue plate of the car photo over its own, driving
down a road towards the camera for 5 s of every 8 s, so every loop of the clip is one vehicle track
that ends, is written and (``plates``) read.

The figure is the worker's process CPU time (all threads: decode, detect, the sightings stage on the
detect thread, and the sightings loop that reads plates and writes crops) per processed frame
(detected + gated by the motion gate) over the measured window: process CPU time barely moves with
what else the machine runs, where wall time does.  Wall-clock figures (the sightings stage's time on
the detect thread, the window) are reported under ``wall`` and named so.  Modes are interleaved,
round after round (off, on, plates, off, ...), so a drift in the machine's load falls on all of them;
the summary takes each mode's median over rounds and its increase over ``off`` of the same content.

The sightings' own CPU is counted inside the worker (:class:`Tally`): the child process wraps the
stage's ``update``/``flush``, the sightings loop's ``turn`` and the plate reader's ``read`` (the same
code, the same results) and adds up their thread CPU seconds and the reads into a small file beside the
bench's probe.  That share of the worker's CPU has no run-to-run noise, where the difference between an
``on`` and an ``off`` run has several percent on a loaded machine; both are reported.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import redis
import yaml

from pipeline.runtime.procs import start_child
from pipeline.tools.bench.content import (
    BITRATES,
    RESOLUTIONS,
    Clip,
    ClipSpec,
    encode,
    probe,
    shared_asset,
)
from pipeline.tools.bench.floor import Floor
from pipeline.tools.bench.run import PREFIX, CameraSetup, Plan, Run, Snapshot

log = logging.getLogger("sharpeye.bench")

SCHEMA = "sharpeye.bench.sightings/1"
Mode = Literal["off", "on", "plates"]
Content = Literal["busy", "vehicles"]
MODES: dict[str, tuple[Mode, ...]] = {"busy": ("off", "on"), "vehicles": ("off", "on", "plates")}
LIMIT_PCT = 10.0  # sightings may add at most this much worker CPU on the busy content
VEHICLE_VERSION = 1  # bump when the vehicle clip changes: old cache entries are then ignored
TRUCK = "truck-yellow-plate.jpg"
CAR = "car-blue-plate.jpg"
TRUCK_BOX = (60, 40, 280, 290)  # x1, y1, x2, y2 of the truck (with some road) in the truck photo
TRUCK_PLATE_AT = (105, 183)  # centre of the truck's own plate in that crop: the blue plate goes over it
PLATE_BOX = (220, 158, 570, 332)  # the blue plate (with its frame) in the car photo
PLATE_SIZE = (64, 32)  # the pasted plate in the crop's pixels (the truck is then scaled ~2x)
MOVE_S = 5.0  # the vehicle drives for this long, then the road is empty until the clip loops
VEHICLE_SECONDS = 8.0


# ------------------------------------------------------------------------------ vehicle content


def plate_photo(name: str) -> Path:
    """A shared plate photo: the project's cache first, then the asset mirror."""
    return shared_asset("plates", name, "set SHARPEYE_ASSET_MIRROR to the shared assets")


def vehicle_picture(truck: np.ndarray, car: np.ndarray) -> np.ndarray:
    """The truck from the truck photo wearing the car photo's blue plate (a plate the reader knows)."""
    x1, y1, x2, y2 = TRUCK_BOX
    out = truck[y1:y2, x1:x2].copy()
    px1, py1, px2, py2 = PLATE_BOX
    pw, ph = PLATE_SIZE
    plate = cv2.resize(car[py1:py2, px1:px2], (pw, ph), interpolation=cv2.INTER_AREA)
    cx, cy = TRUCK_PLATE_AT
    out[cy - ph // 2:cy - ph // 2 + ph, cx - pw // 2:cx - pw // 2 + pw] = plate
    return out


def road(width: int, height: int) -> np.ndarray:
    """An empty grey road seen from above, with two dashed lane lines."""
    img = np.full((height, width, 3), (88, 90, 92), np.uint8)
    for x in (width // 3, 2 * width // 3):
        for y in range(0, height, height // 6):
            cv2.rectangle(img, (x - 3, y), (x + 3, y + height // 12), (200, 200, 200), -1)
    return img


def vehicle_frames(spec: ClipSpec, vehicle: np.ndarray) -> Iterator[np.ndarray]:
    """The vehicle coming down the road towards the camera (growing 1.9x → 2.5x at 720p) for
    :data:`MOVE_S`, entering cut by the top edge and ending fully in view; then the empty road.
    Sensor noise (σ≈2, drawn at a quarter of the size) on every frame, as the idle content has."""
    base = road(spec.width, spec.height)
    k = spec.height / 720
    rng = np.random.default_rng(7)
    small = (max(1, spec.width // 4), max(1, spec.height // 4))
    for i in range(int(round(spec.seconds * spec.fps))):
        t = i / spec.fps
        img = base.copy()
        if t < MOVE_S:
            f = t / MOVE_S
            scale = k * (1.9 + 0.6 * f)
            v = cv2.resize(vehicle, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
            h, w = v.shape[:2]
            top = int(-0.5 * h + f * (spec.height - 10 - 0.5 * h))
            left = int(spec.width * (0.42 + 0.06 * f) - w / 2)
            y1, y2 = max(0, top), min(spec.height, top + h)
            x1, x2 = max(0, left), min(spec.width, left + w)
            if y2 > y1 and x2 > x1:
                img[y1:y2, x1:x2] = v[y1 - top:y2 - top, x1 - left:x2 - left]
        noise = rng.normal(0.0, spec.noise_sigma, (small[1], small[0])).astype(np.float32)
        grain = cv2.resize(noise, (spec.width, spec.height), interpolation=cv2.INTER_LINEAR)
        yield np.clip(img.astype(np.float32) + grain[..., None], 0, 255).astype(np.uint8)


def vehicle_spec(resolution: str, seconds: float = VEHICLE_SECONDS) -> ClipSpec:
    w, h = RESOLUTIONS[resolution]
    return ClipSpec(kind="vehicles", width=w, height=h, seconds=seconds, bitrate=BITRATES[(w, h)])  # type: ignore[arg-type]


def ensure_vehicle_clip(spec: ClipSpec, cache_dir: Path) -> Clip:
    """The vehicle clip for ``spec``: from the cache, or encoded now (once)."""
    from pipeline.tools.bench.content import write_atomically

    truck_p, car_p = plate_photo(TRUCK), plate_photo(CAR)
    raw = json.dumps({**asdict(spec), "v": VEHICLE_VERSION, "move_s": MOVE_S,
                      "src": [truck_p.stat().st_size, car_p.stat().st_size]}, sort_keys=True)
    key = hashlib.sha256(raw.encode()).hexdigest()[:10]
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"vehicles-{spec.width}x{spec.height}-{spec.fps}fps-{spec.seconds:g}s-{key}.mp4"
    if not path.is_file():
        truck, car = cv2.imread(str(truck_p), cv2.IMREAD_COLOR), cv2.imread(str(car_p), cv2.IMREAD_COLOR)
        if truck is None or car is None:
            raise ValueError(f"{truck_p if truck is None else car_p}: not a picture OpenCV can read")
        log.info("bench: encoding %s (once; cached in %s)", path.name, cache_dir)
        write_atomically(path, lambda tmp: encode(spec, vehicle_frames(spec, vehicle_picture(truck, car)), tmp))
    return probe(path, spec)


# ------------------------------------------------------------------------------ one measured run


class SightingsRun(Run):
    """One camera of ``content`` on the real worker with its sightings in ``mode``; ``measure()`` adds the
    frames, worker CPU, sightings sent and plate reads of the window to :class:`Run`'s result."""

    def __init__(self, plan: Plan, floor: Floor, content: Content, mode: Mode, clip: Clip):
        super().__init__(plan.with_cameras(1), "pipeline", floor)
        self.content = content
        self.mode = mode
        self.cams = [CameraSetup("cam01", content, clip, None)]  # type: ignore[arg-type]
        self.counter_files: list[Path] = []
        self.marks: list[dict[str, float]] = []  # the sightings' counters at the window's start and end
        self.window: tuple[Snapshot, Snapshot] | None = None
        self.sent: list[dict[str, Any]] = []  # sightings put on the bus in the window
        self.total_sent = 0  # and in the whole run

    def _start_children(self, cfg: Path, url: str | None, tmp: Path) -> None:
        doc = yaml.safe_load(cfg.read_text())
        for cam in doc["cameras"].values():
            cam["sightings"] = {"enabled": self.mode != "off", "plates": self.mode == "plates"}
        cfg.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        # the worker children as Run starts them, through this module so that plate reads are counted
        n = self.plan.worker_processes
        for i in range(n):
            counters = tmp / f"sightings{i}.json"
            probe_path = tmp / f"probe{i}.json"
            cmd = [sys.executable, "-m", "pipeline.tools.bench.sightings", "--counters-file", str(counters), "--",
                   "worker", "--probe", str(probe_path), "--", "--config", str(cfg), "--redis", str(url),
                   "--shard", f"{i}/{n}", "--log-level", "WARNING"]
            log_path = tmp / f"child{i}.log"
            with open(log_path, "wb") as logf:
                child = start_child(cmd, stdout=logf, stderr=subprocess.STDOUT)
            self.children.append(child)
            self.logs.append(log_path)
            self.probes.append(probe_path)
            self.counter_files.append(counters)
            self.procs.setdefault("worker", []).append(child.pid)

    def counters(self) -> dict[str, float]:
        """The sightings' counters of every worker child, summed (see :class:`Tally`)."""
        tot = {"calls": 0.0, "valid": 0.0, "cpu_s": 0.0, "stage_cpu_s": 0.0, "stage_calls": 0.0, "loop_cpu_s": 0.0}
        for p in self.counter_files:
            try:
                doc = json.loads(p.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                continue
            for k in tot:
                tot[k] += float(doc.get(k, 0))
        return tot

    def _snapshot(self, r: redis.Redis | None) -> Snapshot:
        snap = super()._snapshot(r)
        self.marks.append(self.counters())
        return snap

    def _events(self, r: redis.Redis, t0: float, t1: float) -> list[tuple[float, dict[str, Any]]]:  # type: ignore[override]
        for _sid, fields in r.xrange(f"{PREFIX}:sightings", min=str(int(t0 * 1000)), max=str(int(t1 * 1000))):
            raw = fields.get(b"json")
            if raw is not None:
                self.sent.append(json.loads(raw))
        self.total_sent = int(r.xlen(f"{PREFIX}:sightings"))
        return Run._events(r, t0, t1)

    def _result(self, start: Snapshot, end: Snapshot, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.window = (start, end)
        return super()._result(start, end, *args, **kwargs)

    def measure(self) -> dict[str, Any]:
        base = super().measure()
        assert self.window is not None
        start, end = self.window
        cpu_s = end.cpu["worker"] - start.cpu["worker"]
        frames = {k: 0 for k in ("decoded", "sampled", "detected", "gated", "skipped")}
        for cid in (c.camera_id for c in self.cams):
            a, b = start.counters.get(cid, {}), end.counters.get(cid, {})
            for k in frames:
                frames[k] += int(b.get(k) or 0) - int(a.get(k) or 0)
        processed = frames["detected"] + frames["gated"]
        first, last = self.marks[0], self.marks[-1]  # the window's start and end snapshots
        stage = base["stages"] or {}
        stage_s = (stage.get("seconds") or {}).get("sightings")
        d = {k: last[k] - first[k] for k in last}
        own = d["stage_cpu_s"] + d["loop_cpu_s"]  # the sightings' own CPU: the stage and the loop (plates included)
        return {
            "content": self.content, "mode": self.mode, "clip": self.cams[0].detect_clip.path.name,
            "seconds": base["seconds"], "held": base["held"], "frames": frames, "processed_frames": processed,
            "worker_cpu_s": round(cpu_s, 3),
            "worker_cpu_ms_per_frame": round(1000 * cpu_s / processed, 3) if processed else None,
            "worker_cpu_ms_per_decoded_frame":
                round(1000 * cpu_s / frames["decoded"], 3) if frames["decoded"] else None,
            "worker_cpu_cores": round(cpu_s / base["seconds"], 4) if base["seconds"] else None,
            "sightings": {"sent": len(self.sent), "sent_in_run": self.total_sent,
                          "labels": sorted({str(s.get("label")) for s in self.sent}),
                          "with_plate": sum(1 for s in self.sent if s.get("plate"))},
            "sightings_cpu": {
                "stage_cpu_s": round(d["stage_cpu_s"], 4), "loop_cpu_s": round(d["loop_cpu_s"], 4),
                "stage_cpu_ms_per_frame": round(1000 * d["stage_cpu_s"] / d["stage_calls"], 4)
                if d["stage_calls"] else None,
                "share_of_rest_pct": round(100 * own / (cpu_s - own), 2) if cpu_s > own else None},
            "plates": {"reads": int(d["calls"]), "valid_reads": int(d["valid"]), "read_cpu_s": round(d["cpu_s"], 3),
                       "reads_in_run": int(last["calls"]), "valid_reads_in_run": int(last["valid"]),
                       "texts": sorted({str(s["plate"]["plate"]) for s in self.sent if s.get("plate")})},
            "wall": {"note": "wall-clock figures: they grow with other load on a shared machine",
                     "window_s": base["seconds"],
                     "sightings_stage_s": round(stage_s, 4) if stage_s is not None else None,
                     "sightings_stage_ms_per_detected_frame":
                         round(1000 * stage_s / frames["detected"], 3) if stage_s and frames["detected"] else None,
                     "detect_ms_p50": base["detector_ms"]["p50"]},
            "machine": base["machine"],
        }


# ------------------------------------------------------------------------------ the series


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per content and mode: the median CPU per processed frame over rounds, and its increase over off."""
    out: dict[str, Any] = {}
    for content in dict.fromkeys(r["content"] for r in runs):
        mine = [r for r in runs if r["content"] == content]
        per: dict[str, Any] = {}
        for mode in dict.fromkeys(r["mode"] for r in mine):
            rs = [r for r in mine if r["mode"] == mode and r["worker_cpu_ms_per_frame"]]
            if not rs:
                continue
            per[mode] = {
                "rounds": len(rs),
                "worker_cpu_ms_per_frame": round(statistics.median(r["worker_cpu_ms_per_frame"] for r in rs), 3),
                "worker_cpu_ms_per_frame_each": [r["worker_cpu_ms_per_frame"] for r in rs],
                "worker_cpu_cores": round(statistics.median(r["worker_cpu_cores"] for r in rs), 4),
                "plate_reads": sum(r["plates"]["reads"] for r in rs),
                "valid_plate_reads": sum(r["plates"]["valid_reads"] for r in rs),
                "plate_read_cpu_s": round(sum(r["plates"]["read_cpu_s"] for r in rs), 3),
                "sightings_sent": sum(r["sightings"]["sent"] for r in rs),
                "plates_read": sorted({t for r in rs for t in r["plates"]["texts"]}),
                "sightings_cpu_share_pct": _median([(r.get("sightings_cpu") or {}).get("share_of_rest_pct")
                                                    for r in rs]),
            }
        off = per.get("off", {}).get("worker_cpu_ms_per_frame")
        for mode, m in per.items():
            inc = 100 * (m["worker_cpu_ms_per_frame"] / off - 1) if off and mode != "off" else None
            m["increase_pct"] = round(inc, 1) if inc is not None else None
        out[content] = per
    return out


def _median(values: list[float | None]) -> float | None:
    vs = [v for v in values if v is not None]
    return round(statistics.median(vs), 2) if vs else None


def verdict(summary: dict[str, Any]) -> dict[str, Any]:
    """Whether sightings (on, no plates) add at most :data:`LIMIT_PCT` worker CPU on the busy content.

    Two figures: ``sightings_increase_pct``, the worker's CPU per processed frame with sightings on over
    off (two runs: on a loaded machine their difference carries a few percent of noise either way), and
    ``sightings_cpu_share_pct``, the sightings' own thread CPU over the rest of the worker's in the same
    runs (no difference of two runs, so no such noise; indirect costs such as memory traffic are not in
    it).  ``holds`` goes by the share when it was measured, else by the increase.
    """
    on = summary.get("busy", {}).get("on", {})
    inc, share = on.get("increase_pct"), on.get("sightings_cpu_share_pct")
    by = share if share is not None else inc
    return {"limit_pct": LIMIT_PCT, "content": "busy", "sightings_increase_pct": inc,
            "sightings_cpu_share_pct": share, "holds": None if by is None else by <= LIMIT_PCT,
            "holds_by": None if by is None else ("sightings_cpu_share_pct" if share is not None
                                                 else "sightings_increase_pct")}


def run_series(plan: Plan, contents: list[Content], rounds: int, host: dict[str, Any],
               results_dir: Path | None = None) -> dict[str, Any]:
    """Every content × mode × round, interleaved; the JSON document."""
    floor = Floor()
    clips: dict[str, Clip] = {}
    for content in contents:
        clips[content] = (plan.clips("busy")[0] if content == "busy"
                          else ensure_vehicle_clip(vehicle_spec(plan.resolution), plan.cache_dir))
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": host,
        "settings": {"resolution": plan.resolution, "detect_fps": plan.detect_fps, "seconds": plan.seconds,
                     "warmup_s": plan.warmup, "model": "yolox_nano", "model_threads": plan.threads,
                     "motion": plan.motion, "contents": contents, "rounds": rounds,
                     "modes": {c: list(MODES[c]) for c in contents}},
        "content": [clips[c].describe() for c in contents],
        "runs": [], "summary": None, "verdict": None,
    }
    if results_dir is not None:
        results_dir.mkdir(parents=True, exist_ok=True)
    for rnd in range(1, rounds + 1):
        for content in contents:
            for mode in MODES[content]:
                log.info("bench sightings: round %d, %s content, sightings %s", rnd, content, mode)
                r = SightingsRun(plan, floor, content, mode, clips[content]).measure()
                r["round"] = rnd
                doc["runs"].append(r)
                log.info("bench sightings: %s %s: %.2f ms CPU per frame (%d frames), %d plate read(s)", content,
                         mode, r["worker_cpu_ms_per_frame"] or math.nan, r["processed_frames"], r["plates"]["reads"])
                if results_dir is not None:
                    (results_dir / f"{len(doc['runs']):02d}-{content}-{mode}.json").write_text(
                        json.dumps(r, indent=1, ensure_ascii=False))
    doc["summary"] = summarise(doc["runs"])
    doc["verdict"] = verdict(doc["summary"])
    doc["host"]["loadavg_end"] = list(os.getloadavg())
    if results_dir is not None:
        (results_dir / "bench.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False))
    return doc


def format_report(doc: dict[str, Any]) -> str:
    s, h = doc["settings"], doc["host"]
    out = [f"sharpeye bench --sightings: {s['resolution']}, detect {s['detect_fps']:g} fps, {s['rounds']} round(s) of "
           f"{s['seconds']:g} s, {h['cpus']} CPUs, load {h['loadavg_start'][0]:.2f} at start, "
           f"{h['loadavg_end'][0]:.2f} at end"]
    for content, per in doc["summary"].items():
        for mode, m in per.items():
            inc = "" if m["increase_pct"] is None else f" ({m['increase_pct']:+.1f} % vs off)"
            plates = (f", {m['plate_reads']} plate read(s) ({m['valid_plate_reads']} valid, "
                      f"{m['plate_read_cpu_s']} s CPU) {' '.join(m['plates_read'])}" if mode == "plates" else "")
            own = "" if not m["sightings_cpu_share_pct"] else f", sightings' own CPU {m['sightings_cpu_share_pct']} %"
            out.append(f"  {content:8s} {mode:6s}: worker {m['worker_cpu_ms_per_frame']:.2f} ms CPU per processed "
                       f"frame{inc}{own}, {m['worker_cpu_cores']:.3f} cores, {m['sightings_sent']} sighting(s)"
                       + plates)
    v = doc["verdict"]
    if v["holds"] is not None:
        share = "-" if v["sightings_cpu_share_pct"] is None else f"{v['sightings_cpu_share_pct']:.1f} %"
        out.append(f"sightings on busy content: {v['sightings_increase_pct']:+.1f} % worker CPU per frame over off, "
                   f"own CPU {share} of the rest ({'within' if v['holds'] else 'OVER'} the {v['limit_pct']:g} % "
                   "limit)")
    return "\n".join(out)


def settings_plan(plan: Plan) -> Plan:
    """One camera, one worker, the sightings' own defaults: everything else as the plan says."""
    return replace(plan, cameras=1, workers=1, content="busy")


# ------------------------------------------------------------------------------ the child


class Tally:
    """CPU seconds of the sightings' own code in the worker child, by thread CPU time, dumped to a file.

    Wrapped (same code, same results): the stage's ``update`` and ``flush`` on the detect thread, the
    sightings loop's ``turn`` (crop files, the bus, plate reads) on its thread, and the plate reader's
    ``read`` (calls, valid reads, CPU).  Thread CPU time counts only the calling thread's time on a core,
    so the figures do not grow with the machine's load as wall time does.  The file is replaced every
    half second and after each plate read.
    """

    PERIOD_S = 0.5

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.values: dict[str, float] = {"calls": 0, "valid": 0, "cpu_s": 0.0, "stage_cpu_s": 0.0,
                                         "stage_calls": 0, "loop_cpu_s": 0.0}
        self._stop = threading.Event()

    def add(self, **amounts: float) -> None:
        with self.lock:
            for k, v in amounts.items():
                self.values[k] += v

    def dump(self) -> None:
        with self.lock:
            doc = json.dumps(self.values)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(doc)
        os.replace(tmp, self.path)

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.PERIOD_S):
                self.dump()

        threading.Thread(target=loop, name="bench-sightings-tally", daemon=True).start()

    def install(self) -> None:
        """Wrap the four methods in this process (the worker child, before the worker starts)."""
        from pipeline.analyse.plates import PlateReader
        from pipeline.analyse.sightings import SightingsStage
        from pipeline.runtime.sightings import SightingsLoop

        read, update, flush, turn = PlateReader.read, SightingsStage.update, SightingsStage.flush, SightingsLoop.turn

        def counted_read(reader: Any, img: np.ndarray) -> Any:
            t0 = time.thread_time()
            out = read(reader, img)
            self.add(calls=1, valid=out is not None, cpu_s=time.thread_time() - t0)
            self.dump()
            return out

        def timed_update(stage: Any, *args: Any, **kwargs: Any) -> Any:
            t0 = time.thread_time()
            try:
                return update(stage, *args, **kwargs)
            finally:
                self.add(stage_cpu_s=time.thread_time() - t0, stage_calls=1)

        def timed_flush(stage: Any, *args: Any, **kwargs: Any) -> Any:
            t0 = time.thread_time()
            try:
                return flush(stage, *args, **kwargs)
            finally:
                self.add(stage_cpu_s=time.thread_time() - t0)

        def timed_turn(loop: Any) -> None:
            t0 = time.thread_time()
            try:
                turn(loop)
            finally:
                self.add(loop_cpu_s=time.thread_time() - t0)

        PlateReader.read = counted_read  # type: ignore[method-assign,assignment]
        SightingsStage.update = timed_update  # type: ignore[method-assign,assignment]
        SightingsStage.flush = timed_flush  # type: ignore[method-assign,assignment]
        SightingsLoop.turn = timed_turn  # type: ignore[method-assign,assignment]


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.tools.bench.sightings --counters-file F -- <pipeline.tools.bench.procs arguments>``"""
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    ap = argparse.ArgumentParser(prog="python -m pipeline.tools.bench.sightings")
    ap.add_argument("--counters-file", required=True, type=Path, help="where the sightings' CPU counters go")
    args = ap.parse_args(argv[:cut])
    tally = Tally(args.counters_file)
    tally.install()
    tally.start()
    from pipeline.tools.bench import procs

    return procs.main(argv[cut + 1:])


if __name__ == "__main__":
    raise SystemExit(main())
