"""People and roles: accounts in the store with hashed passwords, STUDIO_AUTH's users and their roles,
the last admin kept, `python -m studio users|activity`, and every role's refusals over HTTP."""

import csv
import io
import os
import subprocess
import sys
import threading

import pytest
from conftest import ROOT, running_studio

from studio.cli.commands import main
from studio.errors import NotFound
from studio.people import activity
from studio.people.roles import ACTIONS, ROLES, NotAllowed, can, require
from studio.people.users import (PeopleError, add_user, check_password, remove_user, role_of, set_role, sign_in_required,
                                 sync_from_auth, user, users)
from studio.settings import load_settings
from studio.store import Store

TEAM = "ana:anapass12,ben:benpass12:reviewer,tom:tompass12:trainer"


def test_each_role_may_do_what_the_one_before_it_may_and_more():
    for action, (least, _) in ACTIONS.items():
        assert [can(role, action) for role in ROLES] == [ROLES.index(role) >= ROLES.index(least) for role in ROLES], action
    with pytest.raises(NotAllowed, match="ben is a reviewer: training adapters needs the trainer role"):
        require("ben", "reviewer", "train")
    require("tom", "trainer", "train")


def test_passwords_are_hashed_and_checked(store):
    assert not sign_in_required(store) and role_of(store, None) == "admin"  # a single-user install: no sign-in, may do anything
    add_user(store, "ana", "a long password", "admin", by="test")
    row = store.db["users"].get("ana")
    assert "a long password" not in row["password_hash"] and row["password_hash"].startswith("$argon2")
    assert check_password(store, "ana", "a long password")
    assert not check_password(store, "ana", "a long passwor") and not check_password(store, "nobody", "a long password")
    assert sign_in_required(store)
    with pytest.raises(PeopleError, match="Sign in first"):
        role_of(store, None)
    with pytest.raises(PeopleError, match="too short"):
        add_user(store, "ben", "short", "reviewer", by="ana")
    with pytest.raises(PeopleError, match="cannot be a name"):
        add_user(store, "ben smith", "long enough", "reviewer", by="ana")
    with pytest.raises(PeopleError, match="already someone called 'ana'"):
        add_user(store, "ana", "long enough", "reviewer", by="ana")
    with pytest.raises(NotAllowed, match="'boss' is not a role"):
        add_user(store, "ben", "long enough", "boss", by="ana")


def test_the_last_admin_can_be_neither_demoted_nor_removed(store):
    add_user(store, "ana", "a long password", "admin", by="test")
    add_user(store, "ben", "a long password", "admin", by="ana")
    set_role(store, "ben", "trainer", by="ana")
    with pytest.raises(PeopleError, match="ana is the last admin, so cannot be made a reviewer"):
        set_role(store, "ana", "reviewer", by="ana")
    with pytest.raises(PeopleError, match="ana is the last admin, so cannot be removed"):
        remove_user(store, "ana")
    remove_user(store, "ben")
    with pytest.raises(NotFound, match="no one called 'ben'"):
        user(store, "ben")
    assert [(u.name, u.role) for u in users(store)] == [("ana", "admin")]


def test_two_admins_demoting_each_other_at_once_leave_one_admin(settings, store):
    add_user(store, "ana", "a long password", "admin", by="test")
    add_user(store, "ben", "a long password", "admin", by="test")
    outcomes, start = [], threading.Barrier(2)

    def demote(name):
        own = Store(settings.db_path)  # each admin's request on its own connection, as the web server's threads have
        start.wait()
        try:
            set_role(own, name, "trainer", by="other")
            outcomes.append("changed")
        except PeopleError as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=demote, args=(name,)) for name in ("ana", "ben")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(outcomes, key=lambda said: said != "changed")[0] == "changed"
    assert "is the last admin, so cannot be made a trainer" in sorted(outcomes, key=lambda said: said != "changed")[1]
    assert [u.role for u in users(store)].count("admin") == 1


def test_studio_auth_users_are_admins_unless_a_role_follows(store):
    sync_from_auth(store, [("ana", "anapass12"), ("ben", "benpass12:reviewer"), ("cy", "pw:with:colons")])
    assert [(u.name, u.role, u.created_by) for u in users(store)] == [("ana", "admin", "STUDIO_AUTH"), ("ben", "reviewer", "STUDIO_AUTH"),
                                                                      ("cy", "admin", "STUDIO_AUTH")]
    assert check_password(store, "ben", "benpass12") and check_password(store, "cy", "pw:with:colons")
    sync_from_auth(store, [("ben", "newpass12:trainer")])  # each start writes them again
    assert user(store, "ben").role == "trainer" and check_password(store, "ben", "newpass12")


