"""The configuration schema: the single source of truth for every knob.

`streams.yaml` is parsed into these pydantic models.  Unknown keys are rejected, every
field carries a description with its bounds and default, and every problem is reported
as ``FILE:LINE: dotted.path: what is wrong (what is allowed)`` so an engineer can jump
straight to the offending line.  Geometry (zones, lines, masks) is in relative
coordinates (0-1) so it survives a change of stream resolution.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipeline.config.secrets import redact_url

CAMERA_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Point = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- helpers


def check_host_port(url: str, example: str) -> None:
    """Refuse a network URL whose host or port could never be connected to.

    Checked here so that `sharpeye check` refuses it, instead of a worker retrying it forever.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:  # a port that is not a number or out of range, a broken [IPv6] host
        raise ValueError(f"{redact_url(url)!r}: {e}") from None
    host = parts.hostname
    if not host:
        raise ValueError(f"{redact_url(url)!r} has no host; use {example}")
    if port == 0:
        raise ValueError(f"{redact_url(url)!r}: port 0 cannot be connected to; use a port 1-65535")
    if ":" in host:  # urlsplit only gives a colon for a bracketed IPv6 literal
        import ipaddress
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise ValueError(f"{redact_url(url)!r}: {host!r} is not an IPv6 address") from None
    elif not re.fullmatch(r"[\w.~%-]+", host) or host.startswith(("-", ".")) or ".." in host:
        raise ValueError(f"{redact_url(url)!r}: {host!r} is not a host name or IP address")


def check_redis_url(url: str) -> None:
    """Refuse a Redis URL that redis-py would refuse, or that names no server, before anything runs."""
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise ValueError(f"{redact_url(url)!r} is not a URL ({e})") from None
    if parts.scheme == "redis+sentinel" and url.startswith("redis+sentinel://"):  # docs/ha.md
        hosts, _, path = url[len("redis+sentinel://"):].partition("/")
        for hp in hosts.rpartition("@")[2].split(","):
            check_host_port(f"redis://{hp.strip()}", "redis+sentinel://host:port[,host:port...]/service_name")
        seg = [x for x in path.partition("?")[0].split("/") if x]
        if not seg or len(seg) > 2 or (len(seg) == 2 and not seg[1].isdigit()):
            raise ValueError(f"{redact_url(url)!r}: name the Sentinel service: "
                             "redis+sentinel://host:port[,host:port...]/service_name[/db]")
        return
    if parts.scheme not in ("redis", "rediss", "unix") or not url.startswith(parts.scheme + "://"):
        raise ValueError(f"{redact_url(url)!r}: the scheme must be redis://, rediss:// (TLS) or unix://")
    from urllib.parse import parse_qs
    query = parse_qs(parts.query)
    if parts.scheme == "unix":
        if not parts.path or parts.path == "/":
            raise ValueError(f"{redact_url(url)!r} names no socket file; use unix:///path/to/socket")
    else:
        check_host_port(url, f"{parts.scheme}://host[:port][/db]")
        db = parts.path.strip("/")
        if db and "db" not in query and not db.isdigit():
            raise ValueError(f"{redact_url(url)!r}: database {db!r} is not a number; use /0, /1, ...")
    for name in ("db", "socket_timeout", "socket_connect_timeout", "max_connections", "health_check_interval",
                 "protocol"):
        for value in query.get(name, []):
            try:
                float(value)
            except ValueError:
                raise ValueError(f"{redact_url(url)!r}: {name}={value!r} is not a number") from None


def _segments_intersect(p1: Point, p2: Point, p3: Point, p4: Point) -> bool:
    def orient(a: Point, b: Point, c: Point) -> float:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    d1, d2 = orient(p3, p4, p1), orient(p3, p4, p2)
    d3, d4 = orient(p1, p2, p3), orient(p1, p2, p4)
    return (d1 * d2 < 0) and (d3 * d4 < 0)


def polygon_self_intersects(points: list[Point]) -> bool:
    """True when two non-adjacent edges of the closed polygon cross."""
    n = len(points)
    edges = [(points[i], points[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # adjacent edges share a vertex
            if _segments_intersect(*edges[i], *edges[j]):
                return True
    return False


def _polygon_area(points: list[Point]) -> float:
    n = len(points)
    return 0.5 * abs(sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1]
                         for i in range(n)))


def _check_polygon(points: list[Point]) -> list[Point]:
    if len(points) < 3:
        raise ValueError("a polygon needs at least 3 points [x, y] in 0-1")
    if polygon_self_intersects(points):
        raise ValueError("polygon edges cross each other (self-intersecting); list the points in order "
                         "around the outline")
    if _polygon_area(points) < 1e-6:
        raise ValueError("polygon has no area (points are collinear or repeated)")
    return points


# --------------------------------------------------------------------------- geometry


class ZoneConfig(Strict):
    """A named polygon on the picture, used by rules."""

    polygon: list[Point] = Field(
        description="Corner points [x, y] in relative coordinates (0-1, origin top-left), in order "
        "around the outline; at least 3, edges must not cross.")

    _poly = field_validator("polygon")(classmethod(lambda cls, v: _check_polygon(v)))


class LineConfig(Strict):
    """A tripwire from point A to point B, counted in one direction."""

    a: Point = Field(description="Start point A [x, y], relative 0-1.")
    b: Point = Field(description="End point B [x, y], relative 0-1; must differ from A.")
    direction: Literal["left_to_right", "right_to_left", "both"] = Field(
        "both",
        description="Which crossings count, with left and right as seen standing at A looking "
        "towards B: left_to_right, right_to_left or both (default).")

    @model_validator(mode="after")
    def _not_zero_length(self) -> LineConfig:
        if abs(self.a[0] - self.b[0]) < 1e-6 and abs(self.a[1] - self.b[1]) < 1e-6:
            raise ValueError("line has zero length: A and B are the same point")
        return self


class ScheduleWindow(Strict):
    """A weekly arming window; `end` earlier than `start` runs across midnight."""

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: list(WEEKDAYS),
        description="Weekdays on which the window STARTS (mon..sun); default every day.")
    start: str = Field("00:00", description="Start time HH:MM (24 h, local time of `timezone`).")
    end: str = Field("24:00", description="End time HH:MM; 24:00 is the end of the day; an end "
                     "before the start means the window runs across midnight into the next day.")

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        m = re.fullmatch(r"(\d{1,2}):(\d{2})", v.strip())
        if not m or int(m.group(2)) > 59 or int(m.group(1)) > 24 or (int(m.group(1)) == 24 and m.group(2) != "00"):
            raise ValueError(f"{v!r} is not a time of day; use HH:MM from 00:00 to 24:00")
        return f"{int(m.group(1)):02d}:{m.group(2)}"

    @model_validator(mode="after")
    def _non_empty(self) -> ScheduleWindow:
        if self.start == self.end:
            raise ValueError("start and end are equal: the window would be empty (use 00:00-24:00 for all day)")
        if not self.days:
            raise ValueError("days is empty: name at least one weekday (mon..sun)")
        return self

    def minutes(self) -> tuple[int, int]:
        def m(s: str) -> int:
            h, mi = s.split(":")
            return int(h) * 60 + int(mi)
        return m(self.start), m(self.end)


