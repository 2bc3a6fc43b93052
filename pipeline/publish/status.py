"""Camera status: the typed record a worker writes for each camera, and what is read from it.

Workers write one :class:`CameraStatus` per camera to the bus (``P:cameras``); ``sharpeye status``,
``/metrics`` and the dashboard read them back with :func:`pipeline.publish.bus.parse_statuses`, so
every worker's cameras show in one place and a camera whose worker died reads as offline.  Each
field's metric (gauge or counter, name and help) is declared on the field itself: adding a field
and its metric is one edit.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, StateSetMetricFamily

STATES = ("connecting", "streaming", "stalled", "backoff", "stopped", "offline")


def _gauge(name: str, doc: str, default: Any = None) -> Any:
    return field(default=default, metadata={"metric": ("gauge", name, doc)})


def _counter(name: str, doc: str, default: Any = 0) -> Any:
    return field(default=default, metadata={"metric": ("counter", name, doc)})


@dataclass
class CameraStatus:
    """One camera's state and counters, as its worker last saw them."""

    camera: str
    state: str = "unknown"  # a reader State value; "offline" when the worker stopped refreshing it
    since: float | None = None  # when the state began (epoch s)
    updated: float = 0.0  # when the worker wrote this status (epoch s)
    online: bool = False  # streaming and fresh: computed by the reader, never trusted from the writer
    width: int = 0
    height: int = 0
    packets: int = 0
    decoded: int = 0
    sampled: int = 0
    detected: int = _counter("sharpeye_camera_detected_frames", "Frames that went through the detector.")
    skipped: int = _counter("sharpeye_camera_skipped_frames",
                            "Sampled frames dropped because the detector was behind.")
    gated: int = 0
    packets_fps: float | None = _gauge("sharpeye_camera_input_fps",
                                       "Packets per second received from the detect input.")
    decoded_fps: float | None = _gauge("sharpeye_camera_decoded_fps", "Frames per second decoded.")
    sampled_fps: float | None = None
    detected_fps: float | None = _gauge("sharpeye_camera_detected_fps",
                                        "Frames per second that went through the detector.")
    skipped_fps: float | None = _gauge("sharpeye_camera_skipped_fps",
                                       "Sampled frames per second dropped because the detector was behind.")
    gated_fps: float | None = None
    queue_depth: int = _gauge("sharpeye_camera_queue_depth", "Frames waiting for the detector.", 0)
    decode_errors: int = _counter("sharpeye_camera_decode_errors", "Packets that failed to decode.")
    reconnects: int = _counter("sharpeye_camera_reconnects", "Reconnects of the detect input.")
    stalls: int = _counter("sharpeye_camera_stalls", "Times the input went silent for watchdog.stall_s.")
    last_error: str = ""
    events: int = _counter("sharpeye_camera_events", "Messages published to the bus.")
    publish_errors: int = _counter("sharpeye_camera_publish_errors",
                                   "Messages or snapshots that could not be written.")
    errors: int = 0  # analysis failures (rules, tracker) of this camera
    outbox_depth: int = _gauge("sharpeye_camera_outbox_depth",
                               "Messages of this camera on disk waiting for Redis.", 0)
    outbox_age_s: float = _gauge("sharpeye_camera_outbox_age_seconds",
                                 "How long the oldest waiting message of this camera has waited.", 0.0)
    recorded_bytes: int | None = _counter("sharpeye_camera_recorded_bytes", "Bytes written to recordings.", None)
    recorded_segments: int | None = None
    record_gaps: int | None = None
    record_state: str | None = None
    disk_full: bool | None = _gauge("sharpeye_camera_disk_full",
                                    "1 while the camera's recording is paused because its disk is full.", None)
    record_errors: int | None = _counter("sharpeye_camera_record_errors",
                                         "Recording writes that failed (disk full, I/O); the lost time is a gap.", None)
    pre_event_s: float | None = None
    idle: bool = False
    idle_skipped: int = 0
    inference_ms_p50: float | None = _gauge("sharpeye_camera_inference_ms", "Median detector time per frame (ms).")
    inference_ms_p99: float | None = None
    alert_latency_s_p50: float | None = _gauge("sharpeye_camera_alert_latency_seconds",
                                               "Median time from frame to event on the bus.")
    alert_latency_s_p99: float | None = None
    last_frame_time: float = 0.0
    # "ok", or "unavailable" when the worker could not load its model: the camera records and streams live,
    # nothing is analysed; detector_error says why (the worker tries to load it again now and then)
    detector: str = "ok"
    detector_error: str = ""
    # per-stage timing: cumulative seconds per stage (decode, gray, gate, queue_wait, convert, detect, track,
    # rules, snapshot, publish) and the detect loop's idle time (idle_gated: nothing to do)
    stage_s: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, camera: str, data: dict[str, Any]) -> CameraStatus:
        """Fields this version does not know (a newer worker) are ignored, missing ones take defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in data.items() if k in known}, "camera": camera})


METRIC_FIELDS = [(f.name, *f.metadata["metric"]) for f in dataclasses.fields(CameraStatus) if "metric" in f.metadata]


class _StatusCollector:
    def __init__(self, statuses: dict[str, CameraStatus]):
        self.statuses = statuses

    def collect(self) -> Iterable[Any]:
        for name_, kind, name, doc in METRIC_FIELDS:
            family = (GaugeMetricFamily if kind == "gauge" else CounterMetricFamily)(name, doc, labels=["camera"])
            for cid, st in sorted(self.statuses.items()):
                value = getattr(st, name_)
                if value is not None:
                    family.add_metric([cid], float(value))
            yield family
        stages = CounterMetricFamily("sharpeye_camera_stage_seconds",
                                     "Seconds spent per pipeline stage (divide by frames for the cost per frame).",
                                     labels=["camera", "stage"])
        for cid, st in sorted(self.statuses.items()):
            for stage, secs in sorted(st.stage_s.items()):
                stages.add_metric([cid, stage], float(secs))
        yield stages
        s = StateSetMetricFamily("sharpeye_camera_state", "State of the camera's detect input.", labels=["camera"])
        up = GaugeMetricFamily("sharpeye_camera_online", "1 when the camera is streaming and its worker alive.",
                               labels=["camera"])
        det = GaugeMetricFamily("sharpeye_camera_detector_available",
                                "0 while the camera's worker has no detector (model unavailable): recorded, "
                                "not analysed.", labels=["camera"])
        for cid, st in sorted(self.statuses.items()):
            s.add_metric([cid], {name: st.state == name for name in STATES})
            up.add_metric([cid], 1.0 if st.online else 0.0)
            det.add_metric([cid], 0.0 if st.detector == "unavailable" else 1.0)
        yield s
        yield up
        yield det


def metrics_text(statuses: dict[str, CameraStatus]) -> bytes:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_StatusCollector(statuses))  # type: ignore[arg-type]
    return generate_latest(reg)


STAGE_PER = {  # the frames a stage's time is divided by, for a cost per frame
    "decode": "decoded", "gray": "sampled", "gate": "sampled", "queue_wait": "detected", "convert": "detected",
    "detect": "detected", "track": "detected", "rules": "detected", "snapshot": "events", "publish": "events",
}


def stage_table(statuses: dict[str, CameraStatus]) -> str:
    """Milliseconds per frame in each stage, per camera (queue_wait: sampled until the detector took it)."""
    stages = list(STAGE_PER)
    rows = [["camera", *stages]]
    for cid, st in sorted(statuses.items()):
        row = [cid]
        for stage in stages:
            n = getattr(st, STAGE_PER[stage]) or 0
            secs = st.stage_s.get(stage)
            row.append("-" if secs is None or n == 0 else f"{secs * 1000 / n:.2f}")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def status_table(statuses: dict[str, CameraStatus]) -> str:
    """One line per camera; a camera without a detector says ``detector unavailable`` and why (the full
    reason in ``last error`` when the input itself has none)."""
    cols = ["camera", "state", "detector", "in fps", "dec fps", "det fps", "skip fps", "inf ms", "reconn", "errors",
            "last error"]
    rows = [cols]
    for cid, st in sorted(statuses.items()):
        def f(key: str, fmt: str = "{:.1f}", st: CameraStatus = st) -> str:
            v = getattr(st, key)
            return "-" if v is None else fmt.format(v)
        unavailable = st.detector == "unavailable"
        # the input's own error first (cut short); else the detector's reason in full (where to put the file)
        error = st.last_error[:50] or (f"detector unavailable: {st.detector_error}" if unavailable else "")
        rows.append([cid, st.state, "unavailable" if unavailable else st.detector, f("packets_fps"),
                     f("decoded_fps"), f("detected_fps"), f("skipped_fps"), f("inference_ms_p50"),
                     f("reconnects", "{:d}"), f("decode_errors", "{:d}"), error])
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
