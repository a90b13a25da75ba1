"""`python -m studio delete KIND:ID` and `python -m studio storage`: deleting with its confirmation, and disk
space, through the same functions as the Storage tab. Like the other commands, they act as the admin
"command line" (whoever runs them can read the studio's files already)."""

import argparse

from studio.settings import load_settings
from studio.storage.deleting import check_deletion, delete
from studio.storage.disk import clear, clearable, stored
from studio.store import Store
from studio.store.authors import COMMAND_LINE


def add_commands(commands) -> None:
    deleting = commands.add_parser("delete", help="delete a dataset, adapter, merged model, export, job, vote or correction")
    deleting.add_argument("ref", help="what to delete, as KIND:ID (for example adapter:3), as `storage` lists them")
    deleting.add_argument("--with-what-came-from-it", action="store_true",
                          help="for a dataset adapters were trained on: erase those adapters too (else the dataset is archived)")
    deleting.add_argument("--yes", action="store_true", help="delete; without it, only say what would be deleted and what depends on it")
    deleting.set_defaults(run=delete_command)
    space = commands.add_parser("storage", help="what each artifact takes on disk, and what is safe to clear")
    space.add_argument("--clear", action="store_true", help="clear what is safe to clear")
    space.set_defaults(run=storage_command)


def delete_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    store = Store(settings.db_path)
    found = check_deletion(store, args.ref)
    if not args.yes or found.blockers:
        print(found.describe().replace("**", ""))
        if found.blockers:
            return 2
        print("\nNothing was deleted: run it again with --yes to delete.")
        return 0
    done = delete(store, settings, args.ref, person=COMMAND_LINE, role="admin", with_what_came_from_it=args.with_what_came_from_it)
    print(done.describe())
    return 0


def storage_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    store = Store(settings.db_path)
    if args.clear:
        print(f"Cleared {clear(store, settings, COMMAND_LINE) / 2**20:,.1f} MB.")
        return 0
    for item in stored(store, settings):
        print(f"{item.bytes / 2**20:>10,.1f} MB  {item.ref:<14} {item.what}")
    safe = clearable(store, settings)
    for kind in safe:
        print(f"\nSafe to clear: {kind.what}: {kind.bytes / 2**20:,.1f} MB in {len(kind.paths)} place(s)")
    print("\nRun `python -m studio storage --clear` to clear it." if safe else "\nNothing needs clearing.")
    return 0
