"""Does motion gating cost alerts?  Normal replay against the exhaustive reference, on one clip.

    .venv/bin/python scripts/quality.py CLIP --config tests/quality.yaml [--camera ID] [--json]
        [--no-gate] [--motion KEY=VALUE ...] [--reference FILE]

Runs ``sharpeye replay`` twice over CLIP with the same start time: once as the live camera would
(sampled at detect_fps, motion-gated) and once exhaustively (the detector on every decoded
frame, no gating).  The exhaustive alerts are the reference: what the rules would report if
compute were free.  An alert of the normal run *matches* a reference alert when it is of the
same rule and the two time intervals overlap, the normal one being allowed to start up to
``--late`` seconds (default 1) after the reference one ends; each alert matches at most once.

Reported: alert recall (matched reference alerts / reference alerts), overall and per rule kind
(a busy scene has many more line crossings than loitering alerts: a gate that misses every
loitering alert could still score 95 % overall), extra alerts (normal alerts matching none), the
share of decoded frames that went through the detector in the normal run, and the median and
maximum start delay of matched alerts.  Exit status 0 when the targets hold (recall >=
--min-recall for every rule kind, detector share <= --max-share), 1 when not, 2 on a usage error.

``--no-gate`` runs the normal mode with motion gating off (the detector on every sampled frame):
what sampling at detect_fps alone costs, so a miss can be told apart from a miss of the gate.
``--motion KEY=VALUE`` changes a motion gating setting for the normal run (tuning without
editing the config; the report lists the settings used).  ``--reference FILE`` keeps the
exhaustive run's alerts and counters in FILE and reuses them when the clip (name, size, mtime),
the camera's config (motion and idle settings aside), the start time, the model and the code of
the detector, tracker, rules and alert lifecycle are unchanged: it halves the time of tuning
runs.  Reported figures should come from runs without it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import statistics
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipeline.analyse.detect import Detector
from pipeline.config import Config, ConfigError, MotionConfig
from pipeline.tools.replay import ReplayError, ReplayStats, replay_input, run_replay

MIN_RECALL = 0.98
MAX_SHARE = 0.30
LATE_S = 1.0


@dataclass(frozen=True)
class Episode:
    """One alert, from its ``new`` to its ``end`` message; times relative to the replay start."""

    alert_id: str
    rule_id: str
    start: float
    end: float
    kind: str = ""


def episodes(messages: Iterable[dict[str, Any]], start: float) -> list[Episode]:
    """Alerts of a replay, ordered by start; an alert never ended runs to its last message."""
    first: dict[str, dict[str, Any]] = {}
    last_end: dict[str, float] = {}
    for m in messages:
        if m.get("type") != "alert":
            continue
        first.setdefault(m["alert_id"], m)
        last_end[m["alert_id"]] = m["end_time"] if m.get("end_time") is not None else m["time"]
    out = [Episode(aid, m["rule"]["id"], m["start_time"] - start, last_end[aid] - start, m["rule"].get("kind", ""))
           for aid, m in first.items()]
    return sorted(out, key=lambda e: e.start)


def match(reference: list[Episode], normal: list[Episode],
          late_s: float = LATE_S) -> list[tuple[Episode, Episode | None]]:
    """Pair each reference alert with at most one normal alert (same rule, overlapping in time).

    Greedy in reference order, taking the candidate whose start is closest: alerts of one rule
    follow one another without overlapping, so greedy and optimal matching agree.
    """
    used: set[str] = set()
    pairs: list[tuple[Episode, Episode | None]] = []
    for ref in reference:
        cands = [n for n in normal if n.alert_id not in used and n.rule_id == ref.rule_id
                 and n.start <= ref.end + late_s and n.end >= ref.start]
        best = min(cands, key=lambda n: abs(n.start - ref.start), default=None)
        if best is not None:
            used.add(best.alert_id)
        pairs.append((ref, best))
    return pairs


def by_kind(ref: list[Episode], norm: list[Episode],
            pairs: list[tuple[Episode, Episode | None]]) -> dict[str, dict[str, Any]]:
    """Reference alerts, matched ones, recall and extra normal alerts per rule kind."""
    out: dict[str, dict[str, Any]] = {}
    used = {n.alert_id for _, n in pairs if n is not None}
    for kind in sorted({e.kind for e in ref} | {e.kind for e in norm}):
        kp = [(r, n) for r, n in pairs if r.kind == kind]
        hit = sum(n is not None for _, n in kp)
        out[kind] = {"reference": len(kp), "matched": hit,
                     "recall": round(hit / len(kp), 4) if kp else None,
                     "normal": sum(e.kind == kind for e in norm),
                     "extra": sum(e.kind == kind and e.alert_id not in used for e in norm)}
    return out


def report(clip: str, camera: str, ref: list[Episode], norm: list[Episode],
           pairs: list[tuple[Episode, Episode | None]], normal_stats: ReplayStats,
           ref_stats: ReplayStats) -> dict[str, Any]:
    """The figures, JSON-ready."""
    matched = [(r, n) for r, n in pairs if n is not None]
    used = {n.alert_id for _, n in matched}
    delays = [n.start - r.start for r, n in matched]
    return {
        "clip": clip, "camera": camera,
        "reference_alerts": len(ref), "normal_alerts": len(norm), "matched": len(matched),
        "recall": round(len(matched) / len(ref), 4) if ref else None,
        "by_kind": by_kind(ref, norm, pairs),
        "extra_alerts": len(norm) - len(used),
        "missed": [{"start": round(r.start, 2), "end": round(r.end, 2), "rule": r.rule_id}
                   for r, n in pairs if n is None],
        "extra": [{"start": round(n.start, 2), "end": round(n.end, 2), "rule": n.rule_id}
                  for n in norm if n.alert_id not in used],
        "start_delay_s": {"median": round(statistics.median(delays), 3) if delays else None,
                          "max": round(max(delays), 3) if delays else None},
        "detector_share": round(normal_stats.detector_share, 4),
        "sampled_share": (round(normal_stats.sampled / normal_stats.decoded, 4)
                          if normal_stats.decoded else None),
        "normal": normal_stats.to_dict(), "reference": ref_stats.to_dict(),
        "alerts": [{"rule": r.rule_id, "reference": [round(r.start, 2), round(r.end, 2)],
                    "normal": [round(n.start, 2), round(n.end, 2)] if n else None} for r, n in pairs],
    }


def targets_met(rep: dict[str, Any], min_recall: float, max_share: float) -> bool:
    """Recall of every rule kind (1.0 when the reference has none) and detector share within the targets."""
    recalls = [1.0 if rep["recall"] is None else rep["recall"]]
    recalls += [k["recall"] for k in rep.get("by_kind", {}).values() if k["recall"] is not None]
    return min(recalls) >= min_recall and rep["detector_share"] <= max_share


def print_report(rep: dict[str, Any], min_recall: float, max_share: float) -> None:
    """A readable report on stdout."""
    recall = "n/a (no reference alerts)" if rep["recall"] is None else f"{rep['recall']:.1%}"
    d = rep["start_delay_s"]
    delay = "-" if d["median"] is None else f"median {d['median']:.2f} s, max {d['max']:.2f} s"
    n = rep["normal"]
    print(f"{rep['clip']} as camera {rep['camera']}" + (" (motion gating off)" if rep.get("no_gate") else ""))
    print(f"  reference (exhaustive): {rep['reference_alerts']} alerts, "
          f"detector on {rep['reference']['detected']} "
          f"frames, {rep['reference']['wall_s']:.1f} s")
    print(f"  normal:                 {rep['normal_alerts']} alerts, detector on {n['detected']} of "
          f"{n['decoded']} decoded frames ({n['sampled']} sampled), {n['wall_s']:.1f} s; gate: "
          + ", ".join(f"{k} {v}" for k, v in n["reasons"].items()))
    print(f"  alert recall:   {recall} ({rep['matched']}/{rep['reference_alerts']}), "
          f"target >= {min_recall:.0%}")
    for kind, k in rep.get("by_kind", {}).items():
        kr = "n/a" if k["recall"] is None else f"{k['recall']:.1%}"
        print(f"    {kind:14s} {kr:>6s} ({k['matched']}/{k['reference']}), extra {k['extra']}")
    print(f"  extra alerts:   {rep['extra_alerts']}")
    print(f"  detector share: {rep['detector_share']:.1%} of decoded frames, target <= {max_share:.0%} "
          f"(sampling alone: {rep['sampled_share']:.1%})")
    print(f"  start delay:    {delay}")
    for a in rep["alerts"]:
        r, m = a["reference"], a["normal"]
        found = f"normal {m[0]:7.2f}-{m[1]:7.2f} s" if m else "MISSED"
        print(f"    reference {r[0]:7.2f}-{r[1]:7.2f} s {a.get('rule', ''):14s} ->  {found}")
    for x in rep["extra"]:
        print(f"    extra     {x['start']:7.2f}-{x['end']:7.2f} s  ({x['rule']})")
    print("  targets " + ("met" if targets_met(rep, min_recall, max_share) else "NOT met"))


def with_motion(cfg: Config, cid: str, **changes: Any) -> Config:
    """The config with camera ``cid``'s motion settings changed (validated as the YAML would be)."""
    cam = cfg.cameras[cid]
    motion = MotionConfig.model_validate({**cam.motion.model_dump(), **changes})
    return cfg.model_copy(update={"cameras": {**cfg.cameras, cid: cam.model_copy(update={"motion": motion})}})