# --------------------------------------------------------------------------- rules


class HandlingPolicy(Strict):
    """How the room may close, and the system closes or acknowledges, the alerts of one rule."""

    close_while_active: bool | None = Field(
        None, title="Close while the condition lasts",
        description="Whether an operator may close an incident of this rule while one of its alerts is still "
        "going on (the camera still dark, covered, ...). false: the close is refused (409 condition_active) "
        "until the condition clears. Default: true for detection rules, false for tamper alerts.")
    close_on_clear: bool | None = Field(
        None, title="Close when the condition clears",
        description="Close the incident by itself (as the system, audited, outcome genuine) once none of its "
        "alerts is going on any more, if nobody has dispatched it. Default: false for detection rules, true "
        "for tamper alerts.")
    auto_acknowledge: bool = Field(
        False, title="Acknowledge automatically",
        description="The system acknowledges a new incident of this rule at once (audited), so it neither "
        "waits as new nor escalates for acknowledgement; only for severity low. Default false.")

    def effective(self, condition: bool) -> tuple[bool, bool, bool]:
        """(close_while_active, close_on_clear, auto_acknowledge), the defaults filled in for a rule whose
        alert is a lasting condition of the camera (``condition``: tamper) or a detection."""
        cwa = self.close_while_active if self.close_while_active is not None else not condition
        coc = self.close_on_clear if self.close_on_clear is not None else condition
        return cwa, coc, self.auto_acknowledge


class RuleBase(Strict):
    labels: list[str] = Field(["person"], min_length=1,
                              description="Object labels (model class names) this rule watches.")
    min_score: float | None = Field(None, ge=0.0, le=1.0,
                                    description="Minimum detection score 0-1; default: the camera's min_score.")
    min_box: tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)]] = Field(
        (0.0, 0.0), description="Minimum box [width, height] relative to the frame (0-1); smaller "
        "objects are ignored. Default [0, 0].")
    schedule: list[ScheduleWindow] | None = Field(
        None, description="Arming windows; the rule is armed only inside one. Default: always armed.")
    severity: Literal["low", "medium", "high", "critical"] = Field(
        "medium", description="Severity of the alert: low, medium (default), high or critical.")
    name: str | None = Field(None, min_length=1, max_length=60, description="The rule's name as operators read it "
                             "in the room, the history, the clip and print pages (e.g. 大堂入侵); carried on the "
                             "bus as rule.name. Default: the name of its kind (区域入侵, 徘徊 ...).")
    procedure: str | None = Field(None, max_length=4000, description="Standard operating procedure "
                                  "(处置预案) shown to the operator handling an alert of this rule; free text.")
    incident_window_s: float | None = Field(None, ge=0, le=86400, description="Seconds after the last end of "
                                            "an open incident of this camera and this rule's zone or line within "
                                            "which an alert of this rule joins it instead of opening a new one "
                                            "(0: never joins); default: the camera's alerts.incident_window_s.")
    incident_max_s: float | None = Field(None, ge=0, le=7 * 86400, title="Incident length cap (this rule)",
                                         description="Seconds after an incident's first alert after which an "
                                         "alert of this rule opens a new incident instead of joining it (0: no "
                                         "cap); default: the camera's alerts.incident_max_s.")

    handling: HandlingPolicy = Field(default_factory=HandlingPolicy, title="Handling policy",
                                     description="Closing and acknowledging the incidents of this rule: "
                                     "close_while_active, close_on_clear, auto_acknowledge (see below).")

    @field_validator("schedule")
    @classmethod
    def _schedule_not_empty(cls, v: list[ScheduleWindow] | None) -> list[ScheduleWindow] | None:
        if v is not None and not v:
            raise ValueError("an empty schedule never arms the rule; list at least one window, or remove "
                             "`schedule` to arm the rule always")
        return v

    @model_validator(mode="after")
    def _auto_ack_low(self) -> RuleBase:
        if self.handling.auto_acknowledge and self.severity != "low":
            raise ValueError(f"handling.auto_acknowledge is only for severity low (this rule is {self.severity}): "
                             "an acknowledged alert does not ring or escalate")
        return self


class PresenceRule(RuleBase):
    """Any object of the labels anywhere in the picture (the default rule)."""

    kind: Literal["presence"]


class ZoneRule(RuleBase):
    zone: str = Field(description="Name of a zone of this camera.")


class IntrusionRule(ZoneRule):
    """An object inside a zone, anchored at the bottom-centre of its box."""

    kind: Literal["intrusion"]
    inertia: int = Field(3, ge=1, le=50, description="Consecutive detect frames inside the zone before "
                         "it counts (1-50, default 3); filters one-frame flickers.")


class LineCrossingRule(RuleBase):
    """A track crossing a line in the configured direction, once per crossing."""

    kind: Literal["line_crossing"]
    line: str = Field(description="Name of a line of this camera.")
    debounce: float = Field(0.02, gt=0.0, le=0.5, description="Distance from the line (relative "
                            "0-0.5, default 0.02) an anchor must reach on the far side before a "
                            "crossing counts; a box flickering on the line never counts twice.")


class LoiteringRule(ZoneRule):
    """A track staying inside a zone longer than `dwell_s`."""

    kind: Literal["loitering"]
    dwell_s: float = Field(60.0, gt=0, le=86400, description="Seconds a track must stay in the zone "
                           "(0-86400, default 60).")


class CrowdingRule(ZoneRule):
    """More than `max_count` objects in a zone for `for_s` seconds."""

    kind: Literal["crowding"]
    max_count: int = Field(5, ge=0, le=1000, description="Alert when MORE than this many objects are "
                           "in the zone (0-1000, default 5).")
    for_s: float = Field(10.0, ge=0, le=3600, description="Seconds the count must stay above max_count "
                         "(0-3600, default 10).")


Rule = Annotated[PresenceRule | IntrusionRule | LineCrossingRule | LoiteringRule | CrowdingRule,
                 Field(discriminator="kind")]


# --------------------------------------------------------------------------- cameras


class Officer(Strict):
    name: str = Field(min_length=1, description="Duty officer (community police officer or police "
                      "assistant) dispatched to incidents in this grid cell.")
    phone: str = Field(min_length=3, max_length=32, description="Contact number of the duty officer.")


PlanPoint = tuple[float, float]


class GridCell(Strict):
    name: str = Field(min_length=1, description="Name of the grid cell (网格), e.g. street or village.")
    officer: Officer = Field(description="Who the command room dispatches to this cell.")
    outline: list[PlanPoint] | None = Field(None, description="Outline of the cell on the district plan the "
                                            "dashboard's grid map draws: points [x, y] in any local plan unit "
                                            "(e.g. metres east and north of a landmark), at least 3. Default: "
                                            "the cell is listed but not drawn.")
    webhook: str | None = Field(None, description="http(s) URL of a paging system the dashboard POSTs each "
                                "dispatch to this cell to (JSON: alert, camera, officer, the officer's one-time "
                                "link), retried 3 times; every try is in the alert's timeline. Default: none.")

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, v: str | None) -> str | None:
        if v is not None and urlsplit(v).scheme not in ("http", "https"):
            raise ValueError(f"{redact_url(v)!r}: the webhook must be an http:// or https:// URL")
        return v

    @field_validator("outline")
    @classmethod
    def _outline(cls, v: list[PlanPoint] | None) -> list[PlanPoint] | None:
        if v is not None and len(v) < 3:
            raise ValueError("an outline needs at least 3 points [x, y]")
        return v


