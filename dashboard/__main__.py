"""``python -m dashboard --config streams.yaml --redis URL``: serve the dashboard."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

import uvicorn

from pipeline.config import load_config
from pipeline.config.schema import is_loopback
from pipeline.config.secrets import install_log_scrubber

from .app import create_app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="sharpeye-dashboard")
    ap.add_argument("--config", required=True)
    bus_arg = ap.add_mutually_exclusive_group(required=True)
    bus_arg.add_argument("--redis", help="URL of the bus (shown by ps: use --redis-url-file if it holds a password)")
    bus_arg.add_argument("--redis-url-file", help="a file holding the bus URL (sharpeye run writes one, mode 0600)")
    ap.add_argument("--host")
    ap.add_argument("--port", type=int)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s dashboard %(levelname)s: %(message)s")
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the supervisor forwards SIGHUP; the page reloads by mtime
    cfg = load_config(args.config)
    install_log_scrubber(cfg)  # logs and tracebacks of this process never show a secret
    url = args.redis or Path(args.redis_url_file).read_text().strip()
    dash = cfg.dashboard
    host = args.host or dash.host
    if not dash.tls and not is_loopback(host):
        print(f"sharpeye-dashboard: refusing to serve plain HTTP on {host!r}: log-ins and session cookies would "
              f"cross the network in clear; set dashboard.tls_cert and dashboard.tls_key, or listen on 127.0.0.1",
              file=sys.stderr)
        return 2
    app = create_app(cfg, url, tls=dash.tls)
    # HTTPS only when configured: the cert and key paths were checked (and made absolute) by load_config
    # forwarded headers only from the configured balancers (uvicorn would otherwise believe 127.0.0.1's)
    uvicorn.run(app, host=host, port=args.port or dash.port, log_level="warning", timeout_graceful_shutdown=2,
                ssl_certfile=dash.tls_cert, ssl_keyfile=dash.tls_key, proxy_headers=bool(dash.trusted_proxies),
                forwarded_allow_ips=",".join(dash.trusted_proxies) or None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
