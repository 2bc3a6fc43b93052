"""``sharpeye export``: cut, verify, hold and release evidence exports from the command line.

    sharpeye export --camera ID [--camera ID ...] --start T --end T [-o DIR] [--precise] [--zip] [--case NAME]
    sharpeye export --alert ALERT_ID [...]      the alert's camera, from its pre-roll to its post-roll
    sharpeye export verify DIR|ZIP [--key B64] [--recordings]  exit 0 when every hash and signature holds, else 1
    sharpeye export key                         this installation's public signing key
    sharpeye export release ID [ID ...]         let retention delete an export's recordings again
    sharpeye export release --case NAME         ... every export of a case
    sharpeye export list                        held exports and cases

T is ISO 8601 with or without an offset (without: the config's time zone) or epoch seconds.  Exit
status: 0 done, 1 failed while writing (disk full) or verification failed, 2 a request that cannot
be served (no recording in the range, unknown camera, unsafe name, unknown alert, bad time).
Imports here are light; the work is imported when a subcommand runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.args import NO_BUS, add_config_arg, bus_url, load_or_exit
from pipeline.config import Config, ConfigError, load_config
from pipeline.config.secrets import scrub


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="export cameras' recordings over a time range with a signed evidence manifest",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arg(p)
    p.add_argument("--camera", action="append", default=[], metavar="ID", help="camera id (repeat for several)")
    p.add_argument("--start", metavar="T", help="start: ISO 8601 (config time zone when no offset) or epoch s")
    p.add_argument("--end", metavar="T", help="end: ISO 8601 or epoch seconds")
    p.add_argument("--alert", metavar="ALERT_ID", help="export this alert's camera and clip range (from the bus)")
    p.add_argument("--redis", help="bus URL for --alert (default: the config's, or the running embedded one)")
    p.add_argument("-o", "--output", metavar="DIR", help="folder to make the export in (default data_dir/exports)")
    p.add_argument("--precise", action="store_true", help="re-encode the first GOP so files start within one frame")
    p.add_argument("--zip", action="store_true", help="one ZIP (with --case: the whole case as one ZIP)")
    p.add_argument("--case", metavar="NAME", help="add the export to this case (created when new)")
    p.add_argument("--description", help="the case's description (with --case)")
    p.add_argument("--user", help="who exports (default: the operating-system user)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_export)
    verbs = p.add_subparsers(dest="export_cmd", metavar="{verify,key,release,list}")

    v = verbs.add_parser("verify", help="re-check hashes and signature of an export or case (folder or ZIP)")
    v.add_argument("path")
    v.add_argument("--key", help="the public key (base64) that must have signed it (default: this installation's, "
                                 "when the config is found)")
    v.add_argument("--recordings", action="store_true",
                   help="also hash the source segments still in the config's recordings and compare them")
    add_config_arg(v, verb=True)
    v.set_defaults(func=cmd_verify)

    k = verbs.add_parser("key", help="print this installation's public signing key (made on first use)")
    add_config_arg(k, verb=True)
    k.set_defaults(func=cmd_key)

    r = verbs.add_parser("release", help="release exports' holds: retention may delete their recordings again")
    r.add_argument("ids", nargs="*", metavar="ID", help="export id(s)")
    r.add_argument("--case", action="append", default=[], metavar="NAME",
                   help="release every export of this case (repeat for several)")
    add_config_arg(r, verb=True)
    r.set_defaults(func=cmd_release)

    lp = verbs.add_parser("list", help="held exports and cases")
    lp.add_argument("--json", action="store_true")
    add_config_arg(lp, verb=True)
    lp.set_defaults(func=cmd_list)


class _Bar:
    """The command line's progress bar (rich), on stderr and only on a terminal."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TimeRemainingColumn(), transient=True,
                                 disable=not sys.stderr.isatty())
        self.task: Any = None

    def start(self, total_bytes: int, cameras: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task(f"exporting {cameras} camera(s)", total=total_bytes)

    def advance(self, nbytes: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, nbytes)

    def stage(self, text: str) -> None:
        if self.task is not None:
            self.progress.update(self.task, description=text)

    def stop(self) -> None:
        self.progress.stop()


def cmd_export(args: argparse.Namespace) -> int:
    from pipeline.export.job import ExportError, ExportRequest, os_user, run_export
    from pipeline.export.times import parse_time

    cfg = load_or_exit(args.config)
    tz = cfg.tzinfo()
    alert = None
    cameras = list(args.camera)
    try:
        if args.alert:
            clip = _alert_clip(cfg, args)
            alert = clip.summary()
            cameras = cameras or [clip.camera]
            start = parse_time(args.start, tz) if args.start else clip.start
            end = parse_time(args.end, tz) if args.end else clip.end
        else:
            if not cameras or not args.start or not args.end:
                print("sharpeye export: give --camera, --start and --end, or --alert ALERT_ID", file=sys.stderr)
                return 2
            start, end = parse_time(args.start, tz), parse_time(args.end, tz)
    except ValueError as e:
        print(f"sharpeye export: {e}", file=sys.stderr)
        return 2
    if args.description and not args.case:
        print("sharpeye export: --description belongs to a case: add --case NAME", file=sys.stderr)
        return 2
    req = ExportRequest(cameras, start, end, Path(args.output) if args.output else None, args.precise, args.zip,
                        args.case, args.description, alert)
    bar = _Bar()
    try:
        result = run_export(cfg, req, user=args.user or os_user(), via="command line", progress=bar,
                            fetcher=_fetcher(cfg))
    except ExportError as e:
        bar.stop()
        print(scrub(f"sharpeye export: {e}"), file=sys.stderr)
        return e.code
    finally:
        bar.stop()
    if args.json:
        print(json.dumps({"id": result.id, "path": str(result.path), "case": str(result.case_folder or "") or None,
                          "case_zip": str(result.case_zip) if result.case_zip else None,
                          "seconds": round(result.seconds, 3), "warnings": result.warnings,
                          "manifest": result.manifest}, ensure_ascii=False, indent=2))
        return 0
    m = result.manifest
    print(f"export {result.id}: {result.path}")
    for cam in m["cameras"]:
        files = ", ".join(f"{f['name']} ({f['frames']} frames, {f['duration_s']:.2f} s)" for f in cam["files"])
        act = cam["actual"]
        print(f"  {cam['id']}: {files or 'no file'}" + (f"  {act['start']['local']} to {act['end']['local']}"
                                                        if act else ""))
    for w in result.warnings:
        print(f"  {w}", file=sys.stderr)
    if result.case_folder:
        print(f"  case {args.case}: {result.case_zip or result.case_folder}")
    span = req.end - req.start
    print(f"  {result.seconds:.2f} s ({span / max(result.seconds, 1e-6):.0f}x real time); held from retention "
          f"until `sharpeye export release {result.id}`; signed by {m['signature']['fingerprint']}")
    return 0


def _fetcher(cfg: Config) -> Any:
    """With cluster.enabled: segments other machines hold, from the history database's catalogue
    (docs/recording-cluster.md); None (this machine's recordings only) without a cluster or a database."""
    if not cfg.cluster.enabled:
        return None
    try:
        from history.catalogue import fetcher
        from history.db import open_database
        from pipeline.record.serve import key_path

        return fetcher(cfg.data_path(), open_database(cfg), key_path(cfg))
    except Exception as e:
        print(scrub(f"sharpeye export: the recording catalogue cannot be read ({e}); only this machine's "
                    "recordings are exported"), file=sys.stderr)
        return None


def _alert_clip(cfg: Config, args: argparse.Namespace) -> Any:
    from pipeline.export.alerts import AlertNotFound, alert_clip
    from pipeline.publish import bus

    url = bus_url(cfg, args.redis)
    if url is None:
        raise ValueError(f"--alert needs the bus: {NO_BUS}")
    try:
        return alert_clip(cfg, bus.connect(url), args.alert)
    except AlertNotFound as e:
        raise ValueError(str(e)) from None
    except Exception as e:  # redis connection errors
        raise ValueError(scrub(f"cannot read the bus at {url}: {e}")) from None


def cmd_verify(args: argparse.Namespace) -> int:
    from pipeline.export.signing import existing_public_key, fingerprint
    from pipeline.export.verify import verify

    where = Path(args.path)
    if not where.exists():
        print(f"sharpeye export verify: {where}: no such file or folder", file=sys.stderr)
        return 2
    expected = args.key
    local = None
    if expected is None and Path(args.config).is_file():
        try:
            local = existing_public_key(load_config(args.config).data_path())
        except (ConfigError, OSError, ValueError):
            local = None
    sources = None
    if args.recordings:
        cfg = load_or_exit(args.config)
        from pipeline.export.fetch import CACHE_DIR

        sources = [cfg.data_path() / cfg.recordings.dir, cfg.data_path() / CACHE_DIR]
    report = verify(where, expected, sources)
    for line in report.sources:
        print(f"sources: {line}")
    for line in report.problems:
        print(f"DIFFERS {line}")
    fps = ", ".join(sorted(report.fingerprints)) or "none"
    if local is not None and expected is None:
        mine = fingerprint(local)
        note = "this installation's key" if report.fingerprints == {mine} else f"NOT this installation's key ({mine})"
        print(f"signed by {fps}: {note}")
    else:
        print(f"signed by {fps}")
    if report.ok:
        print(f"OK: {where}: {report.checked_files} files match their manifest; signatures valid "
              f"({', '.join(report.exports)})")
        return 0
    print(f"FAILED: {where}: {len(report.problems)} problem(s)")
    return 1


def cmd_key(args: argparse.Namespace) -> int:
    from pipeline.export.signing import fingerprint, key_path, load_or_create_key, public_key_b64

    data = load_or_exit(args.config).data_path()
    pub = public_key_b64(load_or_create_key(data))
    print(f"ed25519 {pub}")
    print(f"fingerprint {fingerprint(pub)}  (private key: {key_path(data)})", file=sys.stderr)
    return 0


def _unsafe(check: Callable[[str], object], name: str) -> bool:
    """True, said on stderr, when ``name`` is not a safe export id or case name (``check`` says which)."""
    from pipeline.export.paths import UnsafeName

    try:
        check(name)
    except UnsafeName as e:
        print(f"sharpeye export release: {e}", file=sys.stderr)
        return True
    return False


def cmd_release(args: argparse.Namespace) -> int:
    from pipeline.export import cases, holds
    from pipeline.export.paths import check_case_name, check_export_id

    if not args.ids and not args.case:
        print("sharpeye export release: give export id(s) or --case NAME", file=sys.stderr)
        return 2
    data = load_or_exit(args.config).data_path()
    code = 0
    for export_id in args.ids:
        if _unsafe(check_export_id, export_id):
            code = 2
            continue
        if holds.release(data, export_id):
            print(f"released {export_id}: retention may delete its recordings when they are due")
        else:
            print(f"sharpeye export release: no hold named {export_id!r} (see `sharpeye export list`)",
                  file=sys.stderr)
            code = 2
    for name in args.case:
        if _unsafe(check_case_name, name):
            code = 2
            continue
        ids = holds.case_exports(data, name, cases.read_index(data))
        if ids is None:
            known = ", ".join(sorted(cases.read_index(data).get("cases", {}))) or "none"
            print(f"sharpeye export release: no case named {name!r} (cases: {known})", file=sys.stderr)
            code = 2
            continue
        gone = holds.release_many(data, ids)
        for export_id in gone:
            print(f"released {export_id} (case {name})")
        print(f"case {name}: {len(gone)} of its {len(ids)} export(s) released"
              + (f"; {len(ids) - len(gone)} were not held (released before)" if len(gone) < len(ids) else "")
              + ": retention may delete their recordings when they are due")
    return code


def cmd_list(args: argparse.Namespace) -> int:
    from pipeline.export import cases, holds

    data = load_or_exit(args.config).data_path()
    held = holds.all_holds(data)
    index = cases.read_index(data).get("cases", {})
    if args.json:
        print(json.dumps({"holds": held, "cases": index}, ensure_ascii=False, indent=2))
        return 0
    print(f"{len(held)} held export(s):")
    for eid, h in sorted(held.items()):
        cams = ", ".join(sorted({r["camera"] for r in h.get("ranges", [])}))
        print(f"  {eid}  {'(being written) ' if h.get('pending') else ''}{cams}  {h.get('path', '')}")
    print(f"{len(index)} case(s):")
    for name, c in sorted(index.items()):
        print(f"  {name}: {len(c.get('exports', []))} export(s), {c.get('path', '')}")
    return 0