class AlertsConfig(Strict):
    end_after_s: float = Field(5.0, gt=0, le=600, description="An alert ends when nothing matching "
                               "its rule has been seen for this many seconds (default 5, max 600).")
    pre_roll_s: float = Field(5.0, ge=0, le=120, description="Seconds of recording before the alert "
                              "its clip covers (0-120, default 5).")
    post_roll_s: float = Field(5.0, ge=0, le=120, description="Seconds of recording after the alert "
                               "ends its clip covers (0-120, default 5).")
    update_interval_s: float = Field(2.0, ge=0, le=600, description="Least seconds between two "
                                     "`update` messages of one alert (default 2).")
    incident_window_s: float = Field(120.0, ge=0, le=86400, description="An alert of the same camera and the "
                                     "same zone or line (or the same rule, for rules without one) that starts "
                                     "within this many seconds after the last end of an open incident, or while "
                                     "one of its alerts is still going on, joins that incident (one room item, "
                                     "every alert kept as an occurrence) instead of opening a new one; a rule's "
                                     "own incident_window_s overrides it. 0: every alert is its own incident. "
                                     "Default 120.")
    incident_max_s: float = Field(3600.0, ge=0, le=7 * 86400, title="Incident length cap", description="An "
                                  "incident takes no new alert this many seconds after its first alert started: "
                                  "the next alert opens a new incident, so a camera that raises an alert every "
                                  "minute for hours is one room item per hour, not one for the whole shift; a "
                                  "rule's own incident_max_s overrides it. 0: no cap. Default 3600 (one hour).")


class MotionConfig(Strict):
    """Motion gating: a cheap check decides whether the detector runs on a sampled frame."""

    enabled: bool = Field(True, description="Run the detector only on frames with motion, plus the "
                          "periodic check (default true). False: detect every sampled frame.")
    width: int = Field(320, ge=64, le=1920, description="Width the grey frame is scaled to for the "
                       "check (64-1920 px, default 320); smaller is cheaper.")
    threshold: int = Field(25, ge=1, le=255, description="Grey-level difference from the background "
                           "that counts a pixel as changed (1-255, default 25).")
    min_area: float = Field(0.001, ge=0.0, le=1.0, description="Share of the (unmasked) picture that "
                            "must change to count as motion (0-1, default 0.001 = 0.1 %: about a 45x45 px "
                            "object at 1080p).")
    alpha: float = Field(0.05, gt=0.0, le=1.0, description="How fast the running background follows "
                         "the picture (0-1, default 0.05 per checked frame).")
    hold_s: float = Field(2.0, ge=0.0, le=60.0, description="Keep detecting this long after the last "
                          "motion (0-60 s, default 2), so a person who stops is followed a while.")
    periodic_s: float = Field(2.0, ge=0.1, le=600.0, description="Detect at least every this many seconds "
                              "even without motion (0.1-600 s, default 2), so a still person is not lost.")
    masks: list[list[Point]] = Field(default_factory=list, description="Motion masks: polygons (relative "
                                     "0-1) where change never counts (trees, clocks, screens).")
    tracked_interval_s: float = Field(0.6, ge=0.0, le=1.2, description="When every watched track is "
                                      "settled and all change lies on the tracks' predicted boxes, detect every "
                                      "this many seconds instead of every sampled frame (0-1.2 s, default 0.6; "
                                      "0 turns it off). Change elsewhere is detected at once.")
    tracked_settle_s: float = Field(1.0, ge=0.0, le=60.0, description="How long a track must have been "
                                    "followed before its motion is sampled at tracked_interval_s (default 1 s: "
                                    "five detections at 5 fps give the tracker a velocity); younger tracks are "
                                    "detected on every sampled frame.")
    track_margin: float = Field(0.2, ge=0.0, le=2.0, description="Share of a track's size its predicted box "
                                "is grown by on each side before change inside it counts as explained by the "
                                "track (0-2, default 0.2): limbs, shadows, a prediction a little off.")
    lookahead_s: float = Field(1.0, ge=0.0, le=5.0, description="Detect every sampled frame while a watched "
                               "track is predicted to reach a line or a zone edge within this many seconds, and "
                               "whenever a rule timer (loitering dwell, crowding, intrusion inertia) is due "
                               "(0-5 s, default 1; 0 turns both off).")
    approach_margin: float = Field(0.02, ge=0.0, le=0.2, description="How near (relative 0-0.2, default "
                                   "0.02, added to a line's debounce) a track's anchor must come to a line or "
                                   "a zone edge to count as reaching it, for lookahead_s.")
    fruitless_after: int = Field(5, ge=0, le=1000, description="After this many detections in a row that "
                                 "found nothing of interest, ongoing motion (traffic the model does not "
                                 "watch, trees, rain) is detected every tracked_interval_s instead of every "
                                 "sampled frame, until an object is seen again (default 5; 0 turns it off).")

    @field_validator("masks")
    @classmethod
    def _masks(cls, v: list[list[Point]]) -> list[list[Point]]:
        for poly in v:
            _check_polygon(poly)
        return v


class IdleConfig(Strict):
    """Idle mode: while nothing moves, decode only keyframes (over 10x cheaper)."""

    enabled: bool | None = Field(None, description="Decode only keyframes while the picture is still; "
                                 "on motion, catch up from the keyframe and decode everything again. "
                                 "Default: on when the camera has a separate record_source (a sub-stream "
                                 "for detection), off otherwise.")
    after_s: float = Field(10.0, ge=1.0, le=3600.0, description="Seconds without motion before going "
                           "idle (1-3600, default 10).")


class WatchdogConfig(Strict):
    """When a stream counts as stalled, and how reconnects are paced."""

    stall_s: float = Field(10.0, ge=1.0, le=300.0, description="Seconds without a packet before the "
                           "stream counts as stalled and is reconnected (1-300, default 10).")
    backoff_initial_s: float = Field(1.0, ge=0.1, le=60.0, description="First reconnect delay "
                                     "(default 1 s), doubled per failure, with ±20 % jitter.")
    backoff_max_s: float = Field(30.0, ge=1.0, le=600.0, description="Cap of the reconnect delay "
                                 "(default 30 s).")


class TamperDarkConfig(Strict):
    """A camera gone dark (画面过暗 / 黑屏): lens capped, sprayed black, or its lights cut."""

    enabled: bool = Field(True, description="Check for a dark picture (default true).")
    max_luma: float = Field(12.0, ge=0.0, le=128.0, description="Mean brightness (0-255, full range) below "
                            "which the picture counts as dark (0-128, default 12).")
    relative: bool = Field(True, description="Also require the brightness to fall below `ratio` of the "
                           "camera's own recent brightness (learned over tamper.learn_s), so a camera that is "
                           "normally dark at night does not alert every night; dusk is followed, a sudden "
                           "black-out is not. false: max_luma alone decides (default true).")
    ratio: float = Field(0.35, gt=0.0, le=1.0, description="With relative: share of the learned brightness "
                         "below which the picture counts as dark (0-1, default 0.35).")
    for_s: float = Field(10.0, ge=0.0, le=3600.0, description="Seconds the picture must stay dark before "
                         "the alert (0-3600, default 10).")