def motion_changes(items: list[str]) -> dict[str, Any]:
    """``--motion KEY=VALUE`` pairs, values read as YAML scalars (0.6, true, 5)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in MotionConfig.model_fields:
            raise ReplayError(f"--motion {item!r}: expected KEY=VALUE with KEY one of "
                              f"{', '.join(MotionConfig.model_fields)}")
        out[key] = yaml.safe_load(value)
    return out


# the code the exhaustive reference depends on besides the config: a change invalidates a kept reference
_REFERENCE_CODE = ("detect.py", "models.py", "track.py", "rules.py", "alerts.py")


def reference_key(cfg: Config, cid: str, clip: str, start: float) -> str:
    """What the exhaustive run depends on, hashed: clip, camera config, start, model, analysis code.

    Motion gating and idle settings are left out: the exhaustive run neither gates nor idles.
    """
    st = Path(clip).stat()
    analyse = Path(__file__).resolve().parents[1] / "pipeline" / "analyse"
    code = hashlib.sha256(b"".join((analyse / f).read_bytes() for f in _REFERENCE_CODE)).hexdigest()
    raw = json.dumps({"clip": [Path(clip).resolve().name, st.st_size, st.st_mtime_ns],
                      "camera": cfg.cameras[cid].model_dump(mode="json", exclude={"motion", "idle"}),
                      "alerts": cfg.camera_alerts(cid).model_dump(mode="json"),
                      "model": cfg.model.model_dump(mode="json"), "start": start, "code": code},
                     sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def load_reference(path: str, key: str) -> tuple[list[Episode], ReplayStats] | None:
    """A kept exhaustive run, if FILE holds one made under the same key."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if doc.get("key") != key:
        return None
    d = doc["stats"]
    st = ReplayStats(camera_id=d["camera"], video=d["video"], mode=d["mode"], start=d["start"],
                     decoded=d["decoded"], sampled=d["sampled"], detected=d["detected"],
                     messages=d["messages"], alerts=d["alerts"], reasons=Counter(d["reasons"]),
                     video_s=d["video_s"], wall_s=d["wall_s"], width=d["width"], height=d["height"])
    return [Episode(**e) for e in doc["episodes"]], st


