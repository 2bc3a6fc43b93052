"""Generate docs/config.md and docs/schemas/config.schema.json from the config schema.

The schema in pipeline/config/schema.py is the single source of truth; the docs are derived from
it (``python -m pipeline.tools.docs``), and a test fails when they are out of date.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from pipeline.config import schema as C

ROOT = Path(__file__).resolve().parents[2]

SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("(top level)", C.Config),
    ("model", C.ModelConfig),
    ("dashboard", C.DashboardConfig),
    ("dashboard.escalation", C.EscalationConfig),
    ("dashboard.escalation.acknowledge_s and .sign_for_s", C.SeverityTimes),
    ("bus", C.BusConfig),
    ("supervisor", C.SupervisorConfig),
    ("cluster", C.ClusterConfig),
    ("alerts (and cameras.<id>.alerts)", C.AlertsConfig),
    ("grid_cells.<id>", C.GridCell),
    ("grid_cells.<id>.officer", C.Officer),
    ("recordings", C.RecordingsConfig),
    ("cameras.<id>", C.CameraConfig),
    ("cameras.<id>.motion", C.MotionConfig),
    ("cameras.<id>.idle", C.IdleConfig),
    ("cameras.<id>.watchdog", C.WatchdogConfig),
    ("cameras.<id>.tamper", C.TamperConfig),
    ("cameras.<id>.tamper.dark", C.TamperDarkConfig),
    ("cameras.<id>.tamper.covered", C.TamperCoveredConfig),
    ("cameras.<id>.tamper.blur", C.TamperBlurConfig),
    ("cameras.<id>.tamper.moved", C.TamperMovedConfig),
    ("cameras.<id>.sightings", C.SightingsConfig),
    ("cameras.<id>.zones.<name>", C.ZoneConfig),
    ("cameras.<id>.lines.<name>", C.LineConfig),
    ("cameras.<id>.rules.<name> (every kind)", C.RuleBase),
    ("cameras.<id>.rules.<name>.handling and cameras.<id>.tamper.handling", C.HandlingPolicy),
    ("rules: kind: presence", C.PresenceRule),
    ("rules: kind: intrusion", C.IntrusionRule),
    ("rules: kind: line_crossing", C.LineCrossingRule),
    ("rules: kind: loitering", C.LoiteringRule),
    ("rules: kind: crowding", C.CrowdingRule),
    ("schedule windows", C.ScheduleWindow),
]


def _type_name(ann: Any) -> str:
    s = repr(ann) if not isinstance(ann, type) else ann.__name__
    for junk in ("typing.", "pipeline.config.", "Annotated[", "annotated_types."):
        s = s.replace(junk, "")
    s = s if len(s) < 60 else (typing.get_origin(ann).__name__ if typing.get_origin(ann) else "object")
    return s.replace("|", "\\|")


def _default(field: Any) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        try:
            v = field.default_factory()
        except TypeError:
            return "(see below)"
        return "(see below)" if isinstance(v, BaseModel) else f"`{json.dumps(v)}`"
    if field.default is PydanticUndefined:
        return ""
    return f"`{json.dumps(field.default)}`"


def render_markdown() -> str:
    out = ["# streams.yaml reference", "",
           "Generated from `pipeline/config/schema.py` by `python -m pipeline.tools.docs`; do not edit by hand.",
           "Unknown keys are rejected. `sharpeye check FILE` reports every problem as "
           "`FILE:LINE: path: message`. Geometry is relative to the frame (0-1, origin top-left).", ""]
    for title, model in SECTIONS:
        own = model.model_fields
        if model is not C.RuleBase and issubclass(model, C.RuleBase):
            own = {k: v for k, v in own.items() if k not in C.RuleBase.model_fields}
        out += [f"## {title}", ""]
        if model.__doc__ and model.__doc__.strip() != "Root of streams.yaml.":
            out += [model.__doc__.strip().splitlines()[0], ""]
        out += ["| key | type | default | description |", "|---|---|---|---|"]
        for name, f in own.items():
            if model is C.Config and name == "path":  # the file the config was read from, not a key
                continue
            out.append(f"| `{name}` | {_type_name(f.annotation)} | {_default(f)} | {f.description or ''} |")
        out.append("")
    return "\n".join(out)


def render_schema() -> str:
    return json.dumps(C.Config.model_json_schema(), indent=2, ensure_ascii=False) + "\n"


def targets() -> dict[Path, str]:
    return {ROOT / "docs" / "config.md": render_markdown(),
            ROOT / "docs" / "schemas" / "config.schema.json": render_schema()}


if __name__ == "__main__":
    for path, text in targets().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(path.relative_to(ROOT))
