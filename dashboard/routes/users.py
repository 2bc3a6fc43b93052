"""User management for admins: the page and its API (the CLI ``sharpeye users`` does the same)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dashboard.deps import AdminUser, DashboardDep, RemoteAddr, admin_only, refuse
from dashboard.pages import page
from dashboard.users import User, UserError, add_user, list_users, set_disabled, set_password, update_user
from history.audit import record

router = APIRouter(dependencies=[Depends(admin_only)])


class NewUser(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    role: str
    cells: list[str]
    display_name: str | None = None
    locale: str = "zh-CN"


class UserChange(BaseModel):
    role: str | None = None
    cells: list[str] | None = None
    display_name: str | None = None
    locale: str | None = None
    disabled: bool | None = None
    password: str | None = None


@router.get("/users", include_in_schema=False)
async def users_page() -> HTMLResponse:
    return page("users.html")


@router.get("/api/users")
async def get_users(d: DashboardDep) -> list[dict[str, Any]]:
    return [u.to_dict() for u in await run_in_threadpool(list_users, d.engine)]


@router.post("/api/users")
async def post_user(body: NewUser, d: DashboardDep, me: AdminUser, remote: RemoteAddr) -> dict[str, Any]:

    def _add() -> User:
        u = add_user(d.engine, body.username, body.password, body.role, body.cells, body.display_name, body.locale)
        with d.engine.begin() as conn:
            record(conn, "user_added", user_id=me.id, username=me.username, remote=remote,
                   data={"user": u.username, "role": u.role, "cells": list(u.cells)})
        return u
    try:
        return (await run_in_threadpool(_add)).to_dict()
    except UserError as e:
        raise refuse(400, "user_error", message=str(e)) from None


@router.patch("/api/users/{username}")
async def patch_user(username: str, body: UserChange, d: DashboardDep, me: AdminUser,
                     remote: RemoteAddr) -> dict[str, Any]:

    def _change() -> User:
        if body.password:
            set_password(d.engine, username, body.password)
        if body.disabled is not None:
            set_disabled(d.engine, username, body.disabled)
        u = update_user(d.engine, username, body.role, body.cells, body.display_name, body.locale)
        with d.engine.begin() as conn:
            record(conn, "user_changed", user_id=me.id, username=me.username, remote=remote,
                   data={"user": username, **body.model_dump(exclude_none=True, exclude={"password"}),
                         "password_reset": bool(body.password)})
        return u
    try:
        return (await run_in_threadpool(_change)).to_dict()
    except UserError as e:
        raise refuse(400, "user_error", message=str(e)) from None
