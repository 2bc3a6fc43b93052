"""What camera ownership by lease costs: round time and Redis CPU for many simulated cameras.

``python -m pipeline.tools.bench.cluster [--cameras 500 2000] [--workers 4] [--rounds 20] [--json F]``

Simulated workers (real :class:`~pipeline.cluster.coordinator.Coordinator` objects, no cameras
behind them) share N camera ids on a real redis-server (a private one under a temporary folder, or
``--redis URL``).  After they have taken every camera, each runs ``--rounds`` rounds; a round is the
heartbeat, the renewal of every lease the worker holds (one compare-and-extend script call with all
its keys) and the read of every camera's holder, in one pipelined round trip, then the plan.  Reported
per camera count:

- ``round_ms``: one worker's whole round (median, p99, max) and the round trip alone;
- ``all_workers_round_ms``: every worker's round one after the other: the time the whole site's
  renewals of one period take on Redis (the bound a district needs: 2,000 cameras under 250 ms);
- ``worker_cpu_ms_per_round``: this process's CPU per worker round (the client side: scripts,
  parsing, the rendezvous plan);
- ``redis_cpu_ms_per_period``: Redis's own CPU (``INFO cpu`` user + sys, before and after) per
  period, i.e. per round of every worker, and ``redis_cpu_percent`` at the default ``renew_s`` 1 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.cluster.coordinator import Coordinator
from pipeline.config.schema import ClusterConfig
from pipeline.publish import bus


def redis_cpu_s(r: Any) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def measure(r: Any, cameras: int, workers: int = 4, rounds: int = 20, renew_s: float = 1.0) -> dict[str, Any]:
    """Run the simulated site on ``r`` and return the figures (see the module docstring)."""
    prefix = f"bench-cluster-{time.time_ns()}"
    cams = [f"cam{i:05d}" for i in range(cameras)]
    cfg = ClusterConfig(enabled=True, lease_ttl_s=max(8.0, 3 * renew_s), renew_s=renew_s, moves_per_s=10_000.0)
    coords = [Coordinator(r, prefix, cfg, lambda: cams, worker_id=f"bench-w{i}") for i in range(workers)]
    try:
        deadline = time.monotonic() + 60
        while sum(len(c.owned()) for c in coords) < cameras or any(c.rounds < 2 for c in coords):
            for c in coords:
                c.round()
                c.drain()
            if time.monotonic() > deadline:
                raise RuntimeError("the simulated workers did not take every camera within 60 s")
        per_worker: list[float] = []
        trips: list[float] = []
        periods: list[float] = []
        cpu0 = redis_cpu_s(r)
        own0 = time.process_time()
        for _ in range(rounds):
            t0 = time.perf_counter()
            for c in coords:
                st = c.round()
                c.drain()
                if not st.ok:
                    raise RuntimeError(f"a round failed: {st.error}")
                per_worker.append(st.total_s * 1000)
                trips.append(st.round_trip_s * 1000)
            periods.append((time.perf_counter() - t0) * 1000)
        cpu_ms = (redis_cpu_s(r) - cpu0) * 1000 / rounds
        own_ms = (time.process_time() - own0) * 1000 / rounds / workers
        held = [len(c.owned()) for c in coords]
        return {
            "cameras": cameras, "workers": workers, "rounds": rounds, "held_per_worker": held,
            "round_ms": {"p50": round(statistics.median(per_worker), 2), "p99": round(_pct(per_worker, 0.99), 2),
                         "max": round(max(per_worker), 2)},
            "round_trip_ms": {"p50": round(statistics.median(trips), 2), "max": round(max(trips), 2)},
            "all_workers_round_ms": {"p50": round(statistics.median(periods), 2), "max": round(max(periods), 2)},
            "redis_cpu_ms_per_period": round(cpu_ms, 2),
            "redis_cpu_percent": round(cpu_ms / (renew_s * 1000) * 100, 2),
            "worker_cpu_ms_per_round": round(own_ms, 2),
            "renew_s": renew_s,
        }
    finally:
        for c in coords:
            c.stop(release=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.tools.bench.cluster", description=__doc__.split("\n")[0])
    ap.add_argument("--cameras", type=int, nargs="+", default=[500, 2000])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--redis", help="redis:// or unix:// URL (default: a private redis-server)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    results = []
    server = None
    tmp = None
    try:
        if args.redis:
            url = args.redis
        else:
            from pipeline.runtime.redis_server import RedisServer
            tmp = tempfile.TemporaryDirectory(prefix="sharpeye-bench-cluster-")
            server = RedisServer(Path(tmp.name), persist=False)
            url = server.start()
        r = bus.connect(url)
        for n in args.cameras:
            res = measure(r, n, args.workers, args.rounds)
            results.append(res)
            print(f"{n:6d} cameras, {args.workers} workers: one worker's round {res['round_ms']['p50']:.1f} ms "
                  f"(p99 {res['round_ms']['p99']:.1f}), every worker's round {res['all_workers_round_ms']['p50']:.1f} "
                  f"ms (max {res['all_workers_round_ms']['max']:.1f}), Redis CPU "
                  f"{res['redis_cpu_ms_per_period']:.1f} ms a period = {res['redis_cpu_percent']:.1f} % of a core "
                  f"at renew_s 1 s; worker CPU {res['worker_cpu_ms_per_round']:.1f} ms a round")
        r.close()
    finally:
        if server is not None:
            server.stop()
        if tmp is not None:
            tmp.cleanup()
    if args.json:
        Path(args.json).write_text(json.dumps({"bench": "cluster", "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