def save_reference(path: str, key: str, eps: list[Episode], st: ReplayStats) -> None:
    Path(path).write_text(json.dumps({"key": key, "stats": st.to_dict(),
                                      "episodes": [dataclasses.asdict(e) for e in eps]}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Alert recall and detector share of motion-gated replay "
                                 "against the exhaustive reference.")
    ap.add_argument("clip", help="video file")
    ap.add_argument("--config", "-c", required=True, help="config with the camera's zones and rules")
    ap.add_argument("--camera", help="camera id (default: the config's only camera)")
    ap.add_argument("--start", help="wall clock of pts 0, ISO 8601 (default: now); both runs use it")
    ap.add_argument("--late", type=float, default=LATE_S, help=f"seconds a matching normal alert may start "
                    f"after the reference one ends (default {LATE_S})")
    ap.add_argument("--min-recall", type=float, default=MIN_RECALL, help=f"target (default {MIN_RECALL})")
    ap.add_argument("--max-share", type=float, default=MAX_SHARE, help=f"target (default {MAX_SHARE})")
    ap.add_argument("--json", action="store_true", help="print the report as one JSON object")
    ap.add_argument("--no-gate", action="store_true", help="normal run with motion gating off (the detector "
                    "on every sampled frame): what sampling alone costs")
    ap.add_argument("--motion", action="append", default=[], metavar="KEY=VALUE",
                    help="override a motion gating setting of the camera for the normal run (repeatable)")
    ap.add_argument("--reference", metavar="FILE", help="keep the exhaustive run in FILE and reuse it while "
                    "clip, camera config, start, model and tracker/rules/alerts code are unchanged")
    args = ap.parse_args(argv)
    try:
        cfg, cid, _, start = replay_input(args.config, args.camera, args.start, args.clip, what="clip")
        changes = motion_changes(args.motion)
        if args.no_gate:
            changes["enabled"] = False
        run_cfg = with_motion(cfg, cid, **changes) if changes else cfg
    except ValidationError as e:
        print(f"quality: --motion: {e}", file=sys.stderr)
        return 2
    except ConfigError as e:
        print("\n".join(e.problems), file=sys.stderr)
        return 2
    except ReplayError as e:
        print(f"quality: {e}", file=sys.stderr)
        return 2
    detector = Detector.from_config(cfg)
    runs: dict[str, tuple[list[Episode], ReplayStats]] = {}
    key = reference_key(cfg, cid, args.clip, start)
    cached = load_reference(args.reference, key) if args.reference else None
    for mode in ("normal", "exhaustive"):
        if mode == "exhaustive" and cached is not None:
            runs[mode] = cached
            continue
        st = ReplayStats()
        msgs = list(run_replay(run_cfg, args.clip, cid, exhaustive=mode == "exhaustive", start=start,
                               detector=detector, stats=st))
        runs[mode] = (episodes(msgs, start), st)
    if args.reference and cached is None:
        save_reference(args.reference, key, *runs["exhaustive"])
    (norm, nst), (ref, rst) = runs["normal"], runs["exhaustive"]
    rep = report(args.clip, cid, ref, norm, match(ref, norm, args.late), nst, rst)
    rep["no_gate"] = args.no_gate
    rep["motion"] = run_cfg.cameras[cid].motion.model_dump(mode="json", exclude={"masks"})
    rep["reference_reused"] = cached is not None
    if args.json:
        print(json.dumps(rep))
    else:
        print_report(rep, args.min_recall, args.max_share)
    return 0 if targets_met(rep, args.min_recall, args.max_share) else 1


if __name__ == "__main__":
    sys.exit(main())
