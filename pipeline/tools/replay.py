"""``sharpeye replay``: the live analytics run over a recorded video, as fast as the machine allows.

Why: an engineer tuning zones, rules and motion gating needs to see which alerts a piece of
footage *would* have raised, in seconds rather than in real time, and the figures must be the
ones the live camera will give.  So replay runs exactly the live path of one camera:

    decode → sample at detect_fps by timestamp (``source.Sampler``) → motion gate
    (``CameraAnalytics.wants_detection``) → detector → ``CameraAnalytics.process``
    (tracker → rules → alert lifecycle) → ``events.alert_message``

and yields the very messages the worker would publish on the bus.  ``exhaustive=True`` runs the
detector on *every decoded frame* with no sampling and no gating: the reference that
``scripts/quality.py`` compares the normal mode against.

Times: a frame's time is ``start + pts`` (pts in seconds, as PyAV presents them).  ``start``
defaults to the wall clock when the replay starts, so alert ids and times look like live ones;
pass ``start`` (``--start``) to make a replay reproducible, and to choose the wall clock at which
rule schedules are evaluated (the footage "happens" from that moment on).

Decoding uses PyAV's frame threading.  As in the worker, the motion gate reads the luma plane
straight from the decoder's buffer and only frames the detector gets are converted to BGR (the
conversion costs about as much as decoding).  Idle mode (keyframe-only decoding while the
picture is still) is not emulated: replay decodes every frame, so an idle camera's wake-up
delay of up to one GOP does not show here.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.analyse.camera import CameraAnalytics
from pipeline.analyse.detect import Detector
from pipeline.config import Config, load_config
from pipeline.ingest.source import SampledFrame, Sampler
from pipeline.publish.publisher import ListSink, Publisher


class ReplayError(ValueError):
    """A replay that cannot start (unknown camera, unreadable video); the message says why."""


@dataclass
class ReplayStats:
    """Counters of one replay, filled in while it runs; complete once the iterator is exhausted."""

    camera_id: str = ""
    video: str = ""
    mode: str = ""  # "normal" or "exhaustive"
    start: float = 0.0  # epoch seconds that pts 0 maps to
    decoded: int = 0  # frames that came off the decoder
    sampled: int = 0  # frames the sampler picked (all of them in exhaustive mode)
    detected: int = 0  # frames that went through the detector
    messages: int = 0  # alert messages yielded (new + update + end)
    alerts: int = 0  # distinct alerts (new messages)
    reasons: Counter[str] = field(default_factory=Counter)  # gate decisions by reason
    video_s: float = 0.0  # pts span of the decoded frames
    wall_s: float = 0.0  # from the first decode to the last frame, model loading excluded
    width: int = 0
    height: int = 0

    @property
    def detector_share(self) -> float:
        """Share of decoded frames that went through the detector (the cost that matters)."""
        return self.detected / self.decoded if self.decoded else 0.0

    @property
    def fps(self) -> float:
        """Decoded frames per wall-clock second."""
        return self.decoded / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The ``{"type": "stats", ...}`` record of ``--stats``."""
        return {
            "type": "stats", "camera": self.camera_id, "video": self.video, "mode": self.mode,
            "start": round(self.start, 3), "width": self.width, "height": self.height,
            "decoded": self.decoded, "sampled": self.sampled, "detected": self.detected,
            "detector_share": round(self.detector_share, 4), "reasons": dict(sorted(self.reasons.items())),
            "alerts": self.alerts, "messages": self.messages, "video_s": round(self.video_s, 3),
            "wall_s": round(self.wall_s, 3), "fps": round(self.fps, 1),
            "speed": round(self.video_s / self.wall_s, 2) if self.wall_s > 0 else None,
        }

    def summary(self) -> str:
        """One readable paragraph for stderr."""
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items())) or "-"
        speed = f"{self.video_s / self.wall_s:.1f}x real time" if self.wall_s > 0 else "-"
        return (f"replay {self.mode} {self.camera_id}: {self.decoded} frames decoded, "
                f"{self.sampled} sampled, "
                f"{self.detected} detected ({self.detector_share:.1%} of decoded); gate: {reasons}; "
                f"{self.alerts} alerts, {self.messages} messages; {self.video_s:.1f} s of video in "
                f"{self.wall_s:.1f} s ({self.fps:.0f} fps, {speed})")


# --------------------------------------------------------------------------- helpers


def pick_camera(cfg: Config, camera_id: str | None) -> str:
    """The camera to replay as: the named one, else the config's only camera."""
    if camera_id is not None:
        if camera_id not in cfg.cameras:
            raise ReplayError(f"camera {camera_id!r} is not in the config "
                              f"(cameras: {', '.join(cfg.cameras)})")
        return camera_id
    if len(cfg.cameras) != 1:
        raise ReplayError(f"the config has {len(cfg.cameras)} cameras ({', '.join(cfg.cameras)}); "
                          "name one with --camera")
    return next(iter(cfg.cameras))


def config_tz(cfg: Config) -> dt.tzinfo | None:
    """The zone schedules are read in (kept for scripts; see `Config.tzinfo`)."""
    return cfg.tzinfo()