class TamperCoveredConfig(Strict):
    """A covered or blinded lens (遮挡): a cap, tape, a card, a hand, a bag, a torch into the lens."""

    enabled: bool = Field(True, description="Check for a covered lens (default true).")
    max_std: float = Field(6.0, ge=0.0, le=64.0, description="Contrast (standard deviation of brightness, "
                           "0-255 scale) below which the picture counts as flat (0-64, default 6) ...")
    std_ratio: float = Field(0.35, gt=0.0, le=1.0, description="... and below this share of the camera's "
                             "learned contrast, so a scene that is normally flat at night does not alert "
                             "(0-1, default 0.35).")
    edge_ratio: float = Field(0.25, gt=0.0, le=1.0, description="Also covered: edge strength below this share "
                              "of the learned one while the picture's layout no longer matches the reference "
                              "(something close to the lens over most of the view; 0-1, default 0.25).")
    for_s: float = Field(15.0, ge=0.0, le=3600.0, description="Seconds the lens must stay covered before the "
                         "alert (0-3600, default 15): a bus or a passer-by filling the view is gone sooner.")


class TamperBlurConfig(Strict):
    """A defocused or smeared lens (画面模糊): the scene still there, its detail gone."""

    enabled: bool = Field(True, description="Check for a defocused picture (default true).")
    ratio: float = Field(0.5, gt=0.0, le=1.0, description="Sharpness (fine detail per unit of edge "
                         "strength, so independent of light) below this share of the camera's learned "
                         "sharpness counts as blurred, while the layout still matches the reference "
                         "(0-1, default 0.5).")
    for_s: float = Field(30.0, ge=0.0, le=3600.0, description="Seconds the picture must stay blurred before "
                         "the alert (0-3600, default 30): rain drops and fog come and go.")


class TamperMovedConfig(Strict):
    """A camera turned away or knocked out of place (移位): the view no longer matches its reference."""

    enabled: bool = Field(True, description="Check for a moved camera (default true).")
    min_similarity: float = Field(0.5, gt=0.0, le=1.0, description="Structure similarity with the learned "
                                  "reference (median correlation of the edge maps over 12 blocks of the view, "
                                  "0-1) below which the view counts as changed (default 0.5).")
    for_s: float = Field(60.0, ge=0.0, le=3600.0, description="Seconds the view must stay changed before the "
                         "alert (0-3600, default 60): a bus stopping in front of the camera leaves sooner.")
    adopt_after_s: float = Field(3600.0, ge=0.0, le=604800.0, description="A changed view held this long "
                                 "is taken as the camera's new view (re-aimed on purpose): the alert ends and "
                                 "the reference is learned again (0 = never; default 3600 s).")


class TamperConfig(Strict):
    """Camera tamper checks (画面异常: 黑屏, 遮挡, 模糊, 移位) on the frames already decoded for detection.

    Each check compares cheap statistics of a small grey copy of the frame with a reference the
    camera learns slowly while its picture is normal; a condition must hold for its `for_s` and
    ends after `clear_s` clear, so headlights, a passing bus or nightfall raise nothing."""

    enabled: bool = Field(True, description="Run the tamper checks on this camera (default true).")
    interval_s: float = Field(0.5, ge=0.0, le=60.0, description="Check at most this often (0-60 s, default "
                              "0.5; 0 = every sampled frame). In idle mode, every decoded keyframe.")
    width: int = Field(160, ge=64, le=640, description="Width the grey frame is shrunk to for the checks "
                       "(64-640, default 160).")
    learn_s: float = Field(300.0, ge=10.0, le=86400.0, description="Time constant of the learned reference "
                           "(brightness, contrast, sharpness, edge map): how fast it follows slow changes such "
                           "as dusk (10-86400 s, default 300). It learns only while the picture is normal.")
    warmup_s: float = Field(20.0, ge=0.0, le=3600.0, description="Seconds of normal picture learned before "
                            "the checks against the reference start (0-3600, default 20); until then only a "
                            "black or flat picture alerts.")
    clear_s: float = Field(5.0, ge=0.0, le=600.0, description="Seconds a condition must stay clear before its "
                           "alert ends (0-600, default 5).")
    hysteresis: float = Field(0.25, ge=0.0, le=1.0, description="While an alert is open its thresholds are "
                              "this share more lenient, so a value hovering at a threshold does not flap "
                              "(0-1, default 0.25).")
    severity: Literal["low", "medium", "high", "critical"] = Field("high", description="Severity of tamper "
                                                                    "alerts (default high).")
    handling: HandlingPolicy = Field(default_factory=HandlingPolicy, title="Handling policy of tamper alerts",
                                     description="Closing and acknowledging tamper incidents; by default they "
                                     "cannot be closed while the camera is still tampered and close by themselves "
                                     "when it is clear again.")
    dark: TamperDarkConfig = Field(default_factory=TamperDarkConfig, description="Dark picture.")
    covered: TamperCoveredConfig = Field(default_factory=TamperCoveredConfig, description="Covered lens.")
    blur: TamperBlurConfig = Field(default_factory=TamperBlurConfig, description="Defocused picture.")
    moved: TamperMovedConfig = Field(default_factory=TamperMovedConfig, description="Camera moved.")

    @model_validator(mode="after")
    def _auto_ack_low(self) -> TamperConfig:
        if self.handling.auto_acknowledge and self.severity != "low":
            raise ValueError(f"handling.auto_acknowledge is only for severity low (tamper alerts are {self.severity})")
        return self


class RecordingsConfig(Strict):
    """Continuous recording of the record inputs (stream copy, never re-encoded)."""

    enabled: bool = Field(True, description="Record every camera's record input (default true).")
    dir: str = Field("recordings", description="Folder of the recordings, relative to data_dir; laid out "
                     "as <camera>/<YYYY-MM-DD>/<HH>/<start>-<duration>.mp4 (UTC date and hour; epoch "
                     "start in the name) with an index.jsonl of segments and gaps per camera and day.")
    segment_s: float = Field(10.0, ge=1.0, le=600.0, description="Target segment length (1-600 s, "
                             "default 10); a segment starts on a keyframe.")
    format: Literal["mp4", "fmp4"] = Field("mp4", description="Segment container: mp4 (faststart) or "
                                           "fragmented mp4 (readable while written). Default mp4.")
    pre_event_s: float = Field(10.0, ge=0.0, le=120.0, description="Seconds of record-stream packets "
                               "kept in memory per camera for an alert's pre-roll (0-120, default 10).")
    retain_days: float = Field(7.0, gt=0.0, le=3650.0, description="Delete recordings older than this "
                               "(default 7 days), oldest first; protected ranges are kept.")
    quota_gb: float | None = Field(None, gt=0.0, description="Total disk quota of all recordings in GB "
                                   "(default: none); the oldest segments go first.")
    camera_quota_gb: float | None = Field(None, gt=0.0, description="Per-camera quota in GB "
                                          "(default: none).")
    min_free_percent: float = Field(5.0, ge=0.0, le=50.0, description="Free-space watermark of the disk "
                                    "holding recordings and snapshots, in percent (0-50, default 5; 0 turns it "
                                    "off). Checked every few seconds: below it, the oldest recordings and "
                                    "snapshots are deleted at once, whatever their age (protected ranges kept), "
                                    "until 1 point above it.")


