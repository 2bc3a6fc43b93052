"""``sharpeye``: one command for everything (run, check, detect, events, ...)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from cli.args import (
    EXIT_CODES,
    EXIT_FAILURE,
    EXIT_USAGE,
    add_bus_args,
    add_command,
    add_config_arg,
    add_json_arg,
    bus_url_or_exit,
    default_config,
    load_or_exit,
    validate_config,
)
from pipeline.analyse.models import DEFAULT_MODEL, MODELS_DIR_ENV, OFFLINE_ENV, ModelUnavailable
from pipeline.config import ConfigError
from pipeline.config.secrets import install_log_scrubber, scrub


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 with a one-line summary, or 2 with every problem; `run` validates with the same function."""
    try:
        cfg = validate_config(args.config)
    except ConfigError as e:
        for line in e.problems:
            print(scrub(line), file=sys.stderr)
        return EXIT_USAGE
    cams = cfg.cameras
    enabled = sum(1 for c in cams.values() if c.enabled)
    rules = sum(len(c.rules) for c in cams.values())
    _warn_loose_modes(cfg.data_path())
    print(scrub(f"{args.config}: OK: {len(cams)} cameras ({enabled} enabled), {len(cfg.grid_cells)} grid cells, "
                f"{rules} rules, model {cfg.model.name}, redis "
                f"{'embedded' if cfg.redis_url is None else 'external ' + cfg.redis_url}"))
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from pipeline.analyse.detect import Detector, iter_media
    from pipeline.analyse.models import resolve_model

    path, manifest = resolve_model(args.model)
    det = Detector(path, manifest, threads=args.threads, score_threshold=args.score)
    n = 0
    for index, pts, img in iter_media(args.source, every=args.every):
        dets = det.detect(img)
        rec = {"frame": index, "pts": round(float(pts), 3), "detections": dets.to_list()}
        if args.json:
            print(json.dumps(rec), flush=True)
        else:
            labels = ", ".join(f"{d['label']} {d['score']:.2f}" for d in rec["detections"]) or "-"
            print(f"frame {index:6d}  {pts:8.2f}s  {labels}", flush=True)
        n += 1
        if args.max_frames and n >= args.max_frames:
            break
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    from pipeline.publish import bus

    url = args.redis
    cfg = None
    if url is None:
        cfg = load_or_exit(args.config)
        url = bus_url_or_exit(cfg, None)
    keys = bus.BusKeys(cfg.bus.prefix if cfg else args.prefix)
    r = bus.connect(url)

    def show(msg: dict) -> None:
        if args.json:
            print(json.dumps(msg, ensure_ascii=False), flush=True)
        elif msg.get("type") == "alert":
            print(f"{msg['stream_id']}  {msg['phase']:6s} {msg['camera']['id']:12s} {msg['rule']['kind']:12s} "
                  f"{','.join(msg['labels']):10s} score {msg['score']:.2f}  {msg['alert_id']}", flush=True)
        else:
            print(f"{msg['stream_id']}  camera {msg['camera']['id']} {msg['phase']}: {msg.get('detail', '')}",
                  flush=True)

    shown = 0
    for _, msg in bus.latest_events(r, keys, args.count):
        show(msg)
        shown += 1
    if args.follow:
        try:
            for _, msg in bus.follow_events(r, keys):
                show(msg)
        except KeyboardInterrupt:
            pass
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from pipeline.publish import bus
    from pipeline.publish.status import CameraStatus, stage_table, status_table

    cfg = load_or_exit(args.config)
    url = bus_url_or_exit(cfg, args.redis)
    st = bus.camera_statuses(bus.connect(url), bus.BusKeys(cfg.bus.prefix))
    for cid, cam in cfg.cameras.items():  # configured cameras no worker has reported yet
        st.setdefault(cid, CameraStatus(cid, state="disabled" if not cam.enabled else "unknown"))
    if args.json:
        print(json.dumps({cid: s.to_dict() for cid, s in st.items()}, indent=2, ensure_ascii=False))
    elif args.stages:
        print(stage_table(st))
    else:
        print(status_table(st))
    return 0


