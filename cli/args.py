"""What every ``sharpeye`` sub-command shares: the config argument, loading the config, finding the bus,
and the exit codes.

Exit codes, the same for every command: 0 done, 1 a runtime failure (I/O, a model that cannot be
found or fetched, a verification that failed), 2 a usage or config problem (argparse's own errors, and
config problems printed as ``FILE:LINE: path: problem``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from pipeline.analyse.models import validate_config
from pipeline.config import Config, ConfigError, load_config
from pipeline.config.secrets import scrub

DEFAULT_CONFIG = "streams.yaml"
CONFIG_ENV = "SHARPEYE_CONFIG"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

EXIT_CODES = """exit status:
  0  done
  1  a runtime failure: I/O, a model that cannot be found or fetched, a verification that failed
  2  a usage or config problem (config problems are printed as FILE:LINE: path: problem)"""

NO_BUS = ("no redis_url in the config and no running embedded Redis found (is `sharpeye run` running?); "
          "pass --redis URL")


def default_config() -> str:
    """``$SHARPEYE_CONFIG``, else ``./streams.yaml``."""
    return os.environ.get(CONFIG_ENV, DEFAULT_CONFIG)


def add_config_arg(p: argparse.ArgumentParser, verb: bool = False) -> None:
    """``--config/-c``.  On a verb (``export key -c X``) it is accepted too, and without it the one given
    before the verb (``export -c X key``) is kept: argparse would otherwise reset it to the default."""
    p.add_argument("--config", "-c", default=argparse.SUPPRESS if verb else default_config(),
                   help=f"config file (default: ${CONFIG_ENV} or ./{DEFAULT_CONFIG})")


def add_command(subparsers: Any, name: str, func: Callable[[argparse.Namespace], int], summary: str,
                description: str, config: bool = True) -> argparse.ArgumentParser:
    """A sub-command ``name`` that runs ``func``: ``summary`` in ``sharpeye --help``, ``description`` in its
    own; with ``config`` it takes ``--config/-c``."""
    p: argparse.ArgumentParser = subparsers.add_parser(name, help=summary, description=description)
    if config:
        add_config_arg(p)
    p.set_defaults(func=func)
    return p


def add_json_arg(p: argparse.ArgumentParser, what: str) -> None:
    """``--json``: print ``what`` (one JSON object per line, one document ...) instead of text."""
    p.add_argument("--json", action="store_true", help=what)


def add_bus_args(p: argparse.ArgumentParser) -> None:
    """``--config`` and ``--redis``: what a command that reads the bus takes (see :func:`bus_url`)."""
    add_config_arg(p)
    p.add_argument("--redis", help="redis:// URL (default: the config's, or the running embedded one)")


def load_or_exit(path: str, *, full: bool = False) -> Config:
    """The config, or exit 2 after printing each problem as ``FILE:LINE: path: message``.

    `full` runs :func:`validate_config` (what `run` needs); without it the model is not opened,
    which is all that reading the bus (`status`, `events`) or the data folder (`export`) needs.
    """
    try:
        return validate_config(path) if full else load_config(path)
    except ConfigError as e:
        print(scrub("\n".join(e.problems)), file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def embedded_url(cfg: Config) -> str | None:
    """The URL of the Redis that a running `sharpeye run` started for this config, if any."""
    f = cfg.data_path() / "redis" / "url"
    return f.read_text().strip() if f.exists() else None


def bus_url(cfg: Config, override: str | None) -> str | None:
    """``--redis``, else the config's ``redis_url``, else the embedded Redis a running `sharpeye run` started."""
    return override or cfg.redis_url or embedded_url(cfg)


def bus_url_or_exit(cfg: Config, override: str | None) -> str:
    url = bus_url(cfg, override)
    if url is None:
        print(NO_BUS, file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    return url
