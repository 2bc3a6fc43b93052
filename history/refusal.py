"""The error a history or dashboard service raises for a request it cannot do: a code the page translates,
the HTTP status the route answers with and the values the page's message names."""

from __future__ import annotations

from typing import Any


class Refused(Exception):
    """A request that cannot be done; ``code`` is translated by the page, ``status`` is the HTTP answer
    (``default_status`` unless given), ``extra`` goes with the code."""

    default_status = 400

    def __init__(self, code: str, status: int | None = None, **extra: Any):
        super().__init__(code)
        self.code = code
        self.status = self.default_status if status is None else status
        self.extra = extra
