"""The people of a shared studio: accounts in the store, passwords hashed with Argon2 (argon2-cffi).

A studio with no accounts is a single-user install: no sign-in, and its one user may do anything.
STUDIO_AUTH's users are (re)written on every start, as admins or with the role written after them
('ben:secret:reviewer'); people added in the web UI or with `python -m studio users add` live only
in the store. The last admin can be neither removed nor demoted, checked in the same transaction
as the change, so two admins demoting each other at once cannot leave the studio without one.
"""

import re
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError

from studio.errors import NotFound, StudioError
from studio.people.roles import ROLES, a_role, check_role
from studio.store import Store, now

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8
SINGLE_USER = "you"  # who a single-user install's records say made them
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("not a password of anyone")


class PeopleError(StudioError):
    """A person cannot be added, changed or removed as asked."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    created: str
    created_by: str


def users(store: Store) -> list[User]:
    return [_user(row) for row in store.db["users"].rows_where(order_by="name")]


def user(store: Store, name: str) -> User:
    rows = list(store.db["users"].rows_where("name = ?", [name]))
    if not rows:
        raise NotFound(f"There is no one called '{name}' in this studio. `python -m studio users list` shows who there is.")
    return _user(rows[0])


def sign_in_required(store: Store) -> bool:
    return store.db["users"].count > 0


def role_of(store: Store, name: str | None) -> str:
    """The role of whoever sent a request: a single-user install's one user is an admin."""
    if not sign_in_required(store):
        return "admin"
    if not name:
        raise PeopleError("Sign in first: this studio is shared, and nothing can be done without a name.")
    return user(store, name).role


def add_user(store: Store, name: str, password: str, role: str, by: str) -> User:
    if not NAME.match(name):
        raise PeopleError(f"'{name}' cannot be a name here: use 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit.")
    if len(password) < MIN_PASSWORD:
        raise PeopleError(f"The password for {name} is too short: use at least {MIN_PASSWORD} characters.")
    check_role(role)
    with store.db.atomic():
        if list(store.db["users"].rows_where("name = ?", [name])):
            raise PeopleError(f"There is already someone called '{name}'. Pick another name, or change {name}'s role instead.")
        store.db["users"].insert({"name": name, "password_hash": _HASHER.hash(password), "role": role, "created": now(), "created_by": by})
    return user(store, name)


def set_role(store: Store, name: str, role: str, by: str) -> User:
    check_role(role)
    with store.db.atomic():
        if user(store, name).role == "admin" and role != "admin":
            _keep_an_admin(store, name, f"made {a_role(role)}")
        store.db["users"].update(name, {"role": role})
    return user(store, name)


def set_password(store: Store, name: str, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise PeopleError(f"The password for {name} is too short: use at least {MIN_PASSWORD} characters.")
    user(store, name)
    store.db["users"].update(name, {"password_hash": _HASHER.hash(password)})


def remove_user(store: Store, name: str) -> None:
    """Remove an account; what the person made keeps their name."""
    with store.db.atomic():
        if user(store, name).role == "admin":
            _keep_an_admin(store, name, "removed")
        store.db["users"].delete(name)


def check_password(store: Store, name: str, password: str) -> bool:
    """Whether the name and password sign in; as slow for an unknown name as for a wrong password."""
    rows = list(store.db["users"].rows_where("name = ?", [name]))
    stored = rows[0]["password_hash"] if rows else _DUMMY_HASH
    try:
        return _HASHER.verify(stored, password) and bool(rows)
    except (VerifyMismatchError, InvalidHashError):
        return False


def sync_from_auth(store: Store, pairs: list[tuple[str, str]]) -> list[User]:
    """Write STUDIO_AUTH's users into the store: each with its password, and as an admin unless a role follows it."""
    synced = []
    for name, secret in pairs:
        password, _, role = secret.rpartition(":")
        if role not in ROLES or not password:
            password, role = secret, "admin"
        if not NAME.match(name):
            raise PeopleError(f"STUDIO_AUTH names '{name}', which cannot be a name here: use letters, digits, '.', '_', '@' or '-'.")
        with store.db.atomic():
            store.db["users"].upsert({"name": name, "password_hash": _HASHER.hash(password), "role": role,
                                      "created": now(), "created_by": "STUDIO_AUTH"}, pk="name")
        synced.append(user(store, name))
    return synced


def _keep_an_admin(store: Store, name: str, change: str) -> None:
    others = store.db.execute("SELECT count(*) FROM users WHERE role = 'admin' AND name != ?", [name]).fetchone()[0]
    if not others:
        raise PeopleError(f"{name} is the last admin, so cannot be {change}: make someone else an admin first.")


def _user(row: dict) -> User:
    return User(name=row["name"], role=row["role"], created=row["created"], created_by=row["created_by"])
