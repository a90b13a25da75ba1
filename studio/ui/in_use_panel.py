"""The Compare tab's panel for the adapter in use: which one it is, since when and chosen by whom;
put another in use, or roll back to the one before (studio.adapters.in_use)."""

import gradio as gr

from studio.adapters.in_use import history, put_in_use, roll_back
from studio.errors import StudioError
from studio.people import activity
from studio.store import Store
from studio.ui.access import needs, signed_in
from studio.ui.errors import shown_to_user
from studio.ui.pickers import adapter_choices
from studio.ui.refresh import on_show


def in_use_said(store: Store) -> str:
    """The adapter in use and the one a roll back brings back, in words."""
    choices = history(store)
    if not choices:
        return ("**No adapter is in use yet.** Choose the one your team should use: Chat then opens with it, and "
                "Download, Merge and the exports offer it first.")
    current = choices[0]
    before = (f" A roll back brings back #{choices[1].adapter.id} '{choices[1].adapter.name}'." if len(choices) > 1
              else " It is the first chosen, so there is nothing to roll back to.")
    return f"**In use: #{current.adapter.id} '{current.adapter.name}'.** {current.describe()}{before}"


def build(store: Store, page: gr.Tab) -> None:
    with gr.Accordion("The adapter in use", open=True):
        said = gr.Markdown(in_use_said(store), elem_id="in-use-said")
        with gr.Row():
            adapter = gr.Dropdown(adapter_choices(store), value=None, label="Adapter", elem_id="in-use-adapter",
                                  info="The adapter your team should use from now on.")
            choose = gr.Button("Put in use", variant="primary", elem_id="in-use-choose")
            back = gr.Button("Roll back to the previous one", elem_id="in-use-roll-back")

    on_show(page, lambda: (in_use_said(store), gr.update(choices=adapter_choices(store))), None, [said, adapter])

    @needs("choose_in_use")
    @shown_to_user
    def choose_adapter(adapter_id):
        if adapter_id is None:
            raise StudioError("Pick the adapter to put in use first.")
        chosen = put_in_use(store, int(adapter_id))
        activity.record(store, signed_in(), "in use", f"put adapter #{chosen.adapter.id} '{chosen.adapter.name}' in use")
        return in_use_said(store), gr.update(choices=adapter_choices(store))

    @needs("choose_in_use")
    @shown_to_user
    def roll_back_adapter():
        undone = history(store)[0] if history(store) else None
        now_in_use = roll_back(store)
        activity.record(store, signed_in(), "in use", f"rolled back from adapter #{undone.adapter.id} to "
                        f"#{now_in_use.adapter.id} '{now_in_use.adapter.name}'")
        return in_use_said(store), gr.update(choices=adapter_choices(store))

    choose.click(choose_adapter, adapter, [said, adapter], api_name="put_in_use")
    back.click(roll_back_adapter, None, [said, adapter], api_name="roll_back_in_use")
