"""Measure the time from a person entering the picture to the alert on the dashboard page.

Two parts, added up:

1. stream time from the person entering to the frame that raises the alert: ``sharpeye replay``
   of the clip with the same presence rule; the person enters at the first frame where the
   detector, run on every frame, sees a person at score >= 0.5 (6.1 s into the clip);
2. wall time from that frame coming off the decoder to the alert on the page: the shared person
   clip over RTSP (camera simulator), `sharpeye run`, the dashboard in headless Chromium; the
   message's ``frame_time`` to the moment the alert element appears.  Repeats ``--runs`` times.

    .venv/bin/python scripts/measure_latency.py [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.publish import bus  # noqa: E402
from pipeline.runtime.redis_server import RedisServer  # noqa: E402
from pipeline.tools.simulator import RtspSimulator, free_port  # noqa: E402


def one_run(clip: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis", persist=False) as url, \
            RtspSimulator({"lobby": clip}) as sim:
        port = free_port()
        cfg = Path(tmp) / "streams.yaml"
        cfg.write_text(f"""
data_dir: {tmp}/data
redis_url: {url}
grid_cells: {{G1: {{name: Cell, officer: {{name: Officer, phone: "110"}}}}}}
cameras:
  lobby: {{name: Lobby, source: "{sim.url('lobby')}", grid_cell: G1, alert_labels: [person]}}
""")
        run = subprocess.Popen([sys.executable, "-m", "cli.main", "run", "--config", str(cfg), "--port",
                                str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(150):
                try:
                    urllib.request.urlopen(base + "/healthz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.2)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
                page = browser.new_page()
                page.goto(base + "/")
                page.locator("#alerts li.alert").first.wait_for(timeout=60_000)
                seen = time.time()
                browser.close()
            r = bus.connect(url)
            first = bus.latest_events(r, bus.BusKeys("sharpeye"), 50)
            new = next(m for _, m in first if m.get("phase") == "new")
            on_bus = int(new["stream_id"].split("-")[0]) / 1000
            return {"frame_to_bus_s": on_bus - new["frame_time"], "frame_to_page_s": seen - new["frame_time"]}
        finally:
            os.killpg(run.pid, signal.SIGINT)
            run.wait(30)


def stream_delay(clip: Path) -> tuple[float, float]:
    """(clip second of the first person detection at >= 0.5, clip second of the alert's frame)."""
    from pipeline.analyse.detect import Detector, iter_media
    from pipeline.analyse.models import default_models_dir, resolve_model
    from pipeline.config import parse_config
    from pipeline.tools.replay import run_replay

    det = Detector(*resolve_model("yolox_nano", default_models_dir()))
    enter = next(pts for _, pts, img in iter_media(clip)
                 if any(d["label"] == "person" and d["score"] >= 0.5 for d in det.detect(img).to_list()))
    cfg = parse_config("""
grid_cells: {G1: {name: Cell, officer: {name: Officer, phone: "110"}}}
cameras:
  lobby: {name: Lobby, source: x.mp4, grid_cell: G1, alert_labels: [person]}
""")
    msgs = run_replay(cfg, clip, "lobby", start=0.0, detector=det)
    first = next(m for m in msgs if m.get("phase") == "new")
    return float(enter), float(first["frame_time"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=str(ROOT / ".cache/clips/one-by-one-person-detection.mp4"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    enter, alert_frame = stream_delay(Path(args.clip))
    runs = [one_run(Path(args.clip)) for _ in range(args.runs)]
    summary = {k: {"median": round(statistics.median(r[k] for r in runs), 3),
                   "max": round(max(r[k] for r in runs), 3)} for k in runs[0]}
    total = alert_frame - enter + summary["frame_to_page_s"]["median"]
    if args.json:
        print(json.dumps({"person_enters_s": enter, "alert_frame_s": alert_frame, "runs": runs,
                          "summary": summary, "enter_to_page_s": round(total, 3)}, indent=2))
    else:
        print(f"person enters at {enter:.1f} s of the clip; the alert's frame is at {alert_frame:.1f} s "
              f"(+{alert_frame - enter:.2f} s: sampling, inertia, track confirmation)")
        for k, v in summary.items():
            print(f"{k:15s} median {v['median']:.2f} s  max {v['max']:.2f} s  ({args.runs} runs)")
        print(f"person entering → alert on the page: {total:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
