"""One scrubber for every output path: logs, errors, status, events, the page, the CLI.

A camera URL carries its password (``rtsp://admin:pw@host``), some carry tokens in the query
(``?token=...``), the Redis URL may carry one (``rediss://:pw@host``), and other config values
are secrets by name (``metrics_token``).  Redacting them where each message is written would miss
the next message someone adds, so everything printed goes through :func:`scrub`, and the log
records of a process go through it at creation (:func:`install_log_scrubber`).

Three rules, applied in this order to any text:

1. every secret value registered from a loaded config (:func:`register_secrets`, done by
   ``load_config``) is replaced by ``***`` wherever it appears, also percent-encoded;
2. the password of any ``scheme://user:password@host`` URL becomes ``***`` (the user stays, so an
   operator can tell which account is meant);
3. the value of a secret-looking query or ``key=value`` parameter (``password=``, ``passwd=``,
   ``pwd=``, ``pass=``, ``token=``, ``secret=``, ``key=``, ``auth=``, and names ending in them such as
   ``access_token=`` or ``api_key=``; any case) becomes ``***``.

Values shorter than :data:`MIN_SECRET_LEN` are masked only by rules 2 and 3 (in their URL or
parameter), not wherever they appear: masking a password "123" in free text would rewrite every
number containing it and make the logs useless.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

MASK = "***"
MIN_SECRET_LEN = 4

# scheme://userinfo@ : the authority ends at / ? # or white space; the LAST @ ends the user info, so a
# password containing an unencoded @ is still masked whole.  Brackets end it too: they only
# belong to an IPv6 host, and a usage text such as rtsp://[user:password@]host is no secret.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s\"'<>\[\]]*)@")
_SECRET_WORDS = r"password|passwd|pwd|pass|token|secret|key|apikey|auth"
# a parameter named after a secret word (alone, or as the last part of a name like access_token);
# its value runs to the next & ; # white space or quote
_PARAM = re.compile(
    rf"(?P<name>(?<![A-Za-z0-9_.-])(?:[A-Za-z0-9]+[_.-])*(?:{_SECRET_WORDS}))=(?P<value>[^&;#\s\"'<>]+)",
    re.IGNORECASE)
_SECRET_NAME = re.compile(rf"(?:^|[_.-])(?:{_SECRET_WORDS})$", re.IGNORECASE)


def _mask_userinfo(m: re.Match[str]) -> str:
    user, sep, password = m.group("userinfo").partition(":")
    if not sep or not password or password == MASK:
        return m.group(0)
    return f"{m.group('scheme')}{user}:{MASK}@"


def _mask_param(m: re.Match[str]) -> str:
    return f"{m.group('name')}={MASK}"


class Scrubber:
    """Masks the secrets it was given plus anything rules 2 and 3 recognise (see the module doc).

    Thread-safe: adding secrets builds a new pattern and swaps it in one assignment, so a log call
    in another thread sees either the old or the new set, never half of one.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Mask these values from now on (with their percent-encoded and decoded forms)."""
        forms = set()
        for s in secrets:
            for form in (s, unquote(s), quote(s, safe="")):
                if len(form) >= MIN_SECRET_LEN and form != MASK:
                    forms.add(form)
        with self._lock:
            if forms <= self._secrets:
                return
            self._secrets = self._secrets | forms
            # longest first, so a secret that contains another is masked whole
            alternatives = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(a) for a in alternatives))

    @property
    def secrets(self) -> frozenset[str]:
        return self._secrets

    def scrub(self, text: str) -> str:
        """The text with every secret replaced by ``***``."""
        if not text:
            return text
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        if "@" in text:
            text = _USERINFO.sub(_mask_userinfo, text)
        if "=" in text:
            text = _PARAM.sub(_mask_param, text)
        return text


def secrets_in(data: Any, name: str = "") -> set[str]:
    """Every secret value in a config (raw YAML data, a dict, or a pydantic model).

    A value is secret when its key's name ends in a secret word (``password``, ``token``,
    ``secret``, ``key``, ...), when it is a URL's password, or when it is a secret-looking query
    parameter of a URL.  Walking the whole tree keeps sections added later (a database URL, a
    metrics token) covered without a list to maintain.
    """
    out: set[str] = set()
    if hasattr(data, "model_dump"):
        data = data.model_dump(mode="json")
    if isinstance(data, Mapping):
        for k, v in data.items():
            out |= secrets_in(v, str(k))
    elif isinstance(data, (list, tuple)):
        for v in data:
            out |= secrets_in(v, name)
    elif isinstance(data, str):
        if name and _SECRET_NAME.search(name) and data:
            out.add(data)
        out |= _url_secrets(data)
    return out


def _url_secrets(text: str) -> set[str]:
    out: set[str] = set()
    for m in _USERINFO.finditer(text):
        _user, sep, password = m.group("userinfo").partition(":")
        if sep and password:
            out.add(password)
    try:
        query = urlsplit(text.strip()).query
    except ValueError:
        query = ""
    for k, v in parse_qsl(query, keep_blank_values=False):
        if _SECRET_NAME.search(k) or k.lower() in _SECRET_WORDS.split("|"):
            out.add(v)
    for m in _PARAM.finditer(text):
        out.add(m.group("value"))
    return out


# --------------------------------------------------------------------------- the process-wide scrubber

_DEFAULT = Scrubber()


def register_secrets(values: Iterable[str]) -> None:
    """Mask these values in everything this process prints from now on."""
    _DEFAULT.add(values)


def register_config(cfg: Any) -> None:
    """Mask every secret of a loaded config (see :func:`secrets_in`) from now on."""
    _DEFAULT.add(secrets_in(cfg))


def scrub(text: str) -> str:
    """The text with every secret known to this process (and every URL password) masked."""
    return _DEFAULT.scrub(text)


def redact_url(url: str) -> str:
    """Hide the secrets of a URL (``rtsp://user:pw@host`` → ``rtsp://user:***@host``); see :func:`scrub`."""
    return scrub(url)


def map_leaves(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """A copy of JSON-like data (mappings, lists, tuples as lists) with ``leaf`` applied to every other value."""
    if isinstance(value, Mapping):
        return {k: map_leaves(v, leaf) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [map_leaves(v, leaf) for v in value]
    return leaf(value)


def scrub_value(value: Any) -> Any:
    """A copy of JSON-like data (dicts, lists, strings) with every string scrubbed."""
    return map_leaves(value, lambda v: scrub(v) if isinstance(v, str) else v)


# --------------------------------------------------------------------------- logging and uncaught errors


class ScrubFilter(logging.Filter):
    """Scrubs a log record in place: its message with the arguments merged in, its exception and
    stack text.  Always lets the record through: its job is to clean, not to drop."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record)
        return True


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    """Scrub a record's message (arguments merged in), traceback and stack text, in place.

    The message is checked formatted, because a secret is as often in the arguments
    (``log.info("opening %s", url)``) as in the format string, and may even be split between them.
    Only a record that held a secret has its arguments merged into its message for good; the others
    keep theirs, for formatters that read them (uvicorn's access log does).
    """
    if getattr(record, "_sharpeye_scrubbed", False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: keep the pieces, scrubbed, for the handler to report
        record.msg = scrub(str(record.msg))
        if record.args:
            record.args = tuple(scrub(repr(a)) for a in (
                record.args if isinstance(record.args, tuple) else (record.args,)))
    else:
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    if record.exc_text:
        record.exc_text = scrub(record.exc_text)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)
    record._sharpeye_scrubbed = True
    return record


_install_lock = threading.Lock()
_installed = False


def install_log_scrubber(cfg: Any = None) -> None:
    """Scrub every log record and uncaught-exception report of this process; register `cfg`'s secrets.

    Called once by each entry point (the CLI, the worker and dashboard mains).  The filter goes on
    the root logger and its handlers, and into the log-record factory: a filter on the root logger
    alone would miss records of child loggers (``logging`` applies a logger's filters only to records
    logged on that very logger), and a handler added later (uvicorn's, pytest's) would have none.
    Uncaught exceptions, in the main thread or any other, are printed scrubbed too.  Calling it
    again only adds the secrets of another config.
    """
    global _installed
    if cfg is not None:
        register_config(cfg)
    with _install_lock:
        if _installed:
            return
        _installed = True
        flt = ScrubFilter()
        root = logging.getLogger()
        root.addFilter(flt)
        for handler in root.handlers:
            handler.addFilter(flt)
        previous_factory = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return scrub_record(previous_factory(*args, **kwargs))

        logging.setLogRecordFactory(factory)
        sys.excepthook = _excepthook
        threading.excepthook = _thread_excepthook


def _excepthook(etype: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    sys.stderr.write(scrub("".join(traceback.format_exception(etype, value, tb))))


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
    sys.stderr.write(scrub(f"Exception in thread {name}:\n{text}"))
