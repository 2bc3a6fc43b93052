"""Loading ``streams.yaml``: YAML composed with line numbers, validated against the schema.

Every problem is reported as ``FILE:LINE: dotted.path: what is wrong (what is allowed)``;
``reload_config`` keeps the running config for cameras whose new settings are invalid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.config.schema import Config, CrossCheckError

# --------------------------------------------------------------------------- loading with line numbers


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


def _construct(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int],
               errors: list[tuple[int, tuple[Any, ...], str]]) -> Any:
    """Turn a composed YAML node into Python data, remembering the line of every path."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            key = yaml.SafeLoader.construct_object(yaml.SafeLoader(""), knode) if not isinstance(
                knode, yaml.ScalarNode) else _scalar(knode)
            if key == "<<":
                errors.append((knode.start_mark.line + 1, path, "YAML merge keys (<<) are not supported"))
                continue
            if key in out:
                errors.append((knode.start_mark.line + 1, path + (key,),
                               f"duplicate key {key!r} (first at line {lines[path + (key,)]}); "
                               "each key, camera id included, must be unique"))
                continue
            lines[path + (key,)] = knode.start_mark.line + 1
            out[key] = _construct(vnode, path + (key,), lines, errors)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, path + (i,), lines, errors) for i, v in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _format_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) if loc else "(top level)"


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


def _compose(text: str, filename: str) -> tuple[dict[str, Any], dict[tuple[Any, ...], int]]:
    """YAML text → (data, line of every data path); syntax and duplicate keys raise ConfigError."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = mark.line + 1 if mark else 1
        what = getattr(e, "problem", None) or str(e)
        raise ConfigError([f"{filename}:{line}: (syntax): malformed YAML: {what}"]) from None
    if root is None:
        raise ConfigError([f"{filename}:1: (top level): the file is empty; it needs at least `cameras:`"])
    lines: dict[tuple[Any, ...], int] = {}
    errors: list[tuple[int, tuple[Any, ...], str]] = []
    data = _construct(root, (), lines, errors)
    if errors:
        raise ConfigError([f"{filename}:{ln}: {_format_loc(loc)}: {msg}" for ln, loc, msg in errors],
                          [loc for _, loc, _ in errors])
    if not isinstance(data, dict):
        raise ConfigError([f"{filename}:1: (top level): expected a mapping with `cameras:`"])
    return data, lines


def _validate(data: dict[str, Any], lines: dict[tuple[Any, ...], int], filename: str,
              classes: list[str] | None) -> Config:
    try:
        return Config.model_validate(data, context={"classes": classes} if classes else None)
    except ValidationError as e:
        problems: list[tuple[int, tuple[Any, ...], str]] = []
        for err in e.errors(include_url=False):
            ctx_err = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_err, CrossCheckError):
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
            # never echo a secret: pydantic messages do not include the input, ours redact URLs
            problems.append((_line_of(loc, lines), loc, msg))
        problems.sort(key=lambda p: p[0])
        raise ConfigError([f"{filename}:{ln}: {_format_loc(loc)}: {msg}" for ln, loc, msg in problems],
                          [loc for _, loc, _ in problems]) from None


def parse_config(text: str, filename: str = "<config>", classes: list[str] | None = None) -> Config:
    """Parse and validate YAML text; raise ConfigError listing every problem with its line."""
    data, lines = _compose(text, filename)
    return _validate(data, lines, filename, classes)


def reload_config(path: str | Path, previous: Config,
                  classes: list[str] | None = None) -> tuple[Config, list[str]]:
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
    data, lines = _compose(p.read_text(encoding="utf-8"), str(p))
    cams = dict(data.get("cameras") or {})
    for cid in bad:
        if cid in previous.cameras:
            cams[cid] = previous.cameras[cid].model_dump(mode="json")
        else:
            cams.pop(cid, None)
    data["cameras"] = cams
    try:
        cfg = _validate(data, lines, str(p), classes)
    except ConfigError as e2:
        return previous, problems + e2.problems
    refused = [f"{line} (camera refused; it keeps its previous config)" for line in problems]
    return cfg.model_copy(update={"path": p.resolve()}), refused


def load_config(path: str | Path, classes: list[str] | None = None) -> Config:
    """Read, parse and validate a config file; relative paths in it are taken from its folder."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"{p}:0: (file): cannot read: {e.strerror or e}"]) from None
    cfg = parse_config(text, str(p), classes)
    return cfg.model_copy(update={"path": p.resolve()})

