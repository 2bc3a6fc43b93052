"""Loading ``streams.yaml``: bytes checked as UTF-8 text, YAML composed with line numbers,
validated against the schema and against the files it names, every problem in one pass.

Every problem is reported as ``FILE:LINE: dotted.path: what is wrong — what is allowed``, one
line each and never with a secret in it.  ``sharpeye check`` and ``sharpeye run`` go through the
same :func:`load_config`, so a file that checks clean does not fail at start-up for a reason
the check could have seen.  ``reload_config`` keeps the running config for cameras whose new
settings are invalid.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.config.schema import Config, CrossCheckError, cross_check
from pipeline.config.secrets import Scrubber, register_config, secrets_in

MAX_BYTES = 16 << 20
"""A config is a few kilobytes; anything this large is the wrong file."""

MAX_NODES = 200_000
"""Values after expanding aliases: a city's config has a few thousand, a "billion laughs" file
(aliases of aliases) expands past any memory, so the expansion stops here."""

# What `classes` may be: the class names of the model, or a function from the model's name (a
# path already resolved against the config's folder) to them, which raises when the model cannot
# be read.  The loader itself knows no models: config/ imports no other package.
Classes = Sequence[str] | Callable[[str], Sequence[str]] | None

Problem = tuple[int, tuple[Any, ...], str]  # line, data path, message


class ConfigError(Exception):
    """A config that cannot be used; `problems` holds one ``FILE:LINE: path: message`` line each."""

    def __init__(self, problems: list[str], locs: list[tuple[Any, ...]] | None = None):
        super().__init__("\n".join(problems))
        self.problems = problems
        self.locs = locs or [()] * len(problems)  # the data path of each problem, () when global

    def camera_ids(self) -> set[str] | None:
        """The cameras at fault, or None when some problem is outside any one camera."""
        ids = set()
        for loc in self.locs:
            if len(loc) < 2 or loc[0] != "cameras":
                return None
            ids.add(str(loc[1]))
        return ids


_UNREADABLE = object()


class _TooBig(Exception):
    def __init__(self, line: int):
        self.line = line


# --------------------------------------------------------------------------- bytes → text → data


def _decode(raw: bytes, filename: str) -> str:
    """UTF-8 text (a BOM is allowed), or one line naming the first byte that is not."""
    if len(raw) > MAX_BYTES:
        raise ConfigError([f"{filename}:1: (file): {len(raw)} bytes is too large for a config (at most "
                           f"{MAX_BYTES} bytes); is this the right file?"])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError([f"{filename}:{line}: (file): not UTF-8 text: byte 0x{raw[e.start]:02x} at offset "
                           f"{e.start} (line {line}, column {column}) — save the file as UTF-8 (a file saved "
                           "as GBK or another legacy encoding, or a binary file, cannot be read)"]) from None


def _construct(node: yaml.Node, path: tuple[Any, ...], ctx: _Ctx) -> Any:
    """Turn a composed YAML node into Python data, remembering the line of every path.

    Aliases are expanded here, so a node met again on its own path (a recursive alias) is cut with
    a problem, and the expansion counts its values against MAX_NODES.
    """
    ctx.nodes += 1
    if ctx.nodes > MAX_NODES:
        raise _TooBig(node.start_mark.line + 1)
    ctx.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.ScalarNode):
        value = ctx.scalar(node, path)
        return node.value if value is _UNREADABLE else value  # reported; the text, so it is not reported twice
    if id(node) in ctx.active:
        ctx.problems.append((node.start_mark.line + 1, path, "recursive alias: this value contains itself "
                             "(an anchor &x used as *x inside its own value); write the value out instead"))
        return None
    ctx.active.add(id(node))
    try:
        if isinstance(node, yaml.SequenceNode):
            return [_construct(v, path + (i,), ctx) for i, v in enumerate(node.value)]
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            line = knode.start_mark.line + 1
            if not isinstance(knode, yaml.ScalarNode):
                ctx.problems.append((line, path, "a key must be a plain name or number, not a list or mapping"))
                continue
            if knode.tag == "tag:yaml.org,2002:merge" or knode.value == "<<":
                ctx.problems.append((line, path, "YAML merge keys (<<) are not supported; write the keys out"))
                continue
            key = ctx.scalar(knode, path)
            if key is _UNREADABLE:
                continue  # reported by scalar()
            if key in out:
                ctx.problems.append((line, path + (key,), f"duplicate key {key!r} (first at line "
                                     f"{ctx.lines[path + (key,)]}); each key, camera id included, must be unique"))
                continue
            ctx.lines[path + (key,)] = line
            out[key] = _construct(vnode, path + (key,), ctx)
        return out
    finally:
        ctx.active.discard(id(node))


class _Ctx:
    """State of one construction: lines by path, problems, the alias budget, one YAML constructor."""

    def __init__(self) -> None:
        self.lines: dict[tuple[Any, ...], int] = {}
        self.problems: list[Problem] = []
        self.active: set[int] = set()
        self.nodes = 0
        self._loader = yaml.SafeLoader("")

    def scalar(self, node: yaml.ScalarNode, path: tuple[Any, ...]) -> Any:
        try:
            return self._loader.construct_object(node, deep=True)
        except Exception as e:  # an unknown !tag, !!int abc, a date like 2020-13-45
            what = getattr(e, "problem", None) or str(e) or type(e).__name__
            self.problems.append((node.start_mark.line + 1, path, f"cannot read the value {node.value[:40]!r}: "
                                  f"{what}; quote it to make it a string"))
            return _UNREADABLE

    def close(self) -> None:
        self._loader.dispose()


def _compose(text: str, filename: str) -> tuple[dict[str, Any], dict[tuple[Any, ...], int], list[Problem]]:
    """YAML text → (data, line of every data path, problems found on the way).

    Syntax errors stop here (nothing after them can be trusted); duplicate keys, bad scalars and
    recursive aliases are collected, so validation still reports everything else.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.reader.ReaderError as e:
        pos = e.position
        line = text.count("\n", 0, pos) + 1
        offset = len(text[:pos].encode("utf-8"))
        char = e.character if isinstance(e.character, str) else chr(e.character)
        raise ConfigError([f"{filename}:{line}: (file): not a text file: character U+{ord(char):04X} at byte "
                           f"offset {offset} is not allowed in YAML (control characters are not text; is this "
                           "a binary file?)"]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = mark.line + 1 if mark else 1
        what = getattr(e, "problem", None) or str(e)
        raise ConfigError([f"{filename}:{line}: (syntax): malformed YAML: {what}"]) from None
    except RecursionError:
        raise ConfigError([f"{filename}:1: (syntax): lists or mappings are nested too deeply to read"]) from None
    if root is None:
        raise ConfigError([f"{filename}:1: (top level): the file is empty; it needs at least `cameras:`"])
    ctx = _Ctx()
    try:
        data = _construct(root, (), ctx)
    except _TooBig as e:
        raise ConfigError([f"{filename}:{e.line}: (top level): the file expands to more than {MAX_NODES} values "
                           "once its aliases (*name) are replaced: aliases of aliases multiply (a \"billion "
                           "laughs\" file?); write the repeated parts out or use fewer aliases"]) from None
    except RecursionError:
        raise ConfigError([f"{filename}:1: (syntax): lists or mappings are nested too deeply to read"]) from None
    finally:
        ctx.close()
    if not isinstance(data, dict):
        raise ConfigError([f"{filename}:1: (top level): expected a mapping with `cameras:`"])
    return data, ctx.lines, ctx.problems


# --------------------------------------------------------------------------- messages


def _format_loc(loc: tuple[Any, ...]) -> str:
    """``cameras.lobby.source``; a key that is empty, has spaces or dots, or is not text is quoted."""
    def part(p: Any) -> str:
        return str(p) if isinstance(p, int) or (isinstance(p, str) and re.fullmatch(r"[\w-]+", p)) else repr(p)
    return ".".join(part(p) for p in loc) if loc else "(top level)"


def _one_line(text: str) -> str:
    """A problem stays on one line whatever a key or a message contains."""
    return "".join(c if c >= " " or c == "\t" else repr(c)[1:-1] for c in text)


def _data_loc(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """Drop pydantic's union tags and internal steps that are not keys of the data."""
    out: list[Any] = []
    cur = data
    for part in loc:
        if isinstance(cur, dict) and part in cur:
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, dict) and isinstance(part, str) and part not in cur and (
                part in ("presence", "intrusion", "line_crossing", "loitering", "crowding")
                or "[" in part or part.startswith("function-")):
            continue  # discriminator tag or validator name
        else:
            out.append(part)  # a missing field: still name it
            cur = None
    return tuple(out)


def _line_of(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1


def _field_hint(loc: tuple[Any, ...]) -> str:
    """The description of the field at `loc`, so the message says what is allowed."""
    model: Any = Config
    desc = ""
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            desc = ""  # dict keys (camera ids, zone names) and list indices keep the model
            continue
        f = fields[part]
        desc = f.description or ""
        model = _model_in(f.annotation)
    return desc


def _model_in(ann: Any) -> Any:
    import typing
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in typing.get_args(ann):
        m = _model_in(arg)
        if m is not None:
            return m
    return None


def _raise(problems: list[Problem], filename: str, data: Any) -> None:
    """One ConfigError with every problem, sorted by line, one line each, secrets masked."""
    scrubber = Scrubber(secrets_in(data))
    problems = sorted(problems, key=lambda p: p[0])
    raise ConfigError([scrubber.scrub(_one_line(f"{filename}:{ln}: {_format_loc(loc)}: {msg}"))
                       for ln, loc, msg in problems], [loc for _, loc, _ in problems])


# --------------------------------------------------------------------------- checks


def _validate(data: dict[str, Any], lines: dict[tuple[Any, ...], int],
              classes: Sequence[str] | None) -> tuple[Config | None, list[Problem]]:
    """The schema's verdict; cross-field problems are reported even when some field is invalid."""
    try:
        return Config.model_validate(data, context={"classes": list(classes)} if classes else None), []
    except ValidationError as e:
        problems: list[Problem] = []
        crossed = False
        for err in e.errors(include_url=False):
            ctx_err = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_err, CrossCheckError):
                crossed = True
                for loc, msg in ctx_err.problems:
                    problems.append((_line_of(loc, lines), loc, msg))
                continue
            loc = _data_loc(tuple(err["loc"]), data)
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, "):]
            if err["type"] == "extra_forbidden":
                msg = "unknown key; check the spelling (see docs/config.md for the allowed keys)"
            elif err["type"] == "missing":
                msg = "required field is missing"
            hint = _field_hint(loc)
            if hint and err["type"] not in ("extra_forbidden",):
                msg = f"{msg} — {hint}"
            problems.append((_line_of(loc, lines), loc, msg))
        if not crossed:  # the model validator did not get to run: check references on the raw data
            for loc, msg in cross_check(data, list(classes) if classes else None):
                problems.append((_line_of(loc, lines), loc, msg))
        return None, problems


def _resolve_model(data: dict[str, Any], base: Path, lines: dict[tuple[Any, ...], int]) -> list[Problem]:
    """Take a model path from the config's folder (in `data`); a missing file is a problem.

    A bare manifest name (``yolox_nano``) stays as it is: the models/ folder resolves it.
    """
    model = data.get("model")
    if not isinstance(model, dict):
        return []
    name = model.get("name")
    if not isinstance(name, str) or not name.endswith((".onnx", ".json")):
        return []
    loc = ("model", "name")
    try:
        path = Path(name)
        path = path if path.is_absolute() else (base / path)
        exists = path.is_file()
    except (OSError, ValueError) as e:
        return [(_line_of(loc, lines), loc, f"not a usable path: {e}")]
    if not exists:
        return [(_line_of(loc, lines), loc, f"model file {str(path)!r} not found — a relative path is taken "
                 f"from the config file's folder ({base})")]
    data["model"] = {**model, "name": str(path)}
    return []


def _model_classes(data: dict[str, Any], classes: Classes,
                   lines: dict[tuple[Any, ...], int]) -> tuple[Sequence[str] | None, list[Problem]]:
    if classes is None or not callable(classes):
        return classes, []
    model = data.get("model", {})
    name = model.get("name", "yolox_nano") if isinstance(model, dict) else None
    if not isinstance(name, str):
        return None, []  # the schema reports the wrong type
    loc = ("model", "name")
    try:
        return list(classes(name)), []
    except Exception as e:  # whatever reading the model raises, it is a problem of the config, not a crash
        what = " ".join(str(e).split()) or type(e).__name__
        return None, [(_line_of(loc, lines), loc, f"cannot use the model {name!r}: {what}")]


def _resolve_tls(data: dict[str, Any], base: Path, lines: dict[tuple[Any, ...], int]) -> list[Problem]:
    """Take dashboard.tls_cert/tls_key from the config's folder (in `data`); each must be a readable file,
    and the pair must load as a certificate with its key, or HTTPS would fail only when `run` starts it."""
    dash = data.get("dashboard")
    if not isinstance(dash, dict):
        return []
    problems: list[Problem] = []
    found: dict[str, Path] = {}
    for key in ("tls_cert", "tls_key"):
        value = dash.get(key)
        if not isinstance(value, str):
            continue  # absent, or the schema reports the wrong type
        loc = ("dashboard", key)
        try:
            path = Path(value)
            path = path if path.is_absolute() else base / path
            path.open("rb").close()
        except (OSError, ValueError) as e:
            problems.append((_line_of(loc, lines), loc, f"cannot read {value!r} ({getattr(e, 'strerror', None) or e})"
                             f" — a relative path is taken from the config file's folder ({base})"))
            continue
        found[key] = path
        dash[key] = str(path)
    if len(found) == 2:
        import ssl

        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(found["tls_cert"], found["tls_key"])
        except (ssl.SSLError, OSError) as e:
            loc = ("dashboard", "tls_cert")
            problems.append((_line_of(loc, lines), loc, f"certificate and key do not load as a pair: {e}"))
    return problems


def _data_dir(data: dict[str, Any], base: Path, lines: dict[tuple[Any, ...], int]) -> list[Problem]:
    """The data folder must be a folder this user can create or write: `run` writes there first."""
    value = data.get("data_dir", "data")
    if not isinstance(value, str):
        return []
    loc = ("data_dir",)
    try:
        path = Path(value)
        path = path if path.is_absolute() else base / path
        if path.exists() and not path.is_dir():
            return [(_line_of(loc, lines), loc, f"{str(path)!r} exists and is not a folder")]
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
            return [(_line_of(loc, lines), loc, f"{str(path)!r} cannot be written by this user "
                     f"({str(probe)!r} is not writable)")]
    except (OSError, ValueError) as e:
        return [(_line_of(loc, lines), loc, f"not a usable path: {e}")]
    return []


def _check(text: str, filename: str, base: Path, classes: Classes) -> Config:
    data, lines, problems = _compose(text, filename)
    problems += _resolve_model(data, base, lines)
    if any(loc == ("model", "name") for _, loc, _ in problems):
        names: Sequence[str] | None = None  # no model to ask for its classes
    else:
        names, model_problems = _model_classes(data, classes, lines)
        problems += model_problems
    problems += _data_dir(data, base, lines)
    problems += _resolve_tls(data, base, lines)
    cfg, invalid = _validate(data, lines, names)
    problems += invalid
    if problems or cfg is None:
        _raise(problems, filename, data)
    assert cfg is not None
    register_config(cfg)
    return cfg


# --------------------------------------------------------------------------- entry points


def parse_config(text: str, filename: str = "<config>", classes: Classes = None,
                 base_dir: Path | None = None) -> Config:
    """Parse and validate YAML text; raise ConfigError listing every problem with its line.

    Paths in it (the model, data_dir) are taken from `base_dir`, by default the current folder.
    """
    return _check(text, filename, base_dir or Path.cwd(), classes)


def load_config(path: str | Path, classes: Classes = None) -> Config:
    """Read, check and validate a config file: the one validation `check` and `run` share.

    Relative paths in it are taken from its folder.  Every problem is reported at once, in a
    ConfigError; the secrets of a config that loads are masked in this process's output from now on.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError([f"{p}:0: (file): cannot read: {e.strerror or e}"]) from None
    cfg = _check(_decode(raw, str(p)), str(p), p.resolve().parent, classes)
    return cfg.model_copy(update={"path": p.absolute()})


def reload_config(path: str | Path, previous: Config, classes: Classes = None) -> tuple[Config, list[str]]:
    """Re-read a config while running: cameras whose new entry is invalid keep their previous
    config (or stay out, if new) and are reported; the rest of the change applies.

    A problem outside the cameras (syntax, model, grid cells) refuses the whole change:
    ``(previous, problems)``.
    """
    p = Path(path)
    try:
        return load_config(p, classes), []
    except ConfigError as e:
        bad = e.camera_ids()
        if bad is None:
            return previous, e.problems
        problems = e.problems
    data, lines, _ = _compose(_decode(p.read_bytes(), str(p)), str(p))
    base = p.resolve().parent
    _resolve_model(data, base, lines)
    _resolve_tls(data, base, lines)
    cams = dict(data.get("cameras") or {})
    for cid in bad:
        if cid in previous.cameras:
            cams[cid] = previous.cameras[cid].model_dump(mode="json")
        else:
            cams.pop(cid, None)
    data["cameras"] = cams
    names, _ = _model_classes(data, classes, lines)
    cfg, invalid = _validate(data, lines, names)
    if cfg is None:
        try:
            _raise(invalid, str(p), data)
        except ConfigError as e2:
            return previous, problems + e2.problems
    assert cfg is not None
    register_config(cfg)
    refused = [f"{line} (camera refused; it keeps its previous config)" for line in problems]
    return cfg.model_copy(update={"path": p.absolute()}), refused
