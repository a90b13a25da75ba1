"""Roles and what each may do: reviewers chat, vote and correct; trainers also bring data and make,
judge and hand out adapters; admins also manage people and see who did what.

The one table the web UI's guard (studio.ui.access) and the command line read, so a button a role
cannot use is refused on the server too, whoever calls it and however.
"""

from studio.errors import StudioError

ROLES = ("reviewer", "trainer", "admin")  # each may do all that the one before it may

# action: (the least role that may do it, the action in words for a refusal)
ACTIONS = {
    "view": ("reviewer", "seeing this page"),
    "chat": ("reviewer", "chatting with models"),
    "vote": ("reviewer", "voting on answers"),
    "correct": ("reviewer", "correcting answers"),
    "upload": ("trainer", "uploading and saving data"),
    "train": ("trainer", "training adapters"),
    "evaluate": ("trainer", "evaluating and comparing adapters"),
    "manage_jobs": ("trainer", "starting, cancelling and cloning jobs"),
    "merge": ("trainer", "merging and mixing adapters"),
    "export": ("trainer", "exporting, importing and downloading adapters"),
    "choose_in_use": ("trainer", "choosing the adapter in use"),
    "drop_feedback": ("trainer", "dropping feedback items"),
    "delete": ("trainer", "deleting what you made and clearing storage"),
    "delete_any": ("admin", "deleting what others made, or what came from it"),
    "manage_people": ("admin", "managing people and their roles"),
    "see_activity": ("admin", "seeing the activity log"),
}


class NotAllowed(StudioError):
    """The signed-in person's role does not allow the action."""


def a_role(role: str) -> str:
    """'a reviewer', 'a trainer', 'an admin': a role in a sentence."""
    return f"an {role}" if role[0] in "aeiou" else f"a {role}"


def check_role(role: str) -> str:
    if role not in ROLES:
        raise NotAllowed(f"'{role}' is not a role. The roles are {', '.join(ROLES)}.")
    return role


def can(role: str, action: str) -> bool:
    least, _ = ACTIONS[action]
    return ROLES.index(check_role(role)) >= ROLES.index(least)


def require(name: str, role: str, action: str) -> None:
    """Refuse, in words, an action the role may not do."""
    if not can(role, action):
        least, words = ACTIONS[action]
        raise NotAllowed(f"{name} is {a_role(role)}: {words} needs the {least} role. Ask an admin of this studio to change your role.")