def _warn_loose_modes(data_dir: os.PathLike[str]) -> None:
    """Warn (stderr) about anything under the data directory other users may read."""
    from pathlib import Path

    from pipeline.runtime.filemodes import loose_modes

    for line in loose_modes(Path(data_dir)):
        print(f"warning: {line}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.runtime.filemodes import secure_start
    from pipeline.runtime.supervisor import run

    cfg = load_or_exit(args.config, full=True)
    try:  # umask 077 before anything starts: databases, keys and media are the owner's only
        secure_start(cfg.data_path())
    except OSError as e:
        print(f"sharpeye run: {e}", file=sys.stderr)
        return 2
    _warn_loose_modes(cfg.data_path())
    return run(cfg, host=args.host, port=args.port)


def cmd_fetch_model(args: argparse.Namespace) -> int:
    """Into ``--dest``, else the folder the ``--config`` given names in ``model.path``, else the shared
    store; from ``--from FILE`` when given (checked against the manifest's sha256).  Prints the path."""
    from pathlib import Path

    from pipeline.analyse.models import fetch_model, load_manifest

    name = args.name
    dest = Path(args.dest) if args.dest else None
    if args.config is not None:
        cfg = load_or_exit(args.config)
        dest = dest or cfg.models_path()
        if name is None and not cfg.model.name.endswith((".onnx", ".json")):
            name = cfg.model.name
    try:
        manifest = load_manifest(name or DEFAULT_MODEL)
    except (FileNotFoundError, ValueError) as e:
        print(f"sharpeye fetch-model: {e}", file=sys.stderr)
        return EXIT_USAGE
    source = Path(args.source) if args.source else None
    print(fetch_model(manifest, dest_dir=dest, source_file=source))
    return 0


STORE = f"${MODELS_DIR_ENV}, else ~/.cache/sharpeye/models; a config's model.path when it sets one"
EPILOG = f"""{EXIT_CODES}

model store: $SHARPEYE_MODELS_DIR, else ~/.cache/sharpeye/models (a config's model.path when it sets one);
  without network, `sharpeye fetch-model --from FILE` installs a downloaded .onnx, and
  ${OFFLINE_ENV}=1 forbids downloading."""


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sharpeye", description="Sharp Eyes: video analytics for a duty command room. "
                                 "Every command and verb has its own --help.", epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log-level", default=os.environ.get("SHARPEYE_LOG", "INFO"),
                    help="log level: DEBUG, INFO, WARNING, ERROR (default $SHARPEYE_LOG or INFO)")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("check", help="validate a config; exit 2 with FILE:LINE: messages when invalid",
                       description="Validate a config as `sharpeye run` does: the schema, the files it names and "
                       "the rules' labels against the model's classes. Exit 0 with a summary, 2 with every problem.")
    p.add_argument("config", nargs="?", default=default_config(),
                   help="config file (default: $SHARPEYE_CONFIG or ./streams.yaml)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("run", help="start Redis (if embedded), the stream workers and the dashboard",
                       description="Start Redis (when the config has no redis_url), the stream workers, the "
                       "archiver and the dashboard, and keep them running until interrupted.")
    add_config_arg(p)
    p.add_argument("--host", help="dashboard address (default from config: 127.0.0.1)")
    p.add_argument("--port", type=int, help="dashboard port (default from config: 8080)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("detect", help="run the detector over an image or a video file",
                       description="Run the detector over an image or a video file and print what it finds. "
                       f"A model name is read from the model store ({STORE}).")
    p.add_argument("source", help="image or video file")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"manifest name or .onnx path (default {DEFAULT_MODEL})")
    p.add_argument("--every", type=int, default=1, help="process every Nth frame (default 1)")
    p.add_argument("--score", type=float, default=0.3, help="minimum score (default 0.3)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    p.add_argument("--max-frames", type=int, default=0, help="stop after N processed frames (0: all)")
    add_json_arg(p, "one JSON object per processed frame")
    p.set_defaults(func=cmd_detect)

    p = add_command(sub, "events", cmd_events, "print events from the bus",
                    "Print the latest alerts and camera events from the bus; --follow keeps going.", config=False)
    add_bus_args(p)
    p.add_argument("--prefix", default="sharpeye", help="key prefix when --redis is given without config")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    p.add_argument("--count", "-n", type=int, default=20, help="how many recent events first (default 20)")
    add_json_arg(p, "one JSON object per line")

    p = sub.add_parser("status", help="every camera's state, fps, skipped fps, inference ms, reconnects",
                       description="Every configured camera's state as its worker last reported it on the bus.")
    add_bus_args(p)
    add_json_arg(p, "one JSON document")
    p.add_argument("--stages", action="store_true", help="milliseconds per frame in each pipeline stage")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("fetch-model", help="install a model's weights into the model store, verifying the sha256",
                       description=f"Install a model's weights into the model store ({STORE}) and print "
                       "the file's path. The file comes from --from FILE, else the asset mirror "
                       "($SHARPEYE_ASSET_MIRROR/models), else the manifest's url (10 s timeout; never with "
                       f"${OFFLINE_ENV}=1); it is installed only when its sha256 matches the manifest.")
    p.add_argument("name", nargs="?", default=None,
                   help=f"manifest name (default: the --config's model, else {DEFAULT_MODEL})")
    p.add_argument("--from", dest="source", metavar="FILE",
                   help="install this file (e.g. downloaded on another machine) after checking its sha256")
    p.add_argument("--config", "-c", default=None,
                   help="install where this config's model.path says (default: the shared store)")
    p.add_argument("--dest", help="directory for the weights (default: the model store)")
    p.set_defaults(func=cmd_fetch_model)

    from cli.preview import add_parser as add_preview
    from cli.replay import add_parser as add_replay
    add_replay(sub)
    add_preview(sub)
    from cli.bench import add_parser as add_bench
    add_bench(sub)
    from cli.shift import add_parser as add_shift  # `sharpeye bench shift`: a verb of bench
    add_shift(sub.choices["bench"])
    from cli.export import add_parser as add_export  # light; the export is imported when it runs
    add_export(sub)
    from cli.plates import add_parser as add_plates
    add_plates(sub)
    from cli.users import add_parser as add_users
    add_users(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    install_log_scrubber()  # before anything logs: no secret reaches a log line or a traceback
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except ModelUnavailable as e:  # one line: where the model was looked for and how to install it
        print(scrub(f"sharpeye {args.cmd}: {e}"), file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
