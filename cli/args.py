"""Arguments and config loading shared by the ``sharpeye`` subcommands."""

from __future__ import annotations

import argparse
import os
import sys

from pipeline.analyse.models import validate_config
from pipeline.config import Config, ConfigError, load_config
from pipeline.config.secrets import scrub

DEFAULT_CONFIG = "streams.yaml"


def default_config() -> str:
    return os.environ.get("SHARPEYE_CONFIG", DEFAULT_CONFIG)


def add_config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", default=default_config(),
                   help="config file (default: $SHARPEYE_CONFIG or ./streams.yaml)")


def load_or_exit(path: str, *, full: bool = False) -> Config:
    """The config, or exit 2 after printing each problem as ``FILE:LINE: path: message``.

    `full` runs :func:`validate_config` (what `run` needs); without it the model is not opened,
    which is all that reading the bus (`status`, `events`) needs.
    """
    try:
        return validate_config(path) if full else load_config(path)
    except ConfigError as e:
        print(scrub("\n".join(e.problems)), file=sys.stderr)
        raise SystemExit(2) from None


def embedded_url(cfg: Config) -> str | None:
    """The URL of the Redis that a running `sharpeye run` started for this config, if any."""
    f = cfg.data_path() / "redis" / "url"
    return f.read_text().strip() if f.exists() else None


def bus_url_or_exit(cfg: Config, override: str | None) -> str:
    url = override or cfg.redis_url or embedded_url(cfg)
    if url is None:
        print("no redis_url in the config and no running embedded Redis found (is `sharpeye run` "
              "running?); pass --redis URL", file=sys.stderr)
        raise SystemExit(2)
    return url
