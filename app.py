"""Start Adapter Studio: prepare the bundled model, open the store, launch the web UI."""

import argparse
import atexit
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from jobs.lifetime import die_with_parent
from jobs.remote_store import start_store_server, uses_redis
from studio.errors import StudioError
from studio.models.catalog import prepare_bundled_model
from studio.people.users import sign_in_required, sync_from_auth
from studio.settings import auth_pairs, load_settings
from studio.store import Store
from studio.ui.served_files import make_web_folder, sweep_downloads


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Adapter Studio web UI. Settings come from STUDIO_* variables (see README).")
    parser.add_argument("--host", help="address to listen on (default STUDIO_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default STUDIO_PORT, 7860)")
    parser.add_argument("--no-worker", action="store_true", help="do not start a worker; run `python -m jobs.worker` yourself")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    try:
        settings = load_settings()
        store = Store(settings.db_path)
        model_dir = prepare_bundled_model(settings.models_dir)
        sync_from_auth(store, auth_pairs(settings.auth))
        shared = sign_in_required(store)
    except StudioError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    host = args.host or settings.host
    if host not in LOOPBACK and not shared:
        logging.warning("The studio listens on %s with no login: anyone who can reach it can use it. "
                        "Add people (`python -m studio users add NAME --role admin`) or set STUDIO_AUTH "
                        "before listening on other addresses.", host)
    if uses_redis(settings):
        start_store_server(store, settings.queue)  # workers report through Redis; this app writes the store
    if not args.no_worker:
        start_worker()
    web_files = private_web_folder()
    stop_on_signals()
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no usage data leaves the machine (read when gradio is imported)
    from studio.ui import CSS, build_app  # gradio loads slowly: import it once the checks above passed
    from studio.ui.login import AUTH_MESSAGE, login_guard, password_check

    downloads = web_files / "downloads"
    sweep_downloads(downloads)
    app = build_app(settings, store, model_dir, downloads)
    app.queue(default_concurrency_limit=4)
    port = args.port or settings.port
    app.launch(
        server_name=host,
        server_port=port,
        auth=password_check(store) if shared else None,
        auth_message=AUTH_MESSAGE,
        app_kwargs={"middleware": login_guard()},
        share=False,
        max_file_size=settings.max_upload_bytes,
        blocked_paths=[str(settings.home)],
        css=CSS,
        footer_links=[],
        quiet=True,  # Gradio's own start-up lines suggest a public share link, which the studio never makes
        prevent_thread_lock=True,
    )
    logging.info("Adapter Studio is running at http://%s:%d (stop it with Ctrl-C).", host, port)
    app.block_thread()
    return 0


def private_web_folder() -> Path:
    """A folder of this studio's own (mode 0700) for uploads and download zips, removed on exit.

    Gradio serves files from nowhere else: not STUDIO_HOME, not the models, not other apps' uploads.
    Folders that crashed studios left behind are removed first.
    """
    folder = make_web_folder()
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP stop the studio as Ctrl-C (SIGINT) does, so that its exit handlers run:
    the web folder is removed and the worker stopped. Python's default for SIGTERM skips them."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    for number in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(number) != signal.SIG_IGN:  # a studio started with nohup keeps ignoring hang-ups
            signal.signal(number, interrupt)


def start_worker() -> None:
    """The embedded worker: a process of its own, stopped with the studio however the studio ends.

    A running job is left `running`; the next worker start marks it interrupted and resumes it.
    """
    worker = subprocess.Popen([sys.executable, "-m", "jobs.worker"], cwd=Path(__file__).resolve().parent,
                              preexec_fn=lambda: die_with_parent(signal.SIGTERM))
    atexit.register(worker.terminate)


if __name__ == "__main__":
    sys.exit(main())
