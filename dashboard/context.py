"""What every route needs: the config (re-read when the file changes), the database, the bus."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from fastapi import Request
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from sqlalchemy import Engine

from dashboard.security import SharedLoginLimiter
from dashboard.workflow import action_message
from pipeline.config import Config, reload_config
from pipeline.publish import bus

log = logging.getLogger("sharpeye.dashboard")
ACTIONS_MAXLEN = 1_000  # only for pushing to open pages (they reload their list after a gap): keep it small
# Every read of the bus gives up after this long: a frozen Redis (SIGSTOP, a hung host) turns into an
# error the page sees (503, or a stream that stops beating) instead of a request that never ends.  The
# live stream's blocking XREAD waits 1 s, well inside it.
REDIS_TIMEOUT_S = 5.0


def _mtime(cfg: Config) -> float | None:
    try:
        return cfg.path.stat().st_mtime if cfg.path else None
    except OSError:
        return None


@dataclass
class Dashboard:
    cfg0: Config
    engine: Engine
    redis_url: str
    tls: bool = False
    _cfg: Config | None = None
    _mtime: float | None = None
    _redis: aioredis.Redis | None = None
    _redis_loop: asyncio.AbstractEventLoop | None = None

    def __post_init__(self) -> None:
        self._cfg = self.cfg0
        self._mtime = _mtime(self.cfg0)
        self.keys = bus.BusKeys(self.cfg0.bus.prefix)
        self.data_dir: Path = self.cfg0.data_path()
        self.limiter = SharedLoginLimiter(self.cfg0.bus.prefix)  # log-in failures per address, site-wide

    def config(self) -> Config:
        """The config as on disk now (cameras added or renamed show up without a restart)."""
        assert self._cfg is not None
        m = _mtime(self._cfg)
        if m != self._mtime:
            self._mtime = m
            if self._cfg.path is not None:
                self._cfg, _problems = reload_config(self._cfg.path, self._cfg)
        return self._cfg

    def redis(self) -> aioredis.Redis:
        """One pooled client per event loop (each blocking read takes its own connection from the pool).

        Under uvicorn there is one loop for the life of the process; a test client may run a loop per request.
        """
        loop = asyncio.get_running_loop()
        if self._redis is None or self._redis_loop is not loop:
            # one quick retry for a connection Redis closed (it restarted); a timeout is not retried, so a
            # frozen Redis costs one REDIS_TIMEOUT_S (redis-py's default would retry it three times)
            retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 1, supported_errors=(RedisConnectionError,))
            self._redis = bus.connect_async(self.redis_url, REDIS_TIMEOUT_S, retry)  # plain or Sentinel URL
            self._redis_loop = loop
        return self._redis

    def actions_key(self) -> str:
        """The dashboard's own stream: every action (and escalation), for every open page."""
        return self.keys.prefix_key("actions")

    async def push_action(self, alert: dict[str, Any], action: dict[str, Any]) -> bool:
        """Tell every open page; False when the bus is down.

        The action is already stored: a down bus must not turn it into an error for the operator who
        did it.  Pages that missed the push reload their list when their stream comes back.
        """
        try:
            await self.redis().xadd(self.actions_key(), {"json": action_message(alert, action)},
                                    maxlen=ACTIONS_MAXLEN, approximate=True)
            return True
        except (RedisError, OSError) as e:
            log.warning("action %s on alert %s stored but not pushed to the pages: bus unavailable (%s)",
                        action.get("action"), alert.get("alert_id"), e)
            return False

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


def ctx(request: Request) -> Dashboard:
    d: Any = request.app.state.dashboard
    return d  # type: ignore[no-any-return]
