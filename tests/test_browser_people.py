"""Each role's view of a shared studio, in a real Chromium: a reviewer sees Chat alone, a trainer the
working tabs, an admin also People, where they add a person and see who did what; Chat opens with
the adapter in use; a trainer deletes an adapter of their own in Storage, after its confirmation, and is
refused the one in use."""

from conftest import running_studio, screenshot

from studio.adapters.in_use import put_in_use
from studio.people.users import check_password, user
from studio.store.authors import acting_as

TEAM = "ana:anapass12,ben:benpass12:reviewer,tom:tompass12:trainer"
WORKING_TABS = ["Data", "Train", "Jobs", "Compare", "Merge", "Download", "Chat", "Storage"]


def sign_in(page, url, name, password):
    page.goto(url)
    page.get_by_label("username").fill(name)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()
    page.locator("#signed-in").get_by_text(f"Signed in as {name}").wait_for(timeout=60_000)


def delete_in_storage(page, ref):
    """Pick `ref` in the Storage tab's picker and ask what depends on it."""
    page.locator("#delete-pick input").fill(ref)
    page.get_by_role("option", name=ref).first.click()
    page.locator("#delete-check").click()


def visible_tabs(page) -> list[str]:
    page.wait_for_timeout(500)  # the load event has shown and hidden tabs by now; let the page settle
    return [tab.inner_text().strip() for tab in page.get_by_role("tab").all() if tab.is_visible()]


def test_each_role_sees_its_tabs_and_an_admin_manages_people(studio_env, settings, store, browser, tmp_path):
    chosen = store.add_adapter(name="tickets v2", job_id=None, path=tmp_path / "tickets-v2", base_model="bundled", dataset_hash="h",
                               method="lora", spec={}, summary={}, status="complete", parent_id=None)
    put_in_use(store, chosen.id)
    with acting_as("tom"):
        folder = settings.adapters_dir / "draft"
        folder.mkdir(parents=True)
        (folder / "adapter_model.safetensors").write_bytes(b"0" * 4096)
        draft = store.add_adapter(name="draft", job_id=None, path=folder, base_model="bundled", dataset_hash="h",
                                  method="lora", spec={}, summary={}, status="complete", parent_id=None)
    with running_studio({**studio_env, "STUDIO_AUTH": TEAM}, tmp_path / "studio.log", "--no-worker") as url:
        seen = {}
        for name, password in [("ben", "benpass12"), ("tom", "tompass12"), ("ana", "anapass12")]:
            context = browser.new_context(viewport={"width": 1300, "height": 1000})
            page = context.new_page()
            sign_in(page, url, name, password)
            seen[name] = visible_tabs(page)
            assert page.locator(".toast-body").count() == 0, f"{name}'s page opened with an error: {page.locator('.toast-body').all_inner_texts()}"
            if name == "ben":  # Chat opens with the adapter in use
                page.wait_for_function("() => document.querySelector('#chat-model-a input')?.value.includes('tickets v2 (adapter #1, in use)')",
                                       timeout=10_000)
            if name == "tom":
                page.get_by_role("tab", name="Storage").click()
                delete_in_storage(page, f"adapter:{chosen.id}")
                page.locator("#delete-confirmation").get_by_text("it is the adapter in use").wait_for(timeout=30_000)
                assert not page.locator("#delete-confirm").is_visible()
                delete_in_storage(page, f"adapter:{draft.id}")
                page.locator("#delete-confirmation").get_by_text("Nothing else depends on it.").wait_for(timeout=30_000)
                page.locator("#delete-confirm").click()
                page.locator("#delete-result").get_by_text(f"Deleted adapter #{draft.id} 'draft'").wait_for(timeout=30_000)
                assert f"adapter:{draft.id}" not in page.locator("#storage-table").inner_text()
                screenshot(page, "storage", docs_picture=True)
            if name == "ana":
                page.get_by_role("tab", name="People").click()
                assert "tompass12" not in page.locator("#people-table").inner_text()  # no password is ever shown
                page.locator("#person-name input, #person-name textarea").first.fill("cleo")
                page.locator("#person-password input").fill("cleopass12")
                page.locator("#add-person").click()
                page.locator("#people-said").get_by_text("Added cleo as a reviewer.").wait_for(timeout=30_000)
                page.wait_for_function("() => /cleo\\s+reviewer/.test(document.querySelector('#people-table')?.innerText)", timeout=10_000)
                page.wait_for_function("() => document.querySelector('#activity-table')?.innerText.includes('added cleo as a reviewer')",
                                       timeout=10_000)
                assert page.locator("#activity-table").inner_text().count("signed in") >= 3
                screenshot(page, "people")
            context.close()
    assert seen["ben"] == ["Chat"], seen
    assert seen["tom"] == WORKING_TABS, seen
    assert seen["ana"] == [*WORKING_TABS, "People"], seen
    assert not folder.exists() and store.adapter(draft.id, deleted_too=True).deleted_by == "tom"
    assert user(store, "cleo").role == "reviewer" and check_password(store, "cleo", "cleopass12")
