"""``sharpeye users add|passwd|disable|enable|list``: manage dashboard log-ins from the shell.

Passwords are read from the terminal (twice), or from standard input with ``--password-stdin``
(one line, for scripts); ``--password`` exists for demos only (it shows in ``ps``).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from cli.args import add_config_arg, load_or_exit
from dashboard.users import LOCALES, UserError, add_user, list_users, set_disabled, set_password
from history import open_database
from history.schema import ROLES

PASSWORDS = ("The password is read from the terminal (twice), or with --password-stdin as one line of "
             "standard input (for scripts).")


def _password(args: argparse.Namespace) -> str:
    if getattr(args, "password", None):
        return str(args.password)
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise UserError("the two passwords differ")
    return first


def add_verbs(ap: argparse.ArgumentParser) -> None:
    """The verbs of ``sharpeye users``: add, passwd, disable, enable, list (each with its own --help)."""
    sub = ap.add_subparsers(dest="op", required=True, metavar="{add,passwd,disable,enable,list}")

    def common(p: argparse.ArgumentParser, name: bool = True) -> None:
        add_config_arg(p)
        if name:
            p.add_argument("name", help="user name (log-in)")
        p.set_defaults(func=cmd_users)

    p = sub.add_parser("add", help="create a user", description="Create a dashboard user. " + PASSWORDS)
    common(p)
    p.add_argument("--role", choices=ROLES, default="operator")
    p.add_argument("--cells", default="*", help="grid cell ids, comma separated, or * for all (default *)")
    p.add_argument("--display-name", help="name shown as 'handled by' (default: the user name)")
    p.add_argument("--locale", choices=LOCALES, default="zh-CN", help="page language (default zh-CN)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.add_argument("--password", help=argparse.SUPPRESS)
    p.add_argument("--replace", action="store_true", help="reset the user if it exists (password, role, cells)")

    p = sub.add_parser("passwd", help="set a user's password (ends their sessions)",
                       description="Set a user's password; their open sessions end. " + PASSWORDS)
    common(p)
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.add_argument("--password", help=argparse.SUPPRESS)

    for op, text in (("disable", "disable a user (ends their sessions)"), ("enable", "enable a disabled user")):
        p = sub.add_parser(op, help=text, description=text[0].upper() + text[1:] + ".")
        common(p)

    p = sub.add_parser("list", help="list users", description="List the dashboard users, their roles and cells.")
    common(p, name=False)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``users`` and its verbs on the ``sharpeye`` command's subparsers."""
    p = subparsers.add_parser("users", help="dashboard log-ins: add, passwd, disable, enable, list",
                              description="Manage dashboard users (stored in the history database). "
                              "Exit status: 0 done, 2 a usage or config problem or a refused change.")
    add_verbs(p)
    return p


def build_parser() -> argparse.ArgumentParser:
    """``python -m cli.users``: the same verbs on their own."""
    ap = argparse.ArgumentParser(prog="sharpeye users", description="Manage dashboard users.")
    add_verbs(ap)
    return ap


def cmd_users(args: argparse.Namespace) -> int:
    cfg = load_or_exit(args.config)
    engine = open_database(cfg)
    try:
        if args.op == "add":
            u = add_user(engine, args.name, _password(args), args.role, args.cells.split(","),
                         args.display_name, args.locale, replace=args.replace)
            print(f"user {u.username}: {u.role}, cells {','.join(u.cells)}, language {u.locale}")
        elif args.op == "passwd":
            set_password(engine, args.name, _password(args))
            print(f"password of {args.name} changed; their sessions ended")
        elif args.op in ("disable", "enable"):
            set_disabled(engine, args.name, args.op == "disable")
            print(f"{args.name} {args.op}d")
        else:
            rows = [("user", "name", "role", "cells", "language", "state")]
            rows += [(u.username, u.display_name, u.role, ",".join(u.cells), u.locale,
                      "disabled" if u.disabled else "active") for u in list_users(engine)]
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            for r in rows:
                print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    except UserError as e:
        print(f"sharpeye users {args.op}: {e}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    return cmd_users(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