def test_users_and_activity_from_the_command_line(studio_env, tmp_path, monkeypatch, capsys):
    added = subprocess.run([sys.executable, "-m", "studio", "users", "add", "ana", "--role", "admin", "--password-stdin"], input="anapass12\n",
                           cwd=ROOT, env={**os.environ, **studio_env}, capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    assert "Added ana as an admin." in added.stdout
    for name, value in studio_env.items():  # the rest in this process: the same main() the command runs
        monkeypatch.setenv(name, value)
    assert main(["users", "list"]) == 0
    listed = capsys.readouterr().out
    assert "ana" in listed and "admin" in listed
    assert main(["users", "role", "ana", "reviewer"]) == 2
    assert "ana is the last admin" in capsys.readouterr().err
    assert main(["users", "remove", "nobody"]) == 2
    assert "no one called 'nobody'" in capsys.readouterr().err
    log = tmp_path / "activity.csv"
    assert main(["activity", "--csv", str(log)]) == 0
    rows = list(csv.DictReader(io.StringIO(log.read_text())))
    assert [(r["person"], r["kind"], r["what"]) for r in rows] == [("command line", "people", "added ana as an admin")]


def _defaults(client, name: str) -> dict:
    """Every parameter of an endpoint at its default, or empty: enough to reach the studio's own code."""
    endpoint = client.view_api(return_format="dict", print_info=False)["named_endpoints"][name]
    return {p["parameter_name"]: p["parameter_default"] if p["parameter_has_default"] else None for p in endpoint["parameters"]}


REVIEWER_REFUSED = {"/save_current": "uploading", "/start_job": "training", "/cancel_selected": "starting, cancelling",
                    "/zip_adapter": "exporting", "/start_merge": "merging", "/start_export": "exporting", "/import_zip": "exporting",
                    "/evaluate_again": "evaluating", "/train_on_feedback": "training", "/drop_feedback": "dropping",
                    "/clone": "starting, cancelling", "/add_person": "managing people", "/change_role": "managing people",
                    "/remove_person": "managing people", "/activity": "seeing the activity log", "/activity_csv": "seeing the activity log",
                    "/put_in_use": "choosing the adapter in use", "/roll_back_in_use": "choosing the adapter in use"}
TRAINER_REFUSED = {"/add_person", "/change_role", "/remove_person", "/activity", "/activity_csv"}


def test_each_role_is_refused_on_the_server_what_it_may_not_do(studio_env, tmp_path):
    from gradio_client import Client

    with running_studio({**studio_env, "STUDIO_AUTH": TEAM}, tmp_path / "studio.log", "--no-worker") as url:
        clients = {name: Client(url, auth=(name, password), verbose=False) for name, password in
                   [("ben", "benpass12"), ("tom", "tompass12"), ("ana", "anapass12")]}

        def answer(who: str, endpoint: str) -> str:
            client = clients[who]
            try:
                return str(client.predict(**_defaults(client, endpoint), api_name=endpoint))
            except Exception as error:
                return str(error)

        for endpoint, words in REVIEWER_REFUSED.items():
            assert answer("ben", endpoint).startswith(f"ben is a reviewer: {words}"), endpoint
            said = answer("tom", endpoint)
            assert said.startswith(f"tom is a trainer: {words}") == (endpoint in TRAINER_REFUSED), (endpoint, said)
            assert not answer("ana", endpoint).startswith("ana is an admin"), endpoint  # an admin may do anything
        assert "Nothing to vote on" in answer("ben", "/vote_a")  # a reviewer votes
        with pytest.raises(Exception):
            Client(url, auth=("ben", "wrong password"), verbose=False)

    log = activity.entries(Store(load_settings(studio_env).db_path))
    assert {"ben", "tom", "ana"} <= {e.person for e in log if e.kind == "sign-in"}
    assert any(e.person == "ben" and e.kind == "refused" and "training adapters" in e.what for e in log)


def test_every_event_of_the_web_ui_needs_an_action_and_the_working_tabs_a_trainer(settings, store, bundled_dir, tmp_path):
    from studio.ui import build_app

    app = build_app(settings, store, bundled_dir, tmp_path / "downloads")
    needed = app.event_actions
    assert set(needed) == {key for key, block_fn in app.fns.items() if block_fn.fn is not None}
    by_name = {app.fns[key].api_name: action for key, action in needed.items()}
    assert set(by_name.values()) <= set(ACTIONS)
    for api_name in REVIEWER_REFUSED:
        assert not can("reviewer", by_name[api_name.lstrip("/")]), api_name
    assert {by_name[n] for n in ("chat", "vote_a", "correct")} == {"chat", "vote", "correct"}


def test_what_an_event_makes_is_stamped_with_who_sent_it_in_each_step_of_a_stream(store):
    from studio.store.authors import acting
    from studio.ui.access import _guarded

    def streamed():
        yield acting()
        yield acting()

    assert _guarded(acting, "view", store)() == "you"  # a single-user studio's one user
    assert list(_guarded(streamed, "view", store)()) == ["you", "you"]
    assert acting() == "unknown"  # nothing leaks out of the event
