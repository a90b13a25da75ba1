"""The People tab (admins only): who can sign in and with what role, and the activity log of who did what.

Every change goes through studio.people (the same functions as `python -m studio users`) and is
written to the activity log under the admin's name.
"""

from pathlib import Path

import gradio as gr

from studio.people import activity
from studio.people.roles import ROLES, a_role
from studio.people.users import add_user, remove_user, set_role, sign_in_required, users
from studio.store import Store
from studio.ui import html
from studio.ui.access import allowed, needs, signed_in
from studio.ui.errors import shown_to_user
from studio.ui.refresh import on_show

ROLE_HELP = ("**reviewer**: chat, vote and correct answers · **trainer**: also upload data, train, evaluate, merge, "
             "export and download · **admin**: also manage people and see the activity log")


def people_rows(store: Store) -> list[list]:
    return [[u.name, u.role, u.created[:16].replace("T", " "), u.created_by] for u in users(store)]


def activity_rows(store: Store, person: str, kind: str) -> list[list]:
    return [[e.at[:19].replace("T", " "), e.person, e.kind, e.what] for e in activity.entries(store, person, kind, limit=500)]


def build(store: Store, page: gr.Tab, downloads: Path) -> None:
    gr.Markdown(ROLE_HELP)
    gr.Markdown(visible=not sign_in_required(store), value=(
        "This studio has no sign-in yet: anyone who reaches it may do anything. Add an admin below (and others), "
        "then restart the studio: from then on everyone signs in with their name and password."))
    people = gr.Dataframe(people_rows(store), headers=["name", "role", "added", "by"], interactive=False, elem_id="people-table")
    with gr.Row():
        name = gr.Textbox(label="Name", elem_id="person-name")
        password = gr.Textbox(label="Password", type="password", info="At least 8 characters; tell it to them yourself.",
                              elem_id="person-password")
        role = gr.Dropdown(list(ROLES), value="reviewer", label="Role", elem_id="person-role")
    with gr.Row():
        add = gr.Button("Add person", variant="primary", elem_id="add-person")
        change = gr.Button("Change role", elem_id="change-role")
        remove = gr.Button("Remove person", variant="stop", elem_id="remove-person")
    said = gr.HTML(elem_id="people-said")

    gr.Markdown("### Activity\nWho did what, newest first: sign-ins, uploads, training, merges, exports, downloads, "
                "votes and corrections, changes to people, and refused actions.")
    with gr.Row():
        person_filter = gr.Dropdown([""], value="", label="Person", allow_custom_value=True, elem_id="activity-person")
        kind_filter = gr.Dropdown([""], value="", label="Kind", elem_id="activity-kind")
        as_csv = gr.Button("Download as CSV", elem_id="activity-csv")
    log = gr.Dataframe(headers=["at", "person", "kind", "what"], interactive=False, elem_id="activity-table")
    csv_file = gr.DownloadButton(visible=False, elem_id="activity-csv-file")

    def filters():
        names = sorted({u.name for u in users(store)} | {e.person for e in activity.entries(store, limit=500)})
        return gr.Dropdown(choices=[""] + names, value=""), gr.Dropdown(choices=[""] + activity.kinds(store), value="")

    def shown():
        """Every page load redraws this tab's views; only an admin's shows anything."""
        if not allowed(store, "manage_people"):
            return [], gr.Dropdown(choices=[""]), gr.Dropdown(choices=[""]), []
        return people_rows(store), *filters(), activity_rows(store, "", "")

    on_show(page, shown, None, [people, person_filter, kind_filter, log])

    def changed(text: str):
        """After a change: the people, what was done, and the whole activity log with the change at its top."""
        return people_rows(store), html.message(text, ok=True), *filters(), activity_rows(store, "", "")

    @shown_to_user
    def add_person(new_name: str, new_password: str, new_role: str):
        person = add_user(store, new_name.strip(), new_password, new_role, by=signed_in())
        activity.record(store, signed_in(), "people", f"added {person.name} as {a_role(person.role)}")
        return (*changed(f"Added {person.name} as {a_role(person.role)}."), "")

    @shown_to_user
    def change_role(who: str, new_role: str):
        person = set_role(store, who.strip(), new_role, by=signed_in())
        activity.record(store, signed_in(), "people", f"made {person.name} {a_role(person.role)}")
        return changed(f"{person.name} is now {a_role(person.role)}.")

    @shown_to_user
    def remove_person(who: str):
        if who.strip() == signed_in():
            raise gr.Error("You cannot remove yourself here; ask another admin, or use `python -m studio users remove`.")
        remove_user(store, who.strip())
        activity.record(store, signed_in(), "people", f"removed {who.strip()}")
        return changed(f"Removed {who.strip()}: they can no longer sign in; what they made keeps their name.")

    outputs = [people, said, person_filter, kind_filter, log]
    add.click(add_person, [name, password, role], [*outputs, password], api_name="add_person")
    change.click(change_role, [name, role], outputs, api_name="change_role")
    remove.click(remove_person, name, outputs, api_name="remove_person")

    @needs("see_activity")
    def shown_log(person: str, kind: str):
        return activity_rows(store, person or "", kind or "")

    @needs("see_activity")
    @shown_to_user
    def log_as_csv(person: str, kind: str):
        path = downloads / "activity.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(activity.as_csv(activity.entries(store, person or "", kind or "", limit=100_000)))
        return gr.DownloadButton(f"⬇ activity.csv ({html.file_size(path.stat().st_size)})", value=str(path), visible=True)

    gr.on([person_filter.change, kind_filter.change], shown_log, [person_filter, kind_filter], log, api_name="activity")
    as_csv.click(log_as_csv, [person_filter, kind_filter], csv_file, api_name="activity_csv")