class SightingsConfig(Strict):
    """Sightings (目标记录): every confirmed track of a person or vehicle kept for search after an incident.

    A track becomes one record (its best crop, colours, direction and, for vehicles on cameras with
    ``plates`` on, its plate) when it ends, updated every ``every_s`` while it lasts.
    """

    enabled: bool = Field(True, description="Record sightings for this camera (default true).")
    labels: list[str] = Field(["person", "car", "bus", "truck", "motorcycle", "bicycle"], min_length=1,
                              description="Labels whose tracks become sightings (default person, car, bus, "
                              "truck, motorcycle, bicycle).")
    every_s: float = Field(60.0, ge=5.0, le=3600.0, description="While a track lasts, its sighting is written "
                           "again at most this often (5-3600 s, default 60); always when it ends.")
    min_duration_s: float = Field(1.0, ge=0.0, le=60.0, description="Tracks seen for less than this are not "
                                  "recorded (0-60 s, default 1): a flicker is not a sighting.")
    end_after_s: float = Field(2.0, ge=0.5, le=60.0, description="A track not seen for this long has ended "
                               "(0.5-60 s, default 2).")
    sample_s: float = Field(0.5, ge=0.0, le=10.0, description="How often a track's view is weighed as its "
                            "best crop (0-10 s, default 0.5; 0: every detected frame).")
    crop_px: int = Field(256, ge=64, le=1024, description="Longer side of the stored best crop (64-1024 px, "
                         "default 256).")
    plates: bool = Field(False, description="Read licence plates on this camera's vehicle tracks (checkpoints "
                         "卡口, car parks); off by default.")
    plate_reads: int = Field(2, ge=1, le=5, description="Plate reads per vehicle track, from its best crops, "
                             "voted (1-5, default 2): never per frame.")
    plate_min_width_px: int = Field(96, ge=16, le=4096, description="A vehicle narrower than this (source px) "
                                    "is not read for a plate (16-4096, default 96): its plate is too small.")
    retain_days: float = Field(3.0, gt=0.0, le=3650.0, description="Delete this camera's sightings and their "
                               "crops older than this (days, default 3: shorter than recordings).")


