"""Users: accounts with argon2id password hashes, roles and the grid cells each may see.

Roles nest: an ``operator`` handles alerts, dispatch and live view; an ``engineer`` also sees
camera configuration and health; an ``admin`` also manages users.  Rights are scoped to grid
cells: an operator of cells A and B never sees C's alerts or cameras.  ``["*"]`` means every
cell; an admin sees every cell whatever the list says.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, Engine, select, update

from history.schema import ROLES, sessions, users

ROLE_RANK = {role: i for i, role in enumerate(ROLES)}
LOCALES = ("zh-CN", "en")
MIN_PASSWORD = 8
ALL_CELLS = "*"

# argon2id (the library's default type) with its RFC 9106 "low memory" profile: 64 MiB, 3 passes
_hasher = PasswordHasher()


class UserError(ValueError):
    """A request about users that cannot be done; the message says why."""


@dataclass(frozen=True)
class User:
    id: int
    username: str
    display_name: str
    role: str
    cells: tuple[str, ...]
    locale: str
    disabled: bool = False

    def has_role(self, role: str) -> bool:
        """Whether this user has ``role`` or a higher one."""
        return ROLE_RANK[self.role] >= ROLE_RANK[role]

    def all_cells(self) -> bool:
        return self.role == "admin" or ALL_CELLS in self.cells

    def sees_cell(self, cell: str | None) -> bool:
        return self.all_cells() or (cell is not None and cell in self.cells)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.username, "display_name": self.display_name, "role": self.role,
                "cells": list(self.cells), "locale": self.locale, "disabled": self.disabled}


def from_row(row: Any) -> User:
    return User(id=row.id, username=row.username, display_name=row.display_name, role=row.role,
                cells=tuple(json.loads(row.cells)), locale=row.locale, disabled=bool(row.disabled))


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _hasher.check_needs_rehash(stored)


DUMMY_HASH = _hasher.hash("not a password of anyone")  # verified for unknown names: same time either way


def _check(role: str | None = None, cells: Iterable[str] | None = None, locale: str | None = None) -> None:
    if role is not None and role not in ROLE_RANK:
        raise UserError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    if cells is not None and not list(cells):
        raise UserError("give at least one grid cell, or * for all")
    if locale is not None and locale not in LOCALES:
        raise UserError(f"unknown language {locale!r}; use one of {', '.join(LOCALES)}")


def get_user(conn: Connection, username: str) -> Any:
    return conn.execute(select(users).where(users.c.username == username)).first()


def add_user(engine: Engine, username: str, password: str, role: str, cells: Iterable[str],
             display_name: str | None = None, locale: str = "zh-CN", replace: bool = False) -> User:
    """Create a user (or, with ``replace``, reset an existing one's password, role, cells and language)."""
    cells = [c.strip() for c in cells if c.strip()]
    _check(role, cells, locale)
    if not username or len(username) > 64 or not username.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise UserError("a user name has 1-64 letters, digits, '.', '-' or '_'")
    now = time.time()
    values = {"display_name": display_name or username, "password_hash": hash_password(password), "role": role,
              "cells": json.dumps(cells), "locale": locale, "disabled": False, "failed_logins": 0,
              "locked_until": None, "password_changed_at": now}
    with engine.begin() as conn:
        row = get_user(conn, username)
        if row is not None:
            if not replace:
                raise UserError(f"user {username!r} exists; use `sharpeye users passwd` or --replace")
            conn.execute(update(users).where(users.c.id == row.id).values(**values))
            conn.execute(sessions.delete().where(sessions.c.user_id == row.id))
        else:
            conn.execute(users.insert().values(username=username, created_at=now, **values))
        return from_row(get_user(conn, username))


def set_password(engine: Engine, username: str, password: str) -> None:
    """New password; every open session of the user ends (a leaked session dies with the old password)."""
    h = hash_password(password)
    with engine.begin() as conn:
        row = get_user(conn, username)
        if row is None:
            raise UserError(f"no user {username!r}")
        conn.execute(update(users).where(users.c.id == row.id).values(
            password_hash=h, password_changed_at=time.time(), failed_logins=0, locked_until=None))
        conn.execute(sessions.delete().where(sessions.c.user_id == row.id))


def set_disabled(engine: Engine, username: str, disabled: bool = True) -> None:
    """Disable (or enable) a user; disabling ends their sessions at once."""
    with engine.begin() as conn:
        row = get_user(conn, username)
        if row is None:
            raise UserError(f"no user {username!r}")
        conn.execute(update(users).where(users.c.id == row.id).values(disabled=disabled))
        if disabled:
            conn.execute(sessions.delete().where(sessions.c.user_id == row.id))


def update_user(engine: Engine, username: str, role: str | None = None, cells: Iterable[str] | None = None,
                display_name: str | None = None, locale: str | None = None) -> User:
    cells = [c.strip() for c in cells if c.strip()] if cells is not None else None
    _check(role, cells, locale)
    values: dict[str, Any] = {}
    if role is not None:
        values["role"] = role
    if cells is not None:
        values["cells"] = json.dumps(cells)
    if display_name:
        values["display_name"] = display_name
    if locale is not None:
        values["locale"] = locale
    with engine.begin() as conn:
        row = get_user(conn, username)
        if row is None:
            raise UserError(f"no user {username!r}")
        if values:
            conn.execute(update(users).where(users.c.id == row.id).values(**values))
        return from_row(get_user(conn, username))


def list_users(engine: Engine) -> list[User]:
    with engine.connect() as conn:
        return [from_row(r) for r in conn.execute(select(users).order_by(users.c.username))]
