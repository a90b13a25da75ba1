"""The Download tab: an adapter or a merged model as a zip with its model card.

Only registered artifacts are offered, picked by id from the store; no path typed by a user
is read. Zips are written to the studio's own web folder (STUDIO_HOME itself is never
served), replaced by the next zip of the same artifact and deleted a few minutes after they were made.
"""

from pathlib import Path

import gradio as gr

from studio.adapters.registry import slug
from studio.errors import StudioError
from studio.export.merge import export_adapter, export_merged
from studio.people import activity
from studio.store import Store
from studio.ui import html
from studio.ui import deploy_panel
from studio.ui.access import signed_in
from studio.ui.errors import shown_to_user
from studio.ui.pickers import adapter_choices, merged_choices
from studio.ui.refresh import on_show
from studio.ui.served_files import DOWNLOAD_LIFETIME_S


def ready(zip_path: Path) -> gr.DownloadButton:
    """The prepared zip as a prominent button that names the file and its size."""
    return gr.DownloadButton(f"⬇ Download {zip_path.name} ({html.file_size(zip_path.stat().st_size)})", value=str(zip_path), visible=True)


def build(store: Store, page: gr.Tab, downloads: Path) -> None:
    gr.Markdown("Download an adapter (small: load it on top of its base model) or a merged model (large: a complete model). "
                "Each zip holds a model card that shows how to load it in a few lines of Python. "
                f"A prepared zip is kept for {DOWNLOAD_LIFETIME_S // 60} minutes; prepare it again to download it later.")
    with gr.Row():
        with gr.Column():
            adapter = gr.Dropdown(adapter_choices(store), label="Adapter", info="A trained adapter: small, loads on top of its base model.", elem_id="download-adapter")
            adapter_zip = gr.Button("Prepare adapter zip", elem_id="download-adapter-zip")
            adapter_file = gr.DownloadButton(visible=False, variant="primary", elem_id="download-adapter-file")
        with gr.Column():
            merged = gr.Dropdown(merged_choices(store), label="Merged model", info="Make one in the Merge tab.", elem_id="download-merged")
            merged_zip = gr.Button("Prepare merged model zip", elem_id="download-merged-zip")
            merged_file = gr.DownloadButton(visible=False, variant="primary", elem_id="download-merged-file")

    on_show(page, lambda: (gr.update(choices=adapter_choices(store)), gr.update(choices=merged_choices(store))), None, [adapter, merged])

    @shown_to_user
    def zip_adapter(adapter_id):
        if adapter_id is None:
            raise StudioError("Pick the adapter to download first.")
        record = store.adapter(int(adapter_id))
        activity.record(store, signed_in(), "download", f"downloaded adapter #{record.id} '{record.name}'")
        return ready(export_adapter(store, record.id, downloads / f"adapter-{record.id}-{slug(record.name)}.zip"))

    @shown_to_user
    def zip_merged(merge_id):
        if merge_id is None:
            raise StudioError("Pick the merged model to download first (make one in the Merge tab).")
        record = store.merge(int(merge_id))
        activity.record(store, signed_in(), "download", f"downloaded merged model #{record.id} ({record.dtype})")
        return ready(export_merged(store, record.id, downloads / f"merged-{record.id}-{record.dtype}.zip"))

    adapter_zip.click(zip_adapter, adapter, adapter_file)
    merged_zip.click(zip_merged, merged, merged_file)
    adapter.input(lambda: gr.DownloadButton(visible=False), None, adapter_file)  # the zip shown is another adapter's
    merged.input(lambda: gr.DownloadButton(visible=False), None, merged_file)
    deploy_panel.build(store, page, downloads)