class CameraConfig(Strict):
    """One camera: where its video comes from, what raises an alert, and who answers it."""

    name: str = Field(min_length=1, max_length=200, description="Human name shown to operators.")
    source: str = Field(min_length=1, description="rtsp://[user:password@]host[:port]/path, or a "
                        "video file (path or file://) played at real-time pace for demos and tests.")
    grid_cell: str = Field(description="Id of the grid cell (under `grid_cells`) the camera belongs to.")
    neighbours: list[str] = Field(default_factory=list, max_length=32, title="Neighbouring cameras",
                                  description="Ids of cameras (under `cameras`) that look at the same place "
                                  "or the way in and out of it, shown as related cameras in the handling view "
                                  "of this camera's alerts beside those of its grid cell, whatever cell "
                                  "they belong to (each operator sees only those of their own cells). "
                                  "At most 32; default none.")
    position: PlanPoint | None = Field(None, description="Where the camera is on the district plan of the "
                                       "grid map, [x, y] in the unit of the cells' outlines. Default: not drawn.")
    enabled: bool = Field(True, description="Set false to keep the camera configured but not run it.")
    detect_fps: float = Field(5.0, ge=0.1, le=30.0, description="Frames per second sent to the detector, "
                              "sampled by timestamp (0.1-30, default 5).")
    alert_labels: list[str] = Field(["person"], min_length=1, description="Labels that raise an alert "
                                    "when the camera has no explicit rules (default [person]).")
    min_score: float = Field(0.5, ge=0.05, le=1.0, description="Minimum detection score for alerts "
                             "(0.05-1, default 0.5).")
    loop: bool = Field(True, description="For file sources: start again at the end (default true).")
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport (default tcp).")
    timeout_s: float = Field(5.0, ge=0.5, le=60, description="How long opening the stream may take "
                             "before the try counts as failed (0.5-60 s, default 5); a stream that goes "
                             "silent once open is the watchdog's (watchdog.stall_s).")
    zones: dict[str, ZoneConfig] = Field(default_factory=dict, description="Named polygons.")
    lines: dict[str, LineConfig] = Field(default_factory=dict, description="Named tripwires.")
    masks: list[list[Point]] = Field(default_factory=list, description="Object masks: detections whose "
                                     "bottom-centre falls in one of these polygons are ignored.")
    rules: dict[str, Rule] = Field(default_factory=dict, description="Named rules; when empty, a "
                                   "presence rule for alert_labels at min_score applies.")
    alerts: AlertsConfig | None = Field(None, description="Per-camera override of the global `alerts`.")
    record_source: str | None = Field(None, description="Record input (usually the main stream), copied "
                                      "to disk without decoding; default: `source` serves both roles.")
    record: bool = Field(True, description="Record this camera when recordings are enabled (default true).")
    motion: MotionConfig = Field(default_factory=MotionConfig, description="Motion gating.")
    idle: IdleConfig = Field(default_factory=IdleConfig, description="Keyframe-only decoding while still.")
    watchdog: WatchdogConfig = Field(default_factory=WatchdogConfig, description="Stall detection and "
                                     "reconnect pacing.")
    tamper: TamperConfig = Field(default_factory=TamperConfig, description="Tamper alerts: dark, covered, "
                                 "defocused or moved camera.")
    sightings: SightingsConfig = Field(default_factory=SightingsConfig, description="Sightings of people and "
                                       "vehicles kept for search (研判), plates on vehicles when enabled.")

    @field_validator("source", "record_source")
    @classmethod
    def _source(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip()
        try:
            scheme = urlsplit(v).scheme.lower()
        except ValueError as e:
            raise ValueError(f"{redact_url(v)!r} is not a URL ({e})") from None
        if scheme in ("rtsp", "rtsps", "http", "https"):
            check_host_port(v, f"{scheme}://[user:password@]host[:port]/path")
            return v
        if scheme and scheme != "file" and len(scheme) > 1:
            raise ValueError(f"unsupported scheme {scheme!r}; use rtsp://, rtsps://, http(s):// or a file path")
        return v

    @field_validator("masks")
    @classmethod
    def _masks(cls, v: list[list[Point]]) -> list[list[Point]]:
        for poly in v:
            _check_polygon(poly)
        return v

    def effective_rules(self) -> dict[str, RuleBase]:
        """The rules that run: the configured ones, or a presence rule from alert_labels."""
        if self.rules:
            return dict(self.rules)
        return {"presence": PresenceRule(kind="presence", labels=list(self.alert_labels),
                                         min_score=self.min_score)}

    def is_file_source(self, url: str | None = None) -> bool:
        scheme = urlsplit(url or self.source).scheme.lower()
        return scheme in ("", "file") or len(scheme) == 1

    def file_path(self, base: Path, url: str | None = None) -> Path:
        url = url or self.source
        p = Path(url[7:] if url.startswith("file://") else url)
        return p if p.is_absolute() else (base / p)

    def resolved(self, base: Path, url: str | None = None) -> str:
        """The URL or absolute file path PyAV opens."""
        url = url or self.source
        return str(self.file_path(base, url)) if self.is_file_source(url) else url

    def idle_enabled(self) -> bool:
        return self.idle.enabled if self.idle.enabled is not None else self.record_source is not None


class ModelConfig(Strict):
    name: str = Field("yolox_nano", description="Model manifest name in models/ (fetched and "
                      "checksum-verified on first use), or a path to an .onnx file (or a .json "
                      "manifest), relative to the config file's folder.")
    path: str | None = Field(None, description="Folder the weights of a model name are fetched into and "
                             "read from, relative to the config file's folder (e.g. data/models to keep them "
                             "beside the recordings); default: the shared model store, $SHARPEYE_MODELS_DIR "
                             "or ~/.cache/sharpeye/models, used by every sharpeye command.")
    providers: list[Literal["cpu", "cuda", "tensorrt"]] = Field(
        ["cpu"], min_length=1, description="onnxruntime execution providers in order of preference; "
        "those not installed are skipped, CPU is always the last resort. Default [cpu].")
    threads: int | None = Field(None, ge=1, le=256, description="Intra-op threads of the CPU provider; "
                                "default: onnxruntime's choice (all cores).")
    score_threshold: float = Field(0.25, ge=0.01, le=1.0, description="Detector score floor before NMS "
                                   "(default 0.25); rules apply their own min_score on top.")
    nms_iou: float = Field(0.45, gt=0, le=1.0, description="IoU above which NMS suppresses a box (default 0.45).")
    batch_across_cameras: Literal["auto", "on", "off"] = Field(
        "auto", description="Run one detector call on a frame of every camera of a worker when the model was "
        "exported with batch 1, by making its batch axis dynamic (checked against frame-by-frame outputs "
        "at load; needs the onnx package, in the gpu extra). auto: on a GPU provider, where it multiplies "
        "throughput (docs/benchmarks.md, GPU); on: also on CPU, where it barely helps; off: never.")


class SeverityTimes(Strict):
    """A time limit in seconds for each alert severity."""

    low: float = Field(gt=0, le=86400, description="Seconds for a low-severity alert.")
    medium: float = Field(gt=0, le=86400, description="Seconds for a medium-severity alert.")
    high: float = Field(gt=0, le=86400, description="Seconds for a high-severity alert.")
    critical: float = Field(gt=0, le=86400, description="Seconds for a critical alert.")


class EscalationConfig(Strict):
    """When an alert nobody handles in time is escalated (升级): marked overdue, sounded again, sent up."""

    acknowledge_s: SeverityTimes = Field(
        default_factory=lambda: SeverityTimes(low=900, medium=300, high=120, critical=60),
        description="An alert still new (待处理) after this long is escalated; default low 900, medium 300, "
        "high 120, critical 60 s.")
    sign_for_s: SeverityTimes = Field(
        default_factory=lambda: SeverityTimes(low=1200, medium=600, high=300, critical=180),
        description="A dispatch not signed for (已签收) by the duty officer this long after it was sent is "
        "escalated; default low 1200, medium 600, high 300, critical 180 s.")
    on_scene_s: SeverityTimes = Field(
        default_factory=lambda: SeverityTimes(low=3600, medium=1800, high=900, critical=600),
        description="A dispatch signed for whose officer has not reported being on scene (已到场) this long after "
        "signing is escalated; default low 3600, medium 1800, high 900, critical 600 s.")
    feedback_s: SeverityTimes = Field(
        default_factory=lambda: SeverityTimes(low=7200, medium=3600, high=1800, critical=1200),
        description="An officer on scene who has not given feedback (已反馈) this long after arriving is "
        "escalated; default low 7200, medium 3600, high 1800, critical 1200 s.")


class DashboardConfig(Strict):
    host: str = Field("127.0.0.1", description="Address the dashboard listens on (default loopback).")
    port: int = Field(8080, ge=1, le=65535, description="Port of the dashboard (default 8080).")
    database_url: str | None = Field(None, description="SQLAlchemy URL of the history database (alerts, "
                                     "their updates, camera changes, operator actions, users), e.g. "
                                     "postgresql+psycopg://user:pw@host/db; default: SQLite (WAL) at "
                                     "<data_dir>/history.sqlite.")
    metrics_token: str | None = Field(None, min_length=16, description="Bearer token a Prometheus "
                                      "scraper may send to read /metrics without a session (at least 16 "
                                      "characters); default: /metrics needs a logged-in session.")
    escalation: EscalationConfig = Field(default_factory=EscalationConfig, description="Escalation "
                                         "of alerts not acknowledged, or dispatches not signed for, in time.")
    tls_cert: str | None = Field(None, description="PEM certificate file (with its chain) for HTTPS, taken from "
                                 "the config file's folder when relative; with tls_key the dashboard serves HTTPS "
                                 "only and its session cookies are Secure. Without TLS, `sharpeye run` refuses a "
                                 "host other than loopback (passwords would cross the network in clear). "
                                 "Default: plain HTTP on loopback.")
    tls_key: str | None = Field(None, description="PEM private key of tls_cert (unencrypted; keep it readable by "
                                "the service user only). Both or neither must be set.")
    trusted_proxies: list[str] = Field(default_factory=list, description="Addresses or networks (CIDR) of "
                                       "load balancers in front of the dashboard whose X-Forwarded-For and "
                                       "X-Forwarded-Proto are believed, so the audit log and the log-in limit see "
                                       "the operator's address, not the balancer's (default none: the "
                                       "connection's own address, headers ignored).")
    orphan_alert_s: float = Field(60.0, ge=10, le=86400, description="An alert still open on the bus whose "
                                  "camera no worker has reported for this long is shown as stale (no worker "
                                  "owns it) instead of live, until a restarted worker ends it; default 60 s.")
    fault_after_s: float = Field(300.0, ge=30, le=7 * 86400, title="Camera fault threshold", description="A "
                                 "camera the workers report offline, or a tamper alert (dark, covered, blurred, "
                                 "moved) holds, this long goes on the patrol fault list (故障报修) with the "
                                 "check that found it and since when; checked every 30 s. Default 300 s.")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        import ipaddress
        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network "
                                 "(such as 10.0.0.5 or 10.0.0.0/24)") from None
        return v

    @model_validator(mode="after")
    def _tls_pair(self) -> DashboardConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both (HTTPS) or neither (loopback HTTP)")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None


