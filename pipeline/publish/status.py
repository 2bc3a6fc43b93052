"""Health: every camera's state and counters as Prometheus metrics and as a status table.

Workers write their cameras' status to the bus (``P:cameras``); this module reads those
statuses, so ``/metrics`` on the dashboard and ``sharpeye status`` show every worker's
cameras in one place, and a camera whose worker died reads as offline.
"""

from __future__ import annotations

from typing import Any, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, StateSetMetricFamily

STATES = ("connecting", "streaming", "stalled", "backoff", "stopped", "offline")

GAUGES = {  # status field → (metric name, help)
    "packets_fps": ("sharpeye_camera_input_fps", "Packets per second received from the detect input."),
    "decoded_fps": ("sharpeye_camera_decoded_fps", "Frames per second decoded."),
    "detected_fps": ("sharpeye_camera_detected_fps", "Frames per second that went through the detector."),
    "skipped_fps": ("sharpeye_camera_skipped_fps",
                    "Sampled frames per second dropped because the detector was behind."),
    "inference_ms_p50": ("sharpeye_camera_inference_ms", "Median detector time per frame (ms)."),
    "queue_depth": ("sharpeye_camera_queue_depth", "Frames waiting for the detector."),
    "alert_latency_s_p50": ("sharpeye_camera_alert_latency_seconds", "Median time from frame to event on the bus."),
}
COUNTERS = {
    "reconnects": ("sharpeye_camera_reconnects", "Reconnects of the detect input."),
    "decode_errors": ("sharpeye_camera_decode_errors", "Packets that failed to decode."),
    "stalls": ("sharpeye_camera_stalls", "Times the input went silent for watchdog.stall_s."),
    "skipped": ("sharpeye_camera_skipped_frames", "Sampled frames dropped because the detector was behind."),
    "detected": ("sharpeye_camera_detected_frames", "Frames that went through the detector."),
    "events": ("sharpeye_camera_events", "Messages published to the bus."),
    "recorded_bytes": ("sharpeye_camera_recorded_bytes", "Bytes written to recordings."),
}


class _StatusCollector:
    def __init__(self, statuses: dict[str, dict[str, Any]]):
        self.statuses = statuses

    def collect(self) -> Iterable[Any]:
        for field, (name, doc) in GAUGES.items():
            g = GaugeMetricFamily(name, doc, labels=["camera"])
            for cid, st in sorted(self.statuses.items()):
                if st.get(field) is not None:
                    g.add_metric([cid], float(st[field]))
            yield g
        for field, (name, doc) in COUNTERS.items():
            c = CounterMetricFamily(name, doc, labels=["camera"])
            for cid, st in sorted(self.statuses.items()):
                if st.get(field) is not None:
                    c.add_metric([cid], float(st[field]))
            yield c
        s = StateSetMetricFamily("sharpeye_camera_state", "State of the camera's detect input.", labels=["camera"])
        up = GaugeMetricFamily("sharpeye_camera_online", "1 when the camera is streaming and its worker alive.",
                               labels=["camera"])
        for cid, st in sorted(self.statuses.items()):
            s.add_metric([cid], {name: st.get("state") == name for name in STATES})
            up.add_metric([cid], 1.0 if st.get("online") else 0.0)
        yield s
        yield up


def metrics_text(statuses: dict[str, dict[str, Any]]) -> bytes:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_StatusCollector(statuses))  # type: ignore[arg-type]
    return generate_latest(reg)


def status_table(statuses: dict[str, dict[str, Any]], names: dict[str, str] | None = None) -> str:
    cols = ["camera", "state", "in fps", "dec fps", "det fps", "skip fps", "inf ms", "reconn", "errors", "last error"]
    rows = [cols]
    for cid, st in sorted(statuses.items()):
        def f(key: str, fmt: str = "{:.1f}") -> str:
            v = st.get(key)
            return "-" if v is None else fmt.format(v)
        rows.append([cid, str(st.get("state", "?")), f("packets_fps"), f("decoded_fps"), f("detected_fps"),
                     f("skipped_fps"), f("inference_ms_p50"), f("reconnects", "{:d}"), f("decode_errors", "{:d}"),
                     (st.get("last_error") or "")[:50]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