def parse_start(text: str, tz: dt.tzinfo | None) -> float:
    """ISO 8601 → epoch seconds; a time without offset is read in the config's time zone."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ReplayError(f"--start {text!r} is not an ISO 8601 time "
                          "(e.g. 2024-05-01T22:30:00+08:00)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz) if tz else when.astimezone()
    return when.timestamp()


def replay_input(config: str | Path, camera: str | None, start: str | None, video: str | Path,
                 what: str = "video") -> tuple[Config, str, dt.tzinfo | None, float]:
    """(config, camera, time zone, start) of a replay of ``video``, checked before any decoding starts:
    ``ConfigError`` for the config, ``ReplayError`` (one sentence) for the camera, the start or a missing
    ``what``.  ``start`` None: now."""
    cfg = load_config(config)
    cid = pick_camera(cfg, camera)
    tz = config_tz(cfg)
    t0 = parse_start(start, tz) if start else time.time()
    if not Path(video).is_file():
        raise ReplayError(f"{what} not found: {video}")
    return cfg, cid, tz, t0


# --------------------------------------------------------------------------- the replay


def run_replay(cfg: Config, video: str | Path, camera_id: str | None = None, *, exhaustive: bool = False,
               start: float | None = None, snapshots: str | Path | None = None,
               detector: Detector | None = None,
               stats: ReplayStats | None = None) -> Iterator[dict[str, Any]]:
    """Yield the bus messages (``events.alert_message``) the camera would publish for this video.

    ``stats``: pass a fresh ``ReplayStats()`` to read the counters once the iterator is
    exhausted; pass a ``detector`` to share one between replays (it costs a second
    to load).  ``snapshots``: a folder to write alert snapshots to, as the worker writes them
    under data_dir; without it messages carry ``snapshot: null``.  Open alerts are ended
    (flushed) at the end of the video, at the last frame's time.
    """
    import av
    import av.error

    cid = pick_camera(cfg, camera_id)
    cam = cfg.cameras[cid]
    path = Path(video)
    if not path.is_file():
        raise ReplayError(f"video not found: {path}")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise ReplayError(f"cannot open {path}: {e}") from None
    with container:
        if not container.streams.video:
            raise ReplayError(f"{path}: no video stream")
        det = detector or Detector.from_config(cfg)
        t0 = time.time() if start is None else float(start)
        st = stats if stats is not None else ReplayStats()
        st.camera_id, st.video, st.start = cid, str(path), t0
        st.mode = "exhaustive" if exhaustive else "normal"
        analytics = CameraAnalytics(cid, cam, cfg.camera_alerts(cid), list(det.names), config_tz(cfg))
        sampler = Sampler(cam.detect_fps)
        # the live worker's publisher, with a list instead of the bus: the same snapshots and messages
        publisher = Publisher(cfg, ListSink(), Path(snapshots) if snapshots is not None else None)

        def messages(updates: list[Any], frame: SampledFrame | None) -> Iterator[dict[str, Any]]:
            for upd in updates:
                st.messages += 1
                st.alerts += upd.phase == "new"
                yield publisher.alert(cid, upd, frame)

        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        began = time.perf_counter()
        first_pts: float | None = None
        last_t: float | None = None
        try:
            for frame in container.decode(vs):
                if frame.pts is None:
                    continue
                pts = float(frame.time) if frame.time is not None else float(frame.pts * vs.time_base)
                st.decoded += 1
                first_pts = pts if first_pts is None else first_pts
                st.video_s = pts - first_pts
                if not exhaustive and not sampler.take(pts):
                    continue
                st.sampled += 1
                st.width, st.height = frame.width, frame.height
                last_t = t = t0 + pts
                # as the worker does: the gate reads the luma plane, only detected frames become BGR
                sf = SampledFrame(cid, None, pts, t, st.decoded, frame)
                if not exhaustive:
                    luma, limited = sf.gray()
                    if not analytics.wants_detection(luma, t, limited):
                        yield from messages(analytics.skip(t), sf)
                        continue
                st.detected += 1
                dets = det.detect(sf.image)
                yield from messages(analytics.process(dets, t, sf.size).updates, sf)
        finally:  # also when the consumer stops early: the counters so far stay readable
            st.wall_s = time.perf_counter() - began
            st.reasons = (Counter({"exhaustive": st.detected}) if exhaustive
                          else Counter(analytics.gate.counts))
    if last_t is not None:
        yield from messages(analytics.flush(last_t), None)


# --------------------------------------------------------------------------- the command


def format_message(msg: dict[str, Any], start: float, tz: dt.tzinfo | None) -> str:
    """A readable line: wall time, offset into the video, phase, rule, labels, tracks, alert id."""
    when = dt.datetime.fromtimestamp(msg["time"], tz).isoformat(timespec="milliseconds")
    rule = msg["rule"]
    labels = ",".join(msg["labels"]) or "-"
    tracks = ",".join(str(i) for i in msg["track_ids"]) or "-"
    return (f"{when}  +{msg['time'] - start:8.2f}s  {msg['phase']:6s} {rule['kind']}:{rule['id']:14s} "
            f"{labels:10s} tracks {tracks:8s} score {msg['score']:.2f}  {msg['alert_id']}")
