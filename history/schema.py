"""The history database schema: the one place that says what is stored.

Every table the dashboard and the archiver use is declared here; the Alembic migrations
next to this module (``migrations/versions``) build exactly this schema, and a test compares
the two.  Times are Unix epoch seconds (floats), as on the bus, so no time-zone conversion
happens in storage; the page shows them in the config's zone.

- ``alerts``: one row per alert: the latest detection data from the bus plus its workflow
  state (new → acknowledged → dispatched → resolved / false_alarm), owner, dispatch steps,
  escalation and closing.  Indexed for searches by time with camera, cell, rule, kind or state.
- ``alert_messages``: every bus message of an alert (new, updates, end), de-duplicated.
- ``camera_events``: cameras going offline and coming back.
- ``actions``: the audit log and per-alert timeline: every operator action, log-in and
  system step (escalation).  Append-only: triggers refuse UPDATE and DELETE.
- ``users`` and ``sessions``: log-ins with argon2id hashes and server-side sessions.
- ``dispatch_links``: the one-time links a dispatched officer opens on a phone to report the
  dispatch steps (signed for, on scene, feedback) without an account (migration 0003).
- ``export_jobs`` and ``cases``: exports started from the page (who, which cameras and range, their
  progress, files and manifest hash, release) and the cases grouping them (name, description,
  linked alerts) (migration 0004); a case is its owner and its name, with its own folder (migration
  0006).  The files themselves live under ``<data_dir>/exports``.
- ``segment_catalog``: which worker holds which recorded segment (camera, start, end, bytes, sha256,
  fencing token, the worker's segment server), announced by the workers on ``P:segments`` and
  stored by the archiver, so export and the alert clip find recordings across machines
  (migration 0005, docs/recording-cluster.md).
- ``patrol_plans``, ``patrols``, ``patrol_marks``, ``camera_faults``, ``manual_alarms``: video patrol
  (视频巡查): named, ordered camera lists with a dwell per camera and an optional schedule; each run of a
  plan with who and when; per camera shown its mark (normal, finding, fault) and its time on screen; the
  fault list per cell with its repair; and the alarms raised by hand (a finding on patrol, a phone
  report), whose incident itself is a row of ``alerts`` like any detected one (migration 0006).
- ``sightings``: every confirmed track of a person or vehicle (camera, cell, first/last time, label,
  direction, main colours per part, plate for vehicles on cameras that read them, the best crop's file),
  searched by plate (exact, prefix, one wrong character), label, colour, camera, cell and time
  (migration 0006).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

ROLES = ("operator", "engineer", "admin")
STATES = ("new", "acknowledged", "dispatched", "resolved", "false_alarm")
OPEN_STATES = ("new", "acknowledged", "dispatched")
DISPATCH_STEPS = ("sent", "signed_for", "on_scene", "feedback")
CLASSIFICATIONS = ("genuine", "false_alarm", "duplicate", "test")

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(200), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("cells", Text, nullable=False, doc='JSON list of grid cell ids the user may see; ["*"] = all'),
    Column("locale", String(8), nullable=False, server_default="zh-CN"),
    Column("disabled", Boolean, nullable=False, server_default="0"),
    Column("failed_logins", Integer, nullable=False, server_default="0"),
    Column("locked_until", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("password_changed_at", Float, nullable=False),
)

sessions = Table(
    "sessions", metadata,
    Column("id", String(64), primary_key=True, doc="sha256 of the cookie value: a stolen table is no key"),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("remote", String(64), nullable=True),
    Column("user_agent", String(300), nullable=True),
)

alerts = Table(
    "alerts", metadata,
    Column("id", String(128), primary_key=True),
    Column("camera_id", String(64), nullable=False),
    Column("camera_name", String(200), nullable=False),
    Column("grid_cell_id", String(64), nullable=False),
    Column("grid_cell_name", String(200), nullable=False),
    Column("officer_name", String(200), nullable=True),
    Column("officer_phone", String(32), nullable=True),
    Column("rule_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("labels", String(300), nullable=False, doc="comma-framed: ',person,car,' so LIKE '%,person,%' finds one"),
    Column("score", Float, nullable=False),
    Column("start_time", Float, nullable=False),
    Column("end_time", Float, nullable=True),
    Column("phase", String(8), nullable=False, doc="detection lifecycle: new, update, end"),
    Column("updated_at", Float, nullable=False),
    Column("snapshot_path", String(400), nullable=True),
    Column("message", Text, nullable=False, doc="the latest bus message (JSON)"),
    Column("state", String(16), nullable=False, server_default="new"),
    Column("owner_id", Integer, ForeignKey("users.id"), nullable=True),
    Column("owner_name", String(200), nullable=True),
    Column("acknowledged_at", Float, nullable=True),
    Column("acknowledged_by", String(200), nullable=True),
    Column("dispatch_step", String(16), nullable=True),
    Column("dispatched_at", Float, nullable=True),
    Column("signed_for_at", Float, nullable=True),
    Column("on_scene_at", Float, nullable=True),
    Column("feedback_at", Float, nullable=True),
    Column("closed_at", Float, nullable=True),
    Column("closed_by", String(200), nullable=True),
    Column("classification", String(16), nullable=True),
    Column("close_comment", Text, nullable=True),
    Column("escalation_level", Integer, nullable=False, server_default="0"),
    Column("escalated_at", Float, nullable=True),
    Column("escalation_step", String(16), nullable=True,
           doc="the step escalation_level counts (acknowledge, signed_for, on_scene, feedback); a level of "
               "another step than the current one is spent (migration 0006)"),
    Column("incident_id", String(128), nullable=True, index=True,
           doc="the incident the alert is an occurrence of (its first alert's id); null: its own (migration 0006)"),
    Column("version", Integer, nullable=False, server_default="0", doc="bumped by every action: stale forms fail"),
    # every search is "newest first, by (start_time, id)": each index ends with both, so a page is an
    # index range read in order, with no sort, whatever page it is (migration 0002)
    Index(None, "start_time", "id"),
    Index(None, "camera_id", "start_time", "id"),
    Index(None, "grid_cell_id", "start_time", "id"),
    Index(None, "state", "start_time", "id"),
    Index(None, "kind", "start_time", "id"),
    Index(None, "rule_id", "start_time", "id"),
)

alert_messages = Table(
    "alert_messages", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedupe_key", String(300), nullable=False, unique=True,
           doc="the message's id when it has one, else alert_id|phase|time"),
    Column("alert_id", String(128), nullable=False, index=True),
    Column("phase", String(8), nullable=False),
    Column("time", Float, nullable=False),
    Column("stream_id", String(32), nullable=True),
    Column("message", Text, nullable=False),
)

camera_events = Table(
    "camera_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedupe_key", String(300), nullable=False, unique=True),
    Column("camera_id", String(64), nullable=False),
    Column("camera_name", String(200), nullable=False),
    Column("grid_cell_id", String(64), nullable=False),
    Column("phase", String(8), nullable=False, doc="offline or online"),
    Column("time", Float, nullable=False),
    Column("state", String(16), nullable=True),
    Column("detail", Text, nullable=True),
    Column("stream_id", String(32), nullable=True),
    Index(None, "camera_id", "time"),
    Index(None, "time"),
)

actions = Table(
    "actions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False),
    Column("alert_id", String(128), nullable=True),
    Column("grid_cell_id", String(64), nullable=True),
    Column("user_id", Integer, nullable=True, doc="no foreign key: the audit log outlives users"),
    Column("username", String(64), nullable=True, doc="null for the system (escalation)"),
    Column("action", String(32), nullable=False),
    Column("from_state", String(16), nullable=True),
    Column("to_state", String(16), nullable=True),
    Column("note", Text, nullable=True),
    Column("data", Text, nullable=True, doc="JSON details (dispatch step, forwarded to, classification)"),
    Column("remote", String(64), nullable=True),
    Index(None, "alert_id", "id"),
    Index(None, "time"),
)

dispatch_links = Table(
    "dispatch_links", metadata,
    Column("id", String(64), primary_key=True, doc="sha256 of the link's token: the table alone opens nothing"),
    Column("alert_id", String(128), ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("officer_name", String(200), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True, doc="set when a newer link replaces it or the dispatch is done"),
)

EXPORT_STATES = ("queued", "running", "done", "failed", "released")

export_jobs = Table(
    "export_jobs", metadata,
    Column("id", String(64), primary_key=True, doc="the page's job id (random); the export's own id is export_id"),
    Column("export_id", String(128), nullable=True, unique=True, doc="pipeline.export's id, set once it is written"),
    Column("user_id", Integer, nullable=True, doc="no foreign key: the record outlives users"),
    Column("username", String(64), nullable=False),
    Column("cameras", Text, nullable=False, doc="JSON list of camera ids"),
    Column("grid_cells", Text, nullable=False, doc="JSON list of the cameras' grid cells: who may see the export"),
    Column("start", Float, nullable=False),
    Column("end", Float, nullable=False),
    Column("alert_id", String(128), nullable=True),
    Column("case_name", String(80), nullable=True),
    Column("precise", Boolean, nullable=False, server_default="0"),
    Column("state", String(16), nullable=False, server_default="queued"),
    Column("stage", String(32), nullable=True, doc="cut, manifest, zip: what a running export is doing"),
    Column("progress", Float, nullable=False, server_default="0", doc="0..1 of the recordings read"),
    Column("bytes_total", Integer, nullable=True),
    Column("path", String(1000), nullable=True, doc="the ZIP, or the export's folder inside its case"),
    Column("files", Text, nullable=True, doc="JSON list of {name, bytes, sha256}"),
    Column("manifest_sha256", String(64), nullable=True),
    Column("size_bytes", Integer, nullable=True),
    Column("warnings", Text, nullable=True, doc="JSON list of sentences (gaps, skipped segments)"),
    Column("error", Text, nullable=True),
    Column("runner", String(200), nullable=True, doc="host:pid of the dashboard process running it"),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("released_at", Float, nullable=True),
    Column("released_by", String(64), nullable=True),
    Index(None, "created_at"),
    Index(None, "state"),
    Index(None, "case_name"),
)

cases = Table(
    "cases", metadata,
    Column("name", String(80), primary_key=True, doc="the case's name (pipeline.export.paths checks it)"),
    Column("description", Text, nullable=False, server_default=""),
    Column("alerts", Text, nullable=False, server_default="[]", doc="JSON list of linked alert ids"),
    Column("sightings", Text, nullable=False, server_default="[]",
           doc="JSON list of linked sighting ids (sightings.sighting_id), added from the search page"),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(64), primary_key=True,
           doc="its owner: a case is (owner, name), so two users' cases of one name are two cases"),
    Column("updated_at", Float, nullable=False),
    Column("folder", String(200), nullable=True,
           doc="its folder under <exports>/cases (pipeline.export.cases.owned_dir); NULL: the name itself "
               "(cases of the command line, and those made before cases had an owner)"),
)

login_throttles = Table(
    "login_throttles", metadata,
    Column("username", String(64), primary_key=True, doc="the name tried, known or not"),
    Column("remote", String(64), primary_key=True, doc="the client address it was tried from"),
    Column("fails", Integer, nullable=False, doc="failures in a row (a success clears the row)"),
    Column("last_at", Float, nullable=False),
    Column("until", Float, nullable=False, doc="no try of this pair before this time"),
)

segment_catalog = Table(
    "segment_catalog", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedupe_key", String(300), nullable=False, unique=True, doc="worker|camera|name: one row per stored file"),
    Column("camera_id", String(64), nullable=False),
    Column("start", Float, nullable=False),
    Column("end", Float, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("name", String(64), nullable=False, doc="<start>-<duration>.mp4: the file's name on its worker"),
    Column("sha256", String(64), nullable=True),
    Column("worker", String(128), nullable=False, doc="the worker holding the file (its cluster id)"),
    Column("token", Integer, nullable=True, doc="the fencing token the segment was recorded under"),
    Column("address", String(300), nullable=False, doc="http://host:port of the worker's segment server"),
    Column("sig", String(64), nullable=True, doc="HMAC of the row with the site key (fetchers check it)"),
    Column("announced_at", Float, nullable=False),
    Column("stream_id", String(64), nullable=True),
    Index(None, "camera_id", "start"),
)

PATROL_MARKS = ("normal", "finding", "fault")
FAULT_KINDS = ("no_picture", "blurred", "moved", "dark", "wrong_time", "offline", "tampered")
FAULT_STATES = ("open", "repair_requested", "repaired")

patrol_plans = Table(
    "patrol_plans", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(120), nullable=False, unique=True),
    Column("description", Text, nullable=False, server_default=""),
    Column("cameras", Text, nullable=False, doc='JSON list, in tour order: [{"camera": id, "dwell_s": s}]'),
    Column("grid_cells", Text, nullable=False, doc="JSON list of the cameras' cells: who may see and run the plan"),
    Column("schedule", Text, nullable=True, doc='JSON {"every_min", "from", "to", "grace_min"} in the config zone'),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(64), nullable=False),
    Column("deleted_at", Float, nullable=True, doc="a deleted plan keeps its row: its patrols still name it"),
    Column("version", Integer, nullable=False, server_default="0"),
)

patrols = Table(
    "patrols", metadata,
    Column("id", String(32), primary_key=True),
    Column("plan_id", Integer, ForeignKey("patrol_plans.id"), nullable=False),
    Column("plan_name", String(120), nullable=False),
    Column("planned", Text, nullable=False, doc="the plan's camera list when the patrol started (JSON)"),
    Column("grid_cells", Text, nullable=False, doc="JSON list of the planned cameras' cells"),
    Column("user_id", Integer, nullable=True, doc="no foreign key: the record outlives users"),
    Column("username", String(64), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("layout", Integer, nullable=False, server_default="1"),
    Column("state", String(16), nullable=False, doc="running, finished"),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=True),
    Index(None, "started_at"),
    Index(None, "plan_id", "started_at"),
)

patrol_marks = Table(
    "patrol_marks", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("patrol_id", String(32), ForeignKey("patrols.id", ondelete="CASCADE"), nullable=False),
    Column("camera_id", String(64), nullable=False),
    Column("grid_cell_id", String(64), nullable=False),
    Column("on_screen_s", Float, nullable=False, server_default="0", doc="summed over every time it was shown"),
    Column("first_shown_at", Float, nullable=True),
    Column("offline", Boolean, nullable=False, server_default="0", doc="shown without a picture: skipped"),
    Column("mark", String(16), nullable=True, doc="normal, finding, fault; null: shown, not marked"),
    Column("fault_kind", String(16), nullable=True),
    Column("note", Text, nullable=True),
    Column("snapshot_path", String(400), nullable=True),
    Column("alert_id", String(128), nullable=True, doc="the manual alarm a finding raised"),
    Column("marked_at", Float, nullable=True),
    Index(None, "patrol_id", "camera_id", unique=True),
)

camera_faults = Table(
    "camera_faults", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("camera_id", String(64), nullable=False),
    Column("camera_name", String(200), nullable=False),
    Column("grid_cell_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("since", Float, nullable=False, doc="when the fault began (the camera's last frame when known)"),
    Column("source", String(16), nullable=False, doc="patrol (a mark), tour (no picture on the wall), check"),
    Column("reported_by", String(64), nullable=False, doc="the user name, or the check's name"),
    Column("patrol_id", String(32), nullable=True),
    Column("note", Text, nullable=True),
    Column("state", String(20), nullable=False, server_default="open"),
    Column("repair_requested_at", Float, nullable=True),
    Column("repair_requested_by", String(64), nullable=True),
    Column("repaired_at", Float, nullable=True),
    Column("repaired_by", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
    Index(None, "camera_id", "state"),
    Index(None, "grid_cell_id", "since"),
)

manual_alarms = Table(
    "manual_alarms", metadata,
    Column("alert_id", String(128), primary_key=True, doc="the incident's row in alerts (same workflow)"),
    Column("source", String(16), nullable=False, doc="patrol (a finding) or phone (a citizen's call)"),
    Column("patrol_id", String(32), nullable=True),
    Column("camera_id", String(64), nullable=True),
    Column("grid_cell_id", String(64), nullable=False),
    Column("caller", String(100), nullable=True),
    Column("phone", String(32), nullable=True),
    Column("report", Text, nullable=False, doc="the note of the finding, or what the caller reported"),
    Column("point", String(64), nullable=True, doc="JSON [x, y] on the map, when the caller gave a place"),
    Column("cameras", Text, nullable=False, server_default="[]", doc="JSON list of cameras attached later"),
    Column("range_start", Float, nullable=True),
    Column("range_end", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(64), nullable=False),
    Index(None, "grid_cell_id", "created_at"),
)

incidents = Table(
    "incidents", metadata,
    Column("id", String(128), primary_key=True, doc="the id of its first alert, whose row carries the workflow"),
    Column("camera_id", String(64), nullable=False),
    Column("grid_cell_id", String(64), nullable=False),
    Column("group_key", String(200), nullable=False, doc="zone:<name>, line:<name> or rule:<id> of the camera"),
    Column("first_seen", Float, nullable=False, doc="the earliest start of its occurrences"),
    Column("last_seen", Float, nullable=False, doc="the newest message time of its occurrences"),
    Column("last_end", Float, nullable=True, doc="the latest end of its ended occurrences"),
    Column("occurrences", Integer, nullable=False, server_default="1"),
    Column("severity", String(16), nullable=False, doc="the highest severity of its occurrences"),
    Column("reasons", Text, nullable=False, server_default="[]",
           doc="JSON list of {rule_id, kind}: the rules that fired, in order of first firing"),
    Index(None, "camera_id", "group_key", "last_seen"),
)

sightings = Table(
    "sightings", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sighting_id", String(160), nullable=False, unique=True,
           doc="camera:first-seen-ms:track: one row per track, updated while the track lasts"),
    Column("camera_id", String(64), nullable=False),
    Column("grid_cell_id", String(64), nullable=True),
    Column("track_id", Integer, nullable=False),
    Column("label", String(32), nullable=False),
    Column("first_time", Float, nullable=False),
    Column("last_time", Float, nullable=False),
    Column("best_time", Float, nullable=False, doc="when the best view (the crop) was taken"),
    Column("direction", String(16), nullable=False),
    Column("upper_colour", String(8), nullable=True, doc="a person's upper body, main colour (palette name)"),
    Column("lower_colour", String(8), nullable=True, doc="a person's lower body, main colour"),
    Column("body_colour", String(8), nullable=True, doc="a vehicle's body, main colour"),
    Column("colours", Text, nullable=False, server_default="{}", doc="JSON: every part's colours with shares"),
    Column("plate", String(16), nullable=True, doc="compact form, 藏DT5022"),
    Column("plate_front", String(8), nullable=True, doc="the plate's first 4 characters (one-wrong search)"),
    Column("plate_back", String(8), nullable=True, doc="the plate's characters after the 4th (one-wrong search)"),
    Column("plate_confidence", Float, nullable=True),
    Column("plate_colour", String(8), nullable=True),
    Column("crop_path", String(300), nullable=True, doc="the best view, relative to <data_dir>/sightings"),
    Column("box", Text, nullable=True, doc="JSON [x1, y1, x2, y2] of the best view, source px"),
    Column("hits", Integer, nullable=False, server_default="0"),
    Column("final", Boolean, nullable=False, server_default="0", doc="the track ended"),
    Index(None, "first_time"),
    Index(None, "camera_id", "first_time"),
    Index(None, "grid_cell_id", "first_time"),
    Index(None, "label", "first_time"),
    Index(None, "upper_colour", "first_time"),
    Index(None, "lower_colour", "first_time"),
    Index(None, "body_colour", "first_time"),
    Index(None, "plate", "first_time"),
    Index(None, "plate_front"),
    Index(None, "plate_back"),
)

watchlist_entries = Table(
    "watchlist_entries", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pattern", String(16), nullable=False, doc="compact plate, one ? for a character not known: 藏DT50?2"),
    Column("reason", Text, nullable=False, doc="why the plate is watched (never sent to the workers)"),
    Column("owner", String(64), nullable=False, doc="the investigator answerable for the entry"),
    Column("cells", Text, nullable=False, doc='JSON list of grid cell ids it covers; ["*"] = every cell'),
    Column("expires_at", Float, nullable=True, doc="no hit after this (epoch s); null: until removed"),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(64), nullable=False),
    Index(None, "pattern"),
    Index(None, "expires_at"),
)

walls = Table(
    "walls", metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True,
           doc="a wall belongs to one user: every window or PC logged in as that user shows it"),
    Column("layout", Integer, nullable=False, server_default="4", doc="tiles shown: 1, 4, 9 or 16"),
    Column("tiles", Text, nullable=False, server_default="[]",
           doc="JSON list, one per tile: {camera, pushed: {camera, previous, alert_id, at} or null}"),
    Column("version", Integer, nullable=False, server_default="0", doc="+1 on every change: the page polls it"),
    Column("updated_at", Float, nullable=False),
)

shelves = Table(
    "shelves", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("camera_id", String(64), nullable=False),
    Column("grid_cell_id", String(64), nullable=False, doc="the camera's cell when shelved: who sees the shelf"),
    Column("rule_id", String(64), nullable=True, doc="one rule of the camera; null: every alert of the camera"),
    Column("reason", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_by_name", String(200), nullable=False),
    Column("expires_at", Float, nullable=False, doc="the shelf ends by itself then (checked by time, no job)"),
    Column("lifted_at", Float, nullable=True, doc="set when a supervisor lifted it early"),
    Column("lifted_by", String(64), nullable=True),
    Index(None, "expires_at"),
    Index(None, "camera_id", "expires_at"),
)

APPEND_ONLY_TABLES = ("actions",)
