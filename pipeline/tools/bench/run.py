"""One measured bench run: N simulated cameras → the pipeline (or the naive loop) for T seconds.

Everything is measured from outside the measured process, so the numbers hold for any worker
version: CPU and memory from ``/proc`` of each process, per-camera counters from the worker's
status hash (``<prefix>:cameras``, refreshed every 2 s; rates are taken over the status
timestamps, not the bench's clock, so a stale status does not skew them), alert latency from
the events stream (Redis stream id in ms − the message's ``frame_time``), detector time from
the probe file the child writes (see :mod:`pipeline.tools.bench.procs`).

Cameras are independent by default, as no two real cameras are in step: each starts its clip at
its own offset (seeded, so a run can be repeated) and sends its first frame after its own delay
(under one keyframe interval), so keyframes (decode bursts) and people (detector bursts) do not
arrive together; busy cameras alternate between the clip and its mirror image.

CPU cost is reported as well as the verdict, because on a shared machine a wall-clock capacity
search is noisy and process CPU seconds are not (much): per camera-second of video, of the counted
processes, per stage (the worker's ``stage_s``), of the simulator (separately), and of the serial
loop's thread (one per process, it can use one core at most).  From them, capacity estimates:
cores ÷ cost per camera, and processes ÷ serial-loop cost per camera.

The floor (:mod:`pipeline.tools.bench.floor`) is measured after the run, so it does not compete with it,
and priced with the frames the run decoded and detected.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import redis
import yaml

from pipeline.publish.status import STAGE_PER
from pipeline.runtime.procs import start_child, stop_children
from pipeline.runtime.redis_server import RedisServer
from pipeline.tools.bench.content import DEFAULT_CACHE, Clip, ClipSpec, ensure_clip
from pipeline.tools.bench.floor import Floor
from pipeline.tools.bench.procs import read_probe

log = logging.getLogger("sharpeye.bench")

Kind = Literal["pipeline", "naive"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT_S = 40.0
SOURCE_FPS = 25.0
PREFIX = "bench"
FALL_BEHIND_RATE = 0.95  # detected fps below 95 % of the configured rate: the camera fell behind
FALL_BEHIND_SKIPPED = 0.01  # or more than 1 % of its sampled frames skipped


def simulator_class() -> Any:
    """The RTSP camera simulator (scripts/camsim.py behind pipeline.tools.simulator)."""
    from pipeline.tools.simulator import RtspSimulator
    return RtspSimulator


@dataclass(frozen=True)
class Plan:
    """What one bench configuration runs: cameras, content, rates and the measured window."""

    cameras: int = 1
    resolution: str = "720p"  # of the main stream: 720p or 1080p
    substream: bool = False  # detect on a 640x360 sub-stream, record the main stream
    content: Literal["busy", "idle", "mixed"] = "busy"
    detect_fps: float = 5.0
    seconds: float = 20.0  # measured window
    warmup: float = 5.0  # after every camera streams, before measuring
    threads: int = 1  # onnxruntime intra-op threads per worker
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)  # worker processes at most
    clip_seconds: float | None = None  # length of generated clips (None: the content's default)
    cache_dir: Path = DEFAULT_CACHE
    motion: bool = True  # motion gating (False: detect every sampled frame)
    idle: bool | None = None  # idle mode (None: the schema's default, on with a sub-stream)
    independent: bool = True  # per-camera start offsets and first-frame delays (False: all cameras in step)
    variants: int = 2  # busy cameras cycle through this many content variants (1: the clip, 2: + its mirror)
    seed: int = 13  # of the offsets: the same seed gives the same cameras
    reader_nice: int = 0  # experiment: reader (decoder) threads of the worker at this nice value
    slot_depth: int = 0  # experiment: the worker's SLOT_DEPTH (frames waiting per camera; 0: the worker's own)

    @property
    def worker_processes(self) -> int:
        """Worker processes for this many cameras: one per CPU by default, never more than cameras."""
        return max(1, min(self.workers, self.cameras))

    def with_cameras(self, n: int) -> Plan:
        return replace(self, cameras=n)

    def camera_kinds(self) -> list[Literal["busy", "idle"]]:
        """Content per camera; mixed: odd-numbered cameras (cam01, cam03, ...) busy, even ones idle."""
        if self.content == "mixed":
            return ["busy" if i % 2 == 0 else "idle" for i in range(self.cameras)]
        return [self.content] * self.cameras  # type: ignore[list-item]

    def clips(self, kind: Literal["busy", "idle"], variant: int = 0) -> tuple[Clip, Clip | None]:
        """(the clip decoded for detection, the recorded main-stream clip or None).

        Variant 1 of busy content is the mirror image (idle content is noise: variants would not differ).
        Only the detected stream is mirrored: the recorded main stream is demuxed, never looked at.
        """
        mirror = kind == "busy" and variant % 2 == 1
        if not self.substream:
            return ensure_clip(ClipSpec.make(kind, self.resolution, self.clip_seconds, mirror), self.cache_dir), None
        main = ensure_clip(ClipSpec.make(kind, self.resolution, self.clip_seconds), self.cache_dir)
        sub = ensure_clip(ClipSpec.make(kind, "360p", self.clip_seconds, mirror), self.cache_dir)
        return sub, main


@dataclass
class CameraSetup:
    camera_id: str
    kind: Literal["busy", "idle"]
    detect_clip: Clip
    record_clip: Clip | None
    start_s: float = 0.0  # where in its clip the camera starts (the simulator snaps back to a keyframe)
    delay_s: float = 0.0  # its first frame this long after PLAY: its keyframes fall between the others'


def layout(plan: Plan) -> list[CameraSetup]:
    """The cameras: content, clips and, when independent, each one's start offset and delay.

    Offsets come from a seeded generator per camera index, so camera 5 is the same camera in a run
    of 8 and in a run of 16, and two invocations with the same seed see the same cameras.
    """
    out = []
    for i, kind in enumerate(plan.camera_kinds()):
        variant = i % max(1, plan.variants) if plan.independent else 0
        det, rec = plan.clips(kind, variant)
        cam = CameraSetup(f"cam{i + 1:02d}", kind, det, rec)
        if plan.independent:
            rng = random.Random(f"{plan.seed}/{i}")
            cam.start_s = round(rng.uniform(0.0, det.spec.seconds), 2)
            cam.delay_s = round(rng.uniform(0.0, det.keyframe_interval), 2)
        out.append(cam)
    return out


def write_config(path: Path, plan: Plan, cams: list[CameraSetup], urls: dict[str, str],
                 redis_url: str | None) -> None:
    """A streams.yaml for the run: the schema's defaults except what the bench varies."""
    cameras: dict[str, Any] = {}
    for c in cams:
        entry: dict[str, Any] = {"name": f"bench {c.kind} {c.camera_id}", "source": urls[c.camera_id],
                                 "grid_cell": "B1", "detect_fps": plan.detect_fps, "alert_labels": ["person"]}
        if c.record_clip is not None:
            entry["record_source"] = urls[f"{c.camera_id}/main"]
        if not plan.motion:
            entry["motion"] = {"enabled": False}
        if plan.idle is not None:
            entry["idle"] = {"enabled": plan.idle}
        cameras[c.camera_id] = entry
    doc = {"version": 1, "data_dir": str(path.parent / "data"), "redis_url": redis_url,
           "workers": plan.worker_processes,
           "model": {"name": "yolox_nano", "threads": plan.threads},
           "bus": {"prefix": PREFIX},
           "grid_cells": {"B1": {"name": "Bench", "officer": {"name": "Bench", "phone": "000"}}},
           "cameras": cameras}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