def is_loopback(host: str) -> bool:
    """Whether a listen address only accepts this machine's own connections (a name other than
    ``localhost`` counts as not loopback: it may resolve to anything)."""
    import ipaddress

    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class BusConfig(Strict):
    prefix: str = Field("sharpeye", pattern=r"^[A-Za-z0-9:_-]+$", description="Prefix of every Redis key.")
    events_maxlen: int = Field(100_000, ge=100, le=10_000_000, description="Approximate cap of the "
                               "events stream (XADD MAXLEN ~), so Redis cannot grow without bound.")
    outbox_max_messages: int = Field(100_000, ge=100, le=10_000_000, description="Messages each worker keeps "
                                     "on disk (data_dir/outbox) while Redis is unreachable; when full, the "
                                     "oldest alert updates go first, alert starts and ends last.")
    wait_replicas: int = Field(0, ge=0, le=16, description="With replicas (Redis Sentinel, docs/ha.md): the "
                               "outbox keeps each alarm-class message (an alert's start or end, a camera "
                               "going offline or online) until `WAIT` reports this many replicas hold it, "
                               "and sends it again if the primary changes first, so a failover loses none. "
                               "0 (default, one machine): no replica is waited for.")
    wait_timeout_ms: int = Field(1000, ge=10, le=2500, description="How long one `WAIT` for replicas may "
                                 "block the outbox's delivery; when it runs out the messages stay in the "
                                 "outbox and are confirmed (or sent again) later. Below the client's "
                                 "socket timeout (3 s with Sentinel).")


class SupervisorConfig(Strict):
    heartbeat_timeout_s: float = Field(15.0, ge=2, le=3600, description="`sharpeye run` restarts a worker "
                                       "whose detect loop has been silent this long (a dead, deadlocked or "
                                       "stopped worker), default 15 s.")
    startup_grace_s: float = Field(60.0, ge=5, le=3600, description="Time a starting worker has for its "
                                   "first heartbeat (model load, camera setup) before it is restarted, "
                                   "default 60 s.")


def split_hostport(text: str) -> tuple[str, int]:
    """``host:port`` (IPv6 in brackets) as (host, port); ValueError names what is wrong."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not host:port (e.g. 127.0.0.1:0 or 0.0.0.0:8091, [::]:8091)")
    if host.startswith("[") != host.endswith("]") or (":" in host and not host.startswith("[")):
        raise ValueError(f"{text!r}: an IPv6 address goes in brackets, e.g. [::1]:8091")
    return host.strip("[]"), int(port)


class ClusterConfig(Strict):
    """Many workers on many machines share the cameras through leases in Redis (pipeline/cluster).

    Off by default: one machine runs its cameras by the stable shard hash, exactly as without it."""

    enabled: bool = Field(False, description="Own cameras by lease: each worker runs only the cameras whose "
                          "lease it holds in the bus's Redis, so workers on several machines share one config "
                          "and a dead machine's cameras move to the living (default false: one machine).")
    worker_id: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$",
                                  description="This worker's name in leases, fencing stamps and the owner "
                                  "history; default <hostname>-<pid> (a restarted worker is a new owner).")
    lease_ttl_s: float = Field(8.0, ge=2.0, le=120.0, description="Lifetime of a camera lease: a worker that "
                               "stops renewing (dead, frozen, cut off) loses its cameras after this long and "
                               "another worker takes them (2-120 s, default 8 s).")
    renew_s: float = Field(1.0, ge=0.1, le=30.0, description="Period of the coordinator's round: heartbeat, "
                           "renew every held lease in one round trip, take free cameras (default 1 s; must be "
                           "under a third of lease_ttl_s).")
    safety_margin_s: float | None = Field(None, ge=0.0, le=60.0, description="A worker stops a camera whose "
                                          "lease it has not renewed for lease_ttl_s minus this, measured from "
                                          "when the last good renewal was sent, so it is quiet before the lease "
                                          "can expire elsewhere; default max(1 s, 2 x renew_s).")
    capacity: float = Field(1.0, gt=0.0, le=1000.0, description="This worker's weight in the rendezvous hash: "
                            "a worker of capacity 2 is preferred for about twice the cameras of one of "
                            "capacity 1 (default 1).")
    max_cameras: int | None = Field(None, ge=1, le=100_000, description="Most cameras this worker runs at once; "
                                    "cameras beyond go to the next preferred worker (default no cap).")
    moves_per_s: float = Field(5.0, gt=0.0, le=10_000.0, description="Most cameras this worker hands over or "
                               "takes from a living owner per second, so a worker joining or coming back does not "
                               "restart many streams at once; a dead owner's cameras are taken at once "
                               "(default 5).")
    history_maxlen: int = Field(10_000, ge=100, le=10_000_000, description="Approximate cap of the stream of "
                                "camera moves (P:cluster:moves) the dashboard reads the owner history from.")
    segment_key_file: str | None = Field(None, min_length=1, description="The site key's file (32 random bytes, "
                                         "base64, mode 0600): signs segment requests, catalogue rows and live "
                                         "requests between machines, so every machine of a site needs the same "
                                         "file; relative paths are taken from the config file's folder; default "
                                         "<data_dir>/cluster/segment.key, made on first use "
                                         "(docs/recording-cluster.md).")
    segment_listen: str = Field("127.0.0.1:0", description="host:port the worker's segment server binds (the "
                                "recordings other machines fetch for exports and clips); port 0 takes a free "
                                "one, a fixed port is that of worker process 0 of a machine and process I binds "
                                "port + I; default loopback only: set 0.0.0.0:<port> where another machine "
                                "exports or cuts clips.")
    live_listen: str = Field("127.0.0.1:0", description="host:port the worker's live seam binds (live video and "
                             "the finish op of open-alert clips, docs/live.md), announced in Redis "
                             "(P:cluster:live) for the dashboards of other machines; the same port rule as "
                             "segment_listen; default loopback: only a dashboard on the worker's own machine "
                             "reaches it.")
    advertise_host: str | None = Field(None, min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:_\[\]-]+$",
                                       description="The host name or address other machines dial to reach "
                                       "this worker's segment server and live seam (per host: the worker's "
                                       "--advertise-host overrides it); default the listen host, or the "
                                       "machine's hostname when listening on all interfaces.")

    @field_validator("segment_listen", "live_listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        split_hostport(v)
        return v

    @model_validator(mode="after")
    def _periods(self) -> ClusterConfig:
        if self.renew_s * 3 > self.lease_ttl_s:
            raise ValueError(f"renew_s ({self.renew_s:g}) must be at most a third of lease_ttl_s "
                             f"({self.lease_ttl_s:g}), so a lease survives a lost round or two")
        if self.margin_s() >= self.lease_ttl_s - self.renew_s:
            raise ValueError(f"safety_margin_s ({self.margin_s():g}) leaves no time to renew within "
                             f"lease_ttl_s ({self.lease_ttl_s:g})")
        return self

    def margin_s(self) -> float:
        """How long before the lease's expiry a worker stops a camera it could not renew."""
        return self.safety_margin_s if self.safety_margin_s is not None else max(1.0, 2 * self.renew_s)


