"""`python -m studio users add|list|role|remove|password` and `python -m studio activity`: the people of a
shared studio and who did what, through the same functions as the People tab.

Whoever runs these commands can read the studio's database already, so they act as the admin
"command line" and are recorded under that name. A password is read from the terminal (or, for
scripts, from standard input with --password-stdin), never from the command line, where `ps` would show it.
"""

import argparse
import getpass
import sys
from pathlib import Path

from studio.people import activity
from studio.people.roles import ROLES, a_role
from studio.people.users import add_user, remove_user, set_password, set_role, users
from studio.settings import load_settings
from studio.store import Store
from studio.store.authors import COMMAND_LINE

BY = COMMAND_LINE


def add_commands(commands) -> None:
    people = commands.add_parser("users", help="the people of a shared studio and their roles").add_subparsers(dest="action", required=True)
    listing = people.add_parser("list", help="everyone who can sign in, with their role")
    listing.set_defaults(run=list_command)
    adding = people.add_parser("add", help="add someone who can sign in (asks for the password)")
    adding.add_argument("name")
    adding.add_argument("--role", choices=ROLES, default="reviewer", help="reviewer (chat, vote, correct), trainer (also data, "
                        "training, merges, exports) or admin (also people and the activity log); default reviewer")
    adding.add_argument("--password-stdin", action="store_true", help="read the password from standard input's first line")
    adding.set_defaults(run=add_command)
    role = people.add_parser("role", help="change someone's role")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    role.set_defaults(run=role_command)
    password = people.add_parser("password", help="set someone's password (asks for it)")
    password.add_argument("name")
    password.add_argument("--password-stdin", action="store_true", help="read the password from standard input's first line")
    password.set_defaults(run=password_command)
    removing = people.add_parser("remove", help="remove someone: they can no longer sign in; what they made keeps their name")
    removing.add_argument("name")
    removing.set_defaults(run=remove_command)

    log = commands.add_parser("activity", help="who did what and when, newest first")
    log.add_argument("--person", default="", help="only this person's actions")
    log.add_argument("--kind", default="", help="only this kind of action, e.g. sign-in, train, export, people")
    log.add_argument("--limit", type=int, default=100, help="at most this many lines (default 100)")
    log.add_argument("--csv", type=Path, help="write them to this CSV file instead")
    log.set_defaults(run=activity_command)


def _store() -> Store:
    return Store(load_settings().db_path)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"Password for {args.name}: ")
    if getpass.getpass("The same again: ") != first:
        raise SystemExit("error: the two passwords differ; nothing was changed.")
    return first


def list_command(args: argparse.Namespace) -> int:
    found = users(_store())
    if not found:
        print("No one yet: this is a single-user studio with no sign-in. `python -m studio users add NAME --role admin` makes it shared.")
    for person in found:
        print(f"{person.name:<20} {person.role:<9} added {person.created[:16]} by {person.created_by}")
    return 0


def add_command(args: argparse.Namespace) -> int:
    store = _store()
    person = add_user(store, args.name, _password(args), args.role, by=BY)
    activity.record(store, BY, "people", f"added {person.name} as {a_role(person.role)}")
    print(f"Added {person.name} as {a_role(person.role)}. They sign in at the studio's address with this name and password.")
    return 0


def role_command(args: argparse.Namespace) -> int:
    store = _store()
    person = set_role(store, args.name, args.role, by=BY)
    activity.record(store, BY, "people", f"made {person.name} {a_role(person.role)}")
    print(f"{person.name} is now {a_role(person.role)}.")
    return 0


def password_command(args: argparse.Namespace) -> int:
    store = _store()
    set_password(store, args.name, _password(args))
    activity.record(store, BY, "people", f"set a new password for {args.name}")
    print(f"{args.name}'s password is changed.")
    return 0


def remove_command(args: argparse.Namespace) -> int:
    store = _store()
    remove_user(store, args.name)
    activity.record(store, BY, "people", f"removed {args.name}")
    print(f"Removed {args.name}: they can no longer sign in. What they made keeps their name.")
    return 0


def activity_command(args: argparse.Namespace) -> int:
    found = activity.entries(_store(), person=args.person, kind=args.kind, limit=args.limit)
    if args.csv:
        args.csv.write_text(activity.as_csv(found))
        print(f"Wrote {len(found)} lines to {args.csv}.")
        return 0
    for entry in found:
        print(f"{entry.at[:19]}  {entry.person:<16} {entry.kind:<10} {entry.what}")
    return 0