# ------------------------------------------------------------------------------ /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) plus its waited-for children, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLK_TCK  # fields 14-17 of proc(5)


def schedstat(pid: int, tid: int | None = None) -> tuple[float, float]:
    """(seconds on a core, seconds runnable but waiting for a core) of one thread, or summed over all the
    live threads of a process (threads that ended are not counted).  From ``/proc/.../schedstat``."""
    tids = [tid] if tid is not None else [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    run = wait = 0
    for t in tids:
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                a, b, _ = f.read().split()
        except (OSError, ValueError):
            continue
        run += int(a)
        wait += int(b)
    return run / 1e9, wait / 1e9


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def busy_cores_counter() -> tuple[float, float]:
    """(busy seconds, total seconds) of the whole machine, summed over cores, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return (sum(parts[:8]) - idle) / CLK_TCK, sum(parts[:8]) / CLK_TCK


def percentiles(values: list[float], scale: float = 1.0, digits: int = 1) -> dict[str, Any]:
    if not values:
        return {"p50": None, "p99": None, "n": 0}
    arr = np.asarray(values, dtype=np.float64) * scale
    return {"p50": round(float(np.percentile(arr, 50)), digits), "p99": round(float(np.percentile(arr, 99)), digits),
            "n": int(arr.size)}


# ------------------------------------------------------------------------------ one run


@dataclass
class Snapshot:
    time: float
    cpu: dict[str, float]  # per role (worker, redis, naive, simulator, bench), summed over its processes
    machine: tuple[float, float]
    counters: dict[str, dict[str, Any]]  # per camera, with "t": when the counters were taken
    loops: dict[int, dict[str, Any]] = field(default_factory=dict)  # per measured pid: its serial loop
    queued: dict[str, float] = field(default_factory=dict)  # per role: run-queue seconds of its live threads


class Run:
    """Sets up simulator, Redis and the measured children; ``measure()`` returns the result dict."""

    def __init__(self, plan: Plan, kind: Kind, floor: Floor):
        self.plan = plan
        self.kind = kind
        self.floor = floor
        self.cams = layout(plan)
        self.procs: dict[str, list[int]] = {}
        self.children: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.probes: list[Path] = []

    @property
    def counted(self) -> list[str]:
        """The roles whose CPU and memory are the pipeline's (the simulator and the bench are not)."""
        return ["worker", "redis"] if self.kind == "pipeline" else ["naive"]

    def measure(self) -> dict[str, Any]:
        mounts: dict[str, Path] = {}
        starts: dict[str, float] = {}
        delays: dict[str, float] = {}
        for c in self.cams:
            names = [c.camera_id] + ([f"{c.camera_id}/main"] if c.record_clip is not None else [])
            for name in names:  # a sub-stream and its main stream start together, as one camera's do
                starts[name], delays[name] = c.start_s, c.delay_s
            mounts[c.camera_id] = c.detect_clip.path
            if c.record_clip is not None:
                mounts[f"{c.camera_id}/main"] = c.record_clip.path
        with tempfile.TemporaryDirectory(prefix="sharpeye-bench-") as tmp_s, contextlib.ExitStack() as stack:
            tmp = Path(tmp_s)
            # lean: the same RTP packets for about a third less of the simulator's CPU (it shares the cores)
            sim = simulator_class()(mounts, starts=starts, delays=delays, lean=True)
            sim.start()
            stack.callback(sim.stop, kill=True)  # callbacks run last-in first-out: children, Redis, simulator
            self.procs["simulator"] = [sim.proc.pid]
            url = None
            if self.kind == "pipeline":
                srv = RedisServer(tmp / "redis", persist=False)
                url = srv.start()
                stack.callback(srv.stop)
                self.procs["redis"] = [srv.proc.pid] if srv.proc else []
            cfg = tmp / "streams.yaml"
            write_config(cfg, self.plan, self.cams, {m: sim.url(m) for m in mounts}, url)
            stack.callback(self._stop_children)
            self._start_children(cfg, url, tmp)
            r = redis.Redis.from_url(url) if url else None
            ready = self._wait_ready(r)
            time.sleep(self.plan.warmup)
            rss: list[int] = []
            start = self._snapshot(r)
            deadline = start.time + self.plan.seconds
            while time.time() < deadline:
                time.sleep(min(0.5, max(0.0, deadline - time.time())))
                rss.append(sum(rss_bytes(pid) for role in self.counted for pid in self.procs.get(role, [])))
                self._check_alive()
            end = self._snapshot(r)
            events = self._events(r, start.time, end.time) if r else []
            samples = self._samples()
            recording = self._recordings(tmp / "data") if self.kind == "pipeline" else None
        for c in self.cams:  # after the run: the floor must not compete with what it is the floor of
            self.floor.ensure(c.detect_clip, self.plan.threads)
        return self._result(start, end, ready, rss, events, samples, recording)

    # -------------------------------------------------------------------- children

    def _start_children(self, cfg: Path, url: str | None, tmp: Path) -> None:
        """One process per worker shard (as ``sharpeye run`` starts them), or the one naive process."""
        py = [sys.executable, "-m", "pipeline.tools.bench.procs"]
        if self.kind == "pipeline":
            n = self.plan.worker_processes
            cmds = [py + ["worker", "--probe", str(tmp / f"probe{i}.json"), "--reader-nice", str(self.plan.reader_nice),
                          "--slot-depth", str(self.plan.slot_depth),
                          "--", "--config", str(cfg),
                          "--redis", str(url), "--shard", f"{i}/{n}", "--log-level", "WARNING"] for i in range(n)]
            self.probes = [tmp / f"probe{i}.json" for i in range(n)]
        else:
            cmds = [py + ["naive", "--probe", str(tmp / "probe0.json"), "--config", str(cfg),
                          "--source-fps", str(SOURCE_FPS)]]
            self.probes = [tmp / "probe0.json"]
        role = "worker" if self.kind == "pipeline" else "naive"
        for i, cmd in enumerate(cmds):
            log_path = tmp / f"child{i}.log"
            with open(log_path, "wb") as logf:
                child = start_child(cmd, stdout=logf, stderr=subprocess.STDOUT)
            self.children.append(child)
            self.logs.append(log_path)
            self.procs.setdefault(role, []).append(child.pid)

    def _stop_children(self) -> None:
        stop_children(self.children)

    def _check_alive(self) -> None:
        for child, log_path in zip(self.children, self.logs):
            if child.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
                raise RuntimeError(f"{self.kind} process exited with {child.returncode}: {tail}")

    def _samples(self) -> dict[str, list[tuple[float, float]]]:
        """Detector ms and latency samples of every measured process, and the detect loop's gaps.

        A gap is the time from the end of one detector call to the start of the next in the same
        process: waiting for frames, or the loop busy elsewhere (tracker, rules, snapshots, bus).
        Long gaps while frames are being skipped point at a loop that stalls, not a slow detector.
        """
        out: dict[str, list[tuple[float, float]]] = {"detector_ms": [], "latency_s": [], "gap_ms": []}
        for p in self.probes:
            doc = read_probe(p) or {}
            for k in ("detector_ms", "latency_s"):
                out[k] += [(float(x[0]), float(x[1])) for x in doc.get(k, [])]
            prev = None
            for t_end, ms, _n in doc.get("batches", []):
                if prev is not None:
                    out["gap_ms"].append((t_end, max(0.0, (t_end - ms / 1000 - prev) * 1000)))
                prev = t_end
        return out

    # -------------------------------------------------------------------- observations

    def _counters(self, r: redis.Redis | None) -> dict[str, dict[str, Any]]:
        if r is not None:
            out = {}
            for k, v in r.hgetall(f"{PREFIX}:cameras").items():
                st = json.loads(v)
                st["t"] = float(st.get("updated", time.time()))
                out[k.decode()] = st
            return out
        doc = read_probe(self.probes[0]) or {}
        t = float(doc.get("time", time.time()))
        return {cid: {**c, "t": t, "state": "streaming" if c.get("decoded") else "connecting"}
                for cid, c in (doc.get("counters") or {}).items()}

    def _wait_ready(self, r: redis.Redis | None) -> dict[str, bool]:
        """Until every camera streams (or a timeout: those not streaming then fail the run)."""
        deadline = time.time() + READY_TIMEOUT_S + len(self.cams)
        ready: dict[str, bool] = {}
        while time.time() < deadline:
            self._check_alive()
            counters = self._counters(r)
            ready = {c.camera_id: counters.get(c.camera_id, {}).get("state") == "streaming"
                     and counters.get(c.camera_id, {}).get("decoded", 0) > 0 for c in self.cams}
            if all(ready.values()):
                break
            time.sleep(0.25)
        else:
            log.warning("bench: cameras not streaming after %.0f s: %s", READY_TIMEOUT_S,
                        [k for k, v in ready.items() if not v])
        return ready

    def _snapshot(self, r: redis.Redis | None) -> Snapshot:
        cpu = {}
        for role, pids in self.procs.items():
            total = 0.0
            for pid in pids:
                try:
                    total += cpu_seconds(pid)
                except OSError:
                    total = math.nan
            cpu[role] = total
        cpu["bench"] = time.process_time()  # this process: the bench's own share of the machine
        loops: dict[int, dict[str, Any]] = {}
        for pid, probe in zip(self.procs.get("worker" if self.kind == "pipeline" else "naive", []), self.probes):
            loop = (read_probe(probe) or {}).get("loop") or {}
            if loop.get("tid"):
                on_cpu, queued = schedstat(pid, int(loop["tid"]))
                loops[pid] = {"tid": loop["tid"], "idle_s": float(loop.get("idle_s", 0.0)), "on_cpu_s": on_cpu,
                              "queued_s": queued}
        queued_by_role = {}
        for role in self.counted:
            q = 0.0
            for pid in self.procs.get(role, []):
                try:
                    q += schedstat(pid)[1]
                except OSError:
                    pass
            queued_by_role[role] = q
        return Snapshot(time.time(), cpu, busy_cores_counter(), self._counters(r), loops, queued_by_role)

    @staticmethod
    def _events(r: redis.Redis, t0: float, t1: float) -> list[tuple[float, dict[str, Any]]]:
        """(arrival time, message) of the messages added to the events stream inside the window."""
        out = []
        for sid, fields in r.xrange(f"{PREFIX}:events", min=str(int(t0 * 1000)), max=str(int(t1 * 1000))):
            raw = fields.get(b"json")
            if raw is not None:
                out.append((int(sid.decode().split("-")[0]) / 1000, json.loads(raw)))
        return out

    @staticmethod
    def _recordings(data: Path) -> dict[str, Any]:
        """What the worker recorded: recording may not be wired yet, and the report must say so."""
        root = data / "recordings"
        files = [p for p in root.rglob("*.mp4") if p.is_file()] if root.exists() else []
        return {"segments": len(files), "bytes": sum(p.stat().st_size for p in files)}

    # -------------------------------------------------------------------- the figures

    def _camera(self, c: CameraSetup, a: dict[str, Any], b: dict[str, Any], ready: bool,
                events: list[tuple[float, dict[str, Any]]]) -> dict[str, Any]:
        """One camera's rates over its own counter window, and whether it kept up."""
        dt_s = max(1e-6, float(b.get("t", 0)) - float(a.get("t", 0)))

        def rate(key: str) -> float:
            return (int(b.get(key) or 0) - int(a.get(key) or 0)) / dt_s

        fps = {k: rate(k) for k in ("packets", "decoded", "sampled", "detected", "gated")}
        if self.kind == "naive":
            fps["packets"] = fps["decoded"]  # cv2 shows no packets: every grabbed frame is one
        skipped = int(b.get("skipped") or 0) - int(a.get("skipped") or 0)
        sampled = int(b.get("sampled") or 0) - int(a.get("sampled") or 0)
        mine = [(t, m) for t, m in events if (m.get("camera") or {}).get("id") == c.camera_id]
        lats = [t - m["frame_time"] for t, m in mine if m.get("type") == "alert" and m.get("frame_time") is not None]
        source_fps = c.detect_clip.spec.fps
        want = FALL_BEHIND_RATE * self.plan.detect_fps
        reasons = []
        if not ready:
            reasons.append("not streaming")
        if fps["packets"] < FALL_BEHIND_RATE * source_fps:
            reasons.append(f"input {fps['packets']:.1f} fps < {FALL_BEHIND_RATE * source_fps:.2f}")
        # Frames the motion gate judged still count as handled.  A camera in idle mode decodes keyframes
        # only (decoded well under input): its sampled rate is below detect fps by design, not by lag.
        full_decode = fps["decoded"] >= 0.9 * fps["packets"]
        handled = fps["detected"] + fps["gated"]
        if full_decode and handled < want:
            reasons.append(f"detected{'+gated' if fps['gated'] else ''} {handled:.2f} fps < {want:.2f}")
        if sampled and skipped > FALL_BEHIND_SKIPPED * sampled:
            reasons.append(f"skipped {skipped} of {sampled} sampled frames")
        return {
            "id": c.camera_id, "content": c.kind,
            "width": c.detect_clip.spec.width, "height": c.detect_clip.spec.height,
            "record_width": c.record_clip.spec.width if c.record_clip else None,
            "input_fps": round(fps["packets"], 2), "decoded_fps": round(fps["decoded"], 2),
            "sampled_fps": round(fps["sampled"], 2), "detected_fps": round(fps["detected"], 2),
            "gated_fps": round(fps["gated"], 2), "skipped": skipped,
            "skipped_pct": round(100 * skipped / sampled, 2) if sampled else 0.0,
            "events": len(mine),
            "detector_ms_p50": b.get("inference_ms_p50"),
            "latency_ms": percentiles(lats, 1000),
            "held": not reasons, "reasons": reasons,
        }

    def _result(self, start: Snapshot, end: Snapshot, ready: dict[str, bool], rss: list[int],
                events: list[tuple[float, dict[str, Any]]], samples: dict[str, list[tuple[float, float]]],
                recording: dict[str, Any] | None) -> dict[str, Any]:
        wall = end.time - start.time
        n = len(self.cams)
        per_cam = [self._camera(c, start.counters.get(c.camera_id, {}), end.counters.get(c.camera_id, {}),
                                ready.get(c.camera_id, False), events) for c in self.cams]
        rates = ("input_fps", "decoded_fps", "sampled_fps", "detected_fps", "gated_fps")
        total: dict[str, Any] = {k: round(sum(p[k] for p in per_cam), 2) for k in rates}
        skipped = sum(p["skipped"] for p in per_cam)
        sampled = sum(p["sampled_fps"] for p in per_cam) * wall
        cpu = {k: end.cpu[k] - start.cpu[k] for k in start.cpu}
        pipeline_cores = sum(cpu.get(k, 0.0) for k in self.counted) / wall
        total.update({
            "skipped": skipped, "skipped_pct": round(100 * skipped / sampled, 2) if sampled else 0.0,
            "events": len(events), "cpu_cores": round(pipeline_cores, 3),
            "cpu_s_per_camera_s": round(pipeline_cores / n, 4),
            "rss_mb": round(float(np.mean(rss)) / 2**20, 1) if rss else None,
            "rss_mb_max": round(max(rss) / 2**20, 1) if rss else None,
        })
        busy = (end.machine[0] - start.machine[0]) / wall
        ours = sum(v for v in cpu.values() if not math.isnan(v)) / wall

        def in_window(xs: list[tuple[float, float]]) -> list[float]:
            return [v for t, v in xs if start.time <= t <= end.time]

        gaps = in_window(samples["gap_ms"])
        if self.kind == "pipeline":
            lat_all = [t - m["frame_time"] for t, m in events
                       if m.get("type") == "alert" and m.get("frame_time") is not None]
            latency = {"kind": "alert", **percentiles(lat_all, 1000)}
        else:
            latency = {"kind": "detection", **percentiles(in_window(samples["latency_s"]), 1000)}
        stages = self._stages(start, end) if self.kind == "pipeline" else None
        loop = self._loop(start, end, wall)
        sim_cores = cpu.get("simulator", 0.0) / wall
        return {
            "kind": self.kind, "cameras": n, "seconds": round(wall, 2),
            "processes_started": len(self.children),
            "held": all(p["held"] for p in per_cam),
            "total": total,
            "processes": {k: {"cpu_cores": round(v / wall, 3), "counted": k in self.counted} for k, v in cpu.items()},
            "machine": {"busy_cores": round(busy, 2), "other_cores": round(max(0.0, busy - ours), 2),
                        "cpus": os.cpu_count() or 1, "loadavg": [round(x, 2) for x in os.getloadavg()]},
            "detector_ms": percentiles(in_window(samples["detector_ms"]), 1, 2),
            "detect_gap_ms": {**percentiles(gaps, 1, 1), "max": round(max(gaps), 1) if gaps else None},
            "latency_ms": latency,
            "floor": self._floor(per_cam, pipeline_cores),
            "recording": recording,
            "cost": self._cost(n, pipeline_cores, sim_cores, cpu, wall, stages, loop),
            "stages": stages,
            "detect_loop": loop,
            "per_camera": per_cam,
        }

    def _stages(self, start: Snapshot, end: Snapshot) -> dict[str, Any]:
        """Seconds per stage (the worker's cumulative ``stage_s``) over the window, all cameras.

        ``s_per_camera_s``: stage seconds per camera-second (wall time in the stage, so a thread that
        waits for a core inside a stage counts that wait); ``ms_per_frame``: per frame the stage sees
        (decoded, sampled, detected frames or events, as ``sharpeye status --stages`` divides).
        """
        secs: dict[str, float] = {}
        frames: dict[str, int] = {}
        cam_s = 0.0
        for c in self.cams:
            a, b = start.counters.get(c.camera_id, {}), end.counters.get(c.camera_id, {})
            cam_s += max(0.0, float(b.get("t", 0)) - float(a.get("t", 0)))
            sa, sb = a.get("stage_s") or {}, b.get("stage_s") or {}
            for k in sb:
                secs[k] = secs.get(k, 0.0) + max(0.0, float(sb[k]) - float(sa.get(k, 0.0)))
            for k in set(STAGE_PER.values()):
                frames[k] = frames.get(k, 0) + int(b.get(k) or 0) - int(a.get(k) or 0)
        per_frame = {k: round(v * 1000 / frames[STAGE_PER[k]], 3) for k, v in secs.items()
                     if k in STAGE_PER and frames.get(STAGE_PER[k])}
        return {"seconds": {k: round(v, 3) for k, v in secs.items()},
                "s_per_camera_s": {k: round(v / cam_s, 5) for k, v in secs.items()} if cam_s else {},
                "ms_per_frame": per_frame, "frames": frames}

    def _loop(self, start: Snapshot, end: Snapshot, wall: float) -> dict[str, Any] | None:
        """Where the serial loops' wall time went: waiting for work, on a core, queued for a core, blocked.

        Blocked = busy (not waiting for work) yet neither running nor runnable: the GIL, a lock, I/O.
        A stall is frames waiting (``queued_s``/``blocked_s`` while busy) with a core free.
        """
        per = []
        for pid, b in end.loops.items():
            a = start.loops.get(pid)
            if a is None or a["tid"] != b["tid"]:
                continue
            idle = max(0.0, b["idle_s"] - a["idle_s"])
            on_cpu, queued = b["on_cpu_s"] - a["on_cpu_s"], b["queued_s"] - a["queued_s"]
            blocked = max(0.0, wall - idle - on_cpu - queued)
            per.append({"pid": pid, "idle_s": round(idle, 3), "on_cpu_s": round(on_cpu, 3),
                        "queued_s": round(queued, 3), "blocked_s": round(blocked, 3)})
        if not per:
            return None
        tot = {k: round(sum(p[k] for p in per), 3) for k in ("idle_s", "on_cpu_s", "queued_s", "blocked_s")}
        share = {k.replace("_s", "_share"): round(v / (wall * len(per)), 3) for k, v in tot.items()}
        queued_all = sum(end.queued.get(r, 0.0) - start.queued.get(r, 0.0) for r in self.counted)
        return {"processes": len(per), "wall_s": round(wall, 2), **tot, **share, "per_process": per,
                "all_threads_queued_cores": round(queued_all / wall, 3)}

    def _cost(self, n: int, pipeline_cores: float, sim_cores: float, cpu: dict[str, float], wall: float,
              stages: dict[str, Any] | None, loop: dict[str, Any] | None) -> dict[str, Any]:
        """CPU per camera-second and what it projects onto this machine's cores.

        ``capacity_cpu``: cores ÷ cost per camera (the fixed cost of Redis and the processes spread
        over these n cameras, so it is pessimistic at small n); ``capacity_cpu_with_simulator``: the
        same with the simulator's cost added, when it shares the machine; ``capacity_serial``:
        processes ÷ the serial loop's on-core seconds per camera-second (each loop runs on one core
        at most).  The estimate is the least of them; the verdict (``held``) is what was seen.
        """
        cpus = os.cpu_count() or 1
        per_cam = pipeline_cores / n
        sim_per_cam = sim_cores / n
        serial = (loop["on_cpu_s"] / wall / n) if loop else None
        processes = loop["processes"] if loop else None
        out: dict[str, Any] = {
            "cpus": cpus,
            "cpu_s_per_camera_s": round(per_cam, 4),
            "worker_cpu_s_per_camera_s": round(cpu.get("worker" if self.kind == "pipeline" else "naive", 0.0)
                                               / wall / n, 4),
            "simulator_cpu_s_per_camera_s": round(sim_per_cam, 4),
            "serial_loop_cpu_s_per_camera_s": round(serial, 4) if serial is not None else None,
            "capacity_cpu": int(cpus / per_cam) if per_cam > 0 else None,
            "capacity_cpu_with_simulator": int(cpus / (per_cam + sim_per_cam)) if per_cam + sim_per_cam > 0 else None,
            "capacity_serial": int(processes / serial) if serial and processes else None,
        }
        bounds = [v for v in (out["capacity_cpu"], out["capacity_serial"]) if v is not None]
        out["capacity_estimate"] = min(bounds) if bounds else None
        return out

    def _floor(self, per_cam: list[dict[str, Any]], pipeline_cores: float) -> dict[str, Any]:
        """Decode alone for the frames decoded + the detector alone for the frames detected."""
        threads = self.plan.threads
        dec = sum(self.floor.decode_cores(c.detect_clip, p["input_fps"], p["decoded_fps"])
                  for c, p in zip(self.cams, per_cam))
        inf = sum(self.floor.inference_cores(c.detect_clip, threads, p["detected_fps"])
                  for c, p in zip(self.cams, per_cam))
        names = sorted({c.detect_clip.path.name for c in self.cams})
        return {
            "decode_cpu_ms_per_frame": {k: round(self.floor.decode_ms[k], 3) for k in names},
            "decode_cpu_ms_per_keyframe": {k: round(self.floor.keyframe_ms[k], 3) for k in names},
            "inference_cpu_ms_per_frame": {k: round(self.floor.infer_ms[(k, threads)], 2) for k in names},
            "decode_cores": round(dec, 3), "inference_cores": round(inf, 3), "cores": round(dec + inf, 3),
            "ratio": round(pipeline_cores / (dec + inf), 2) if dec + inf > 0 else None,
        }
