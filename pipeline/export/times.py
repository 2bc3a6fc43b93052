"""The times an investigator types and reads: ISO 8601 or epoch seconds in, the config's zone and UTC out.

A time typed without an offset means the command room's clock (the config's ``timezone``, else
the machine's), never UTC: "14:05" on an incident report is local time.  The manifest gives every
time both ways, so it reads the same wherever it is opened.
"""

from __future__ import annotations

import datetime as dt
import re

_EPOCH_RE = re.compile(r"^\d{9,11}(\.\d+)?$")


def parse_time(text: str, tz: dt.tzinfo | None) -> float:
    """``2026-11-29T09:24:13+08:00``, ``2026-11-29 09:24:13`` (in ``tz``) or ``1795944253.6`` → epoch seconds.

    Raises ValueError with the text when it is none of these.
    """
    s = text.strip()
    if _EPOCH_RE.match(s):
        return float(s)
    try:
        t = dt.datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use ISO 8601 (2026-11-29T09:24:13, with or without an "
                         "offset such as +08:00) or epoch seconds") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=tz) if tz is not None else t.astimezone()
    return t.timestamp()


def zone_name(tz: dt.tzinfo | None) -> str:
    """An IANA name when there is one (``Asia/Shanghai``), else what the zone calls itself (``CST``)."""
    if tz is None:
        return "UTC"
    key = getattr(tz, "key", None)
    return str(key) if key else str(dt.datetime.now(tz).tzname() or tz)


def iso_local(t: float, tz: dt.tzinfo | None) -> str:
    """``2026-11-29T09:24:13.610+08:00``: the instant in the config's zone, offset included."""
    return dt.datetime.fromtimestamp(t, tz).isoformat(timespec="milliseconds")


def iso_utc(t: float) -> str:
    """``2026-11-29T01:24:13.610Z``."""
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def both(t: float, tz: dt.tzinfo | None) -> dict[str, object]:
    """One instant as the manifest gives it: epoch seconds, local (config zone) and UTC."""
    return {"epoch": round(t, 3), "local": iso_local(t, tz), "utc": iso_utc(t)}


def compact_utc(t: float) -> str:
    """``20261129T012413Z``: for export ids and file names (sorts by time, no characters a file system minds)."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
