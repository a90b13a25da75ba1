"""The UI boundary for errors: a StudioError becomes its message, anything else a logged bug."""

import functools
import inspect
import logging
from contextlib import contextmanager

import gradio as gr

from studio.errors import StudioError

log = logging.getLogger("studio.ui")


def shown_to_user(callback):
    """Wrap a callback so the user sees a plain message and never a traceback.

    A generator callback (a streaming answer) stays a generator, so Gradio still streams it.
    """
    if inspect.isgeneratorfunction(callback):
        @functools.wraps(callback)
        def streaming(*args, **kwargs):
            with _explained(callback):
                yield from callback(*args, **kwargs)

        return streaming

    @functools.wraps(callback)
    def wrapper(*args, **kwargs):
        with _explained(callback):
            return callback(*args, **kwargs)

    return wrapper


@contextmanager
def _explained(callback):
    try:
        yield
    except StudioError as error:
        raise gr.Error(str(error), print_exception=False) from None
    except gr.Error:
        raise
    except Exception:
        log.exception("Unexpected error in %s", callback.__name__)
        raise gr.Error("Something went wrong that the studio did not expect. The details are in the studio's log; please report them.", print_exception=False) from None
