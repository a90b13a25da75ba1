"""The server's guard on every UI event and API route: each Gradio event runs only for a role that
may do its action (studio.people.roles), however it is called — the page, gradio_client or plain
HTTP all reach the same functions, so hiding a button is a courtesy, not the protection.

A tab's events take the action of the section they are built in (`guard.section("train")`); a
callback that does something else says so with `@needs("vote")`. Every event is guarded: those
built outside any section need "view". Refusals are written to the activity log.
"""

import functools
import inspect
from collections.abc import Iterator
from contextlib import contextmanager

import gradio as gr
from gradio.context import LocalContext

from studio.people import activity
from studio.people.roles import NotAllowed, can, require
from studio.errors import StudioError
from studio.people.users import SINGLE_USER, role_of
from studio.store import Store
from studio.store.authors import acting_as


def needs(action: str):
    """Mark a callback with the action it does, where that differs from its tab's."""
    def mark(callback):
        callback.studio_action = action
        return callback
    return mark


def signed_in() -> str:
    """The name of whoever sent the request being answered; a single-user install's user is 'you'."""
    request = LocalContext.request.get(None)
    return getattr(request, "username", None) or SINGLE_USER


class Guard:
    """Records which action each event of a Blocks app needs, then wraps every event's function with the check."""

    def __init__(self, app: gr.Blocks, store: Store) -> None:
        self.app, self.store, self.actions = app, store, {}

    @contextmanager
    def section(self, action: str) -> Iterator[None]:
        before = set(self.app.fns)
        yield
        for key in set(self.app.fns) - before:
            self.actions.setdefault(key, action)

    def install(self) -> dict[int, str]:
        """Wrap every event's function; returns the action each event needs (for tests and the docs)."""
        needed = {}
        for key, block_fn in self.app.fns.items():
            if block_fn.fn is None:
                continue
            action = getattr(block_fn.fn, "studio_action", None) or self.actions.get(key, "view")
            block_fn.fn, needed[key] = _guarded(block_fn.fn, action, self.store), action
        return needed



def current_role(store: Store) -> str:
    """The role of whoever sent the request being answered."""
    return role_of(store, _name())


def allowed(store: Store, action: str) -> bool:
    return can(current_role(store), action)


def _name() -> str | None:
    return getattr(LocalContext.request.get(None), "username", None)


def _guarded(callback, action: str, store: Store):
    """`callback`, run only for a role that may do `action`, and acting for the signed-in person
    (studio.store.authors): each step of a stream too, since Gradio runs each in a fresh context."""
    def check() -> str:
        name = _name()
        try:
            require(name or SINGLE_USER, role_of(store, name), action)
        except NotAllowed as refusal:
            activity.record(store, name or "(not signed in)", "refused", str(refusal))
            raise gr.Error(str(refusal), print_exception=False) from None
        except StudioError as error:  # an unknown or removed name: the account is gone
            raise gr.Error(str(error), print_exception=False) from None
        return name or SINGLE_USER

    if inspect.isasyncgenfunction(callback):
        @functools.wraps(callback)
        async def async_stream(*args, **kwargs):
            name = check()
            items = callback(*args, **kwargs)
            while True:
                with acting_as(name):
                    try:
                        item = await items.__anext__()
                    except StopAsyncIteration:
                        return
                yield item
        return async_stream
    if inspect.isgeneratorfunction(callback):
        @functools.wraps(callback)
        def stream(*args, **kwargs):
            name = check()
            items = callback(*args, **kwargs)
            while True:
                with acting_as(name):
                    try:
                        item = next(items)
                    except StopIteration:
                        return
                yield item
        return stream
    if inspect.iscoroutinefunction(callback):
        @functools.wraps(callback)
        async def coroutine(*args, **kwargs):
            with acting_as(check()):
                return await callback(*args, **kwargs)
        return coroutine

    @functools.wraps(callback)
    def plain(*args, **kwargs):
        with acting_as(check()):
            return callback(*args, **kwargs)
    return plain