class Config(Strict):
    """Root of streams.yaml."""

    version: Literal[1] = Field(1, description="Schema version of this file (1).")
    data_dir: str = Field("data", description="Where snapshots, recordings and the embedded Redis live; "
                          "relative paths are taken from the config file's folder.")
    redis_url: str | None = Field(None, description="The bus: redis://[[user]:password@]host[:port][/db], "
                                  "rediss://... (TLS), unix:///path/to/socket or, for a primary with replicas "
                                  "watched by Redis Sentinel, redis+sentinel://[[user]:password@]host:port[,host:port...]/"
                                  "service_name[/db] (docs/ha.md); when absent, `sharpeye run` "
                                  "starts a private redis-server under data_dir.")
    timezone: str | None = Field(None, description="IANA time zone for schedules, e.g. Asia/Shanghai; "
                                 "default: the machine's local time.")
    workers: int | None = Field(None, ge=1, le=64, description="Worker processes; cameras are spread over "
                                "them by a stable hash of their id, each has one detector. Default: one per "
                                "CPU core, at most one per enabled camera (one detect loop is serial).")
    reader_nice: int = Field(10, ge=0, le=19, description="How much lower than the detect thread the camera "
                             "reader threads (demux and decode) run, as a nice value (Linux, per thread). With "
                             "many cameras, the decoder threads otherwise hold the cores just when the one "
                             "detect loop needs one, and sampled frames are skipped with CPU to spare on "
                             "average (docs/benchmarks.md: 22-42 % skipped at 20 busy 720p cameras on 2 full "
                             "cores, 1.4 % niced). 0 = all threads equal; default 10.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The detector.")
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig, description="The web app.")
    bus: BusConfig = Field(default_factory=BusConfig, description="Redis Streams naming and caps.")
    supervisor: SupervisorConfig = Field(default_factory=SupervisorConfig, description="How `sharpeye run` "
                                         "watches its workers.")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="Camera ownership by lease "
                                   "across machines (off by default).")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="Alert lifecycle defaults.")
    recordings: RecordingsConfig = Field(default_factory=RecordingsConfig, description="Continuous "
                                         "recording and retention.")
    grid_cells: dict[str, GridCell] = Field(default_factory=dict, description="Grid cells by id.")
    cameras: dict[Annotated[str, Field(pattern=CAMERA_ID)], CameraConfig] = Field(
        description="Cameras by id (letters, digits, _ and -, up to 64 characters).")

    # filled in by load_config, not part of the file
    path: Path | None = Field(None, exclude=True, description="(internal) the file this came from.")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        if v is not None:
            check_redis_url(v.strip())
        return v.strip() if v is not None else v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from zoneinfo import ZoneInfo
        try:
            ZoneInfo(v)
        except Exception:
            raise ValueError(f"unknown time zone {v!r}; use an IANA name such as Asia/Shanghai") from None
        return v

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> Config:
        classes = (info.context or {}).get("classes") if info.context else None
        problems = cross_check(self.model_dump(), classes)
        if problems:
            raise CrossCheckError(problems)
        return self

    def data_path(self) -> Path:
        base = self.path.parent if self.path else Path.cwd()
        p = Path(self.data_dir)
        return p if p.is_absolute() else (base / p).resolve()

    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def models_path(self) -> Path | None:
        """The folder ``model.path`` names (from the config's folder), or None: the shared model store."""
        if self.model.path is None:
            return None
        p = Path(self.model.path).expanduser()
        return p if p.is_absolute() else (self.base_dir() / p).resolve()

    def camera_alerts(self, cid: str) -> AlertsConfig:
        return self.cameras[cid].alerts or self.alerts

    def tzinfo(self) -> dt.tzinfo | None:
        """The zone schedules are read in: `timezone`, else the machine's local zone."""
        if self.timezone:
            from zoneinfo import ZoneInfo
            return ZoneInfo(self.timezone)
        return dt.datetime.now().astimezone().tzinfo

    def worker_count(self) -> int:
        import os
        if self.workers is not None:
            return self.workers
        return max(1, min(os.cpu_count() or 1, len(self.enabled_cameras())))

    def enabled_cameras(self) -> dict[str, CameraConfig]:
        return {cid: c for cid, c in self.cameras.items() if c.enabled}


def cross_check(data: Any, classes: list[str] | None = None) -> list[tuple[tuple[Any, ...], str]]:
    """Problems between fields (grid cells, zone and line references, labels not in the model).

    Works on plain data, and skips what has the wrong shape, so the loader can run it also on a
    file whose fields failed validation: every problem is then reported in one pass.
    """
    def mapping(value: Any) -> dict[Any, Any]:
        return value if isinstance(value, dict) else {}

    problems: list[tuple[tuple[Any, ...], str]] = []
    data = mapping(data)
    cells, cameras, model = mapping(data.get("grid_cells")), mapping(data.get("cameras")), mapping(data.get("model"))
    for cid, cam in cameras.items():
        if not isinstance(cam, dict):
            continue
        cell = cam.get("grid_cell")
        if isinstance(cell, str) and cell not in cells:
            known = ", ".join(sorted(map(str, cells))) or "none defined"
            problems.append((("cameras", cid, "grid_cell"),
                             f"grid cell {cell!r} is not defined under grid_cells (defined: {known})"))
        neighbours = cam.get("neighbours")
        for i, other in enumerate(neighbours if isinstance(neighbours, list) else []):
            if isinstance(other, str) and (other not in cameras or other == cid):
                what = "is the camera itself" if other == cid else "is not defined under cameras"
                problems.append((("cameras", cid, "neighbours", i),
                                 f"camera {cid!r}: neighbour {other!r} {what}"))
        rules = mapping(cam.get("rules"))
        for rid, rule in rules.items():
            if not isinstance(rule, dict):
                continue
            for attr, key, kinds in (("zone", "zones", ("intrusion", "loitering", "crowding")),
                                     ("line", "lines", ("line_crossing",))):
                table = mapping(cam.get(key))
                ref = rule.get(attr) if rule.get("kind") in kinds else None
                if isinstance(ref, str) and ref not in table:
                    known = ", ".join(sorted(map(str, table))) or "none defined"
                    problems.append((("cameras", cid, "rules", rid, attr),
                                     f"{attr} {ref!r} does not exist on this camera ({attr}s: {known})"))
        if classes:
            labelled: list[tuple[tuple[Any, ...], Any]] = [
                (("cameras", cid, "alert_labels"), cam.get("alert_labels"))]
            labelled += [(("cameras", cid, "rules", rid, "labels"), r.get("labels"))
                         for rid, r in rules.items() if isinstance(r, dict)]
            for where, labels in labelled:
                for lab in labels if isinstance(labels, list) else []:
                    if isinstance(lab, str) and lab not in classes:
                        problems.append((where, f"label {lab!r} is not a class of the model "
                                         f"{model.get('name', 'yolox_nano')!r} (e.g. "
                                         f"{', '.join(list(classes)[:6])}, ...)"))
    return problems


class CrossCheckError(ValueError):
    """Several problems found after field validation, each with its own location."""

    def __init__(self, problems: list[tuple[tuple[Any, ...], str]]):
        super().__init__("; ".join(m for _, m in problems))
        self.problems = problems
